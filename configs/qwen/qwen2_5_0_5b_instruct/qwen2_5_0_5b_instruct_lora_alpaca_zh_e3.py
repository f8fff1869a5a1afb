# Qwen2.5 0.5B Instruct, lora on alpaca_zh, 3 epochs:
#     xtuner train qwen2_5_0_5b_instruct_lora_alpaca_zh_e3 --deepspeed deepspeed_zero2
_base_ = [
    '../../_base_/models/qwen/qwen2_5_0_5b_instruct.py',
    '../../_base_/datasets/alpaca_zh.py',
    '../../_base_/methods/lora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
