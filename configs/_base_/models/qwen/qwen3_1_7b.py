# Qwen3 1.7B (Qwen/Qwen3-1.7B).
_base_ = './qwen3.py'
model_title = 'Qwen3 1.7B'
pretrained_model_name_or_path = 'Qwen/Qwen3-1.7B'
