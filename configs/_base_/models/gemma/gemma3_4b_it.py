# Gemma 3 4B IT (google/gemma-3-4b-it).
_base_ = './gemma3.py'
model_title = 'Gemma 3 4B IT'
pretrained_model_name_or_path = 'google/gemma-3-4b-it'
