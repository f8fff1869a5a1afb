# Qwen3 4B (Qwen/Qwen3-4B).
_base_ = './qwen3.py'
model_title = 'Qwen3 4B'
pretrained_model_name_or_path = 'Qwen/Qwen3-4B'
