# Qwen3 8B, qlora on code_alpaca, 3 epochs:
#     xtuner train qwen3_8b_qlora_code_alpaca_e3 --deepspeed deepspeed_zero2
#     in 8 GB of GPU memory: add --memory-budget 8GB (README: Fine-tuning on a small GPU)
_base_ = [
    '../../_base_/models/qwen/qwen3_8b.py',
    '../../_base_/datasets/code_alpaca.py',
    '../../_base_/methods/qlora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
