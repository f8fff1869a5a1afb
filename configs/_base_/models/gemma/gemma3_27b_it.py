# Gemma 3 27B IT (google/gemma-3-27b-it).
_base_ = './gemma3.py'
model_title = 'Gemma 3 27B IT'
pretrained_model_name_or_path = 'google/gemma-3-27b-it'
