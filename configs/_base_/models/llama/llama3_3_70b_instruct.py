# Llama 3.3 70B Instruct (meta-llama/Llama-3.3-70B-Instruct).
_base_ = './llama3.py'
model_title = 'Llama 3.3 70B Instruct'
pretrained_model_name_or_path = 'meta-llama/Llama-3.3-70B-Instruct'
