# Llama 3.1 8B Instruct (meta-llama/Llama-3.1-8B-Instruct).
_base_ = './llama3.py'
model_title = 'Llama 3.1 8B Instruct'
pretrained_model_name_or_path = 'meta-llama/Llama-3.1-8B-Instruct'
