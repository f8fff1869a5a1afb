# Qwen3 0.6B (Qwen/Qwen3-0.6B).
_base_ = './qwen3.py'
model_title = 'Qwen3 0.6B'
pretrained_model_name_or_path = 'Qwen/Qwen3-0.6B'
