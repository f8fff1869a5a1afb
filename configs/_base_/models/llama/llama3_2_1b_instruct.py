# Llama 3.2 1B Instruct (meta-llama/Llama-3.2-1B-Instruct).
_base_ = './llama3.py'
model_title = 'Llama 3.2 1B Instruct'
pretrained_model_name_or_path = 'meta-llama/Llama-3.2-1B-Instruct'
