# Qwen3 0.6B, lora on alpaca_zh, 3 epochs:
#     xtuner train qwen3_0_6b_lora_alpaca_zh_e3 --deepspeed deepspeed_zero2
_base_ = [
    '../../_base_/models/qwen/qwen3_0_6b.py',
    '../../_base_/datasets/alpaca_zh.py',
    '../../_base_/methods/lora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
