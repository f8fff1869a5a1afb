# Qwen2.5 3B Instruct (Qwen/Qwen2.5-3B-Instruct).
_base_ = './qwen2_5.py'
model_title = 'Qwen2.5 3B Instruct'
pretrained_model_name_or_path = 'Qwen/Qwen2.5-3B-Instruct'
