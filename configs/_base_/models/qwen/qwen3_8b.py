# Qwen3 8B (Qwen/Qwen3-8B).
_base_ = './qwen3.py'
model_title = 'Qwen3 8B'
pretrained_model_name_or_path = 'Qwen/Qwen3-8B'
