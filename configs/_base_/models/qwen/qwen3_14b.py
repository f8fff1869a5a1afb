# Qwen3 14B (Qwen/Qwen3-14B).
_base_ = './qwen3.py'
model_title = 'Qwen3 14B'
pretrained_model_name_or_path = 'Qwen/Qwen3-14B'
