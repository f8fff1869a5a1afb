# Qwen3 0.6B, lora on colorist, 5 epochs:
#     xtuner train qwen3_0_6b_lora_colorist_e5 --deepspeed deepspeed_zero2
_base_ = [
    '../../_base_/models/qwen/qwen3_0_6b.py',
    '../../_base_/datasets/colorist.py',
    '../../_base_/methods/lora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
