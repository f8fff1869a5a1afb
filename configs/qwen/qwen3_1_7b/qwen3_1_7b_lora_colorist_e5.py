# Qwen3 1.7B, lora on colorist, 5 epochs:
#     xtuner train qwen3_1_7b_lora_colorist_e5 --deepspeed deepspeed_zero2
_base_ = [
    '../../_base_/models/qwen/qwen3_1_7b.py',
    '../../_base_/datasets/colorist.py',
    '../../_base_/methods/lora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
