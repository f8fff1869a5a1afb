# Gemma 2 9B IT (google/gemma-2-9b-it).
_base_ = './gemma2.py'
model_title = 'Gemma 2 9B IT'
pretrained_model_name_or_path = 'google/gemma-2-9b-it'
