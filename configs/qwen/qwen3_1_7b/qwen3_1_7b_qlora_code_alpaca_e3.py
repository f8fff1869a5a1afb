# Qwen3 1.7B, qlora on code_alpaca, 3 epochs:
#     xtuner train qwen3_1_7b_qlora_code_alpaca_e3 --deepspeed deepspeed_zero2
#     on one 3 GB GPU, instead of --deepspeed: --memory-budget 3GB (see README)
_base_ = [
    '../../_base_/models/qwen/qwen3_1_7b.py',
    '../../_base_/datasets/code_alpaca.py',
    '../../_base_/methods/qlora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
