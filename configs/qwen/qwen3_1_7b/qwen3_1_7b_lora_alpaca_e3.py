# Qwen3 1.7B, lora on alpaca, 3 epochs:
#     xtuner train qwen3_1_7b_lora_alpaca_e3 --deepspeed deepspeed_zero2
_base_ = [
    '../../_base_/models/qwen/qwen3_1_7b.py',
    '../../_base_/datasets/alpaca.py',
    '../../_base_/methods/lora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
