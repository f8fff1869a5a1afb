# Gemma 3 12B IT (google/gemma-3-12b-it).
_base_ = './gemma3.py'
model_title = 'Gemma 3 12B IT'
pretrained_model_name_or_path = 'google/gemma-3-12b-it'
