# Qwen2.5 7B Instruct (Qwen/Qwen2.5-7B-Instruct).
_base_ = './qwen2_5.py'
model_title = 'Qwen2.5 7B Instruct'
pretrained_model_name_or_path = 'Qwen/Qwen2.5-7B-Instruct'
