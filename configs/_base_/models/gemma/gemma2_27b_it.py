# Gemma 2 27B IT (google/gemma-2-27b-it).
_base_ = './gemma2.py'
model_title = 'Gemma 2 27B IT'
pretrained_model_name_or_path = 'google/gemma-2-27b-it'
