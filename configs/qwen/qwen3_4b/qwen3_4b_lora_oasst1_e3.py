# Qwen3 4B, lora on oasst1, 3 epochs:
#     xtuner train qwen3_4b_lora_oasst1_e3 --deepspeed deepspeed_zero2
_base_ = [
    '../../_base_/models/qwen/qwen3_4b.py',
    '../../_base_/datasets/oasst1.py',
    '../../_base_/methods/lora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
