# Qwen3 32B (Qwen/Qwen3-32B).
_base_ = './qwen3.py'
model_title = 'Qwen3 32B'
pretrained_model_name_or_path = 'Qwen/Qwen3-32B'
