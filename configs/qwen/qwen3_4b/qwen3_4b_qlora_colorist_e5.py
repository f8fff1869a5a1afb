# Qwen3 4B, qlora on colorist, 5 epochs:
#     xtuner train qwen3_4b_qlora_colorist_e5 --deepspeed deepspeed_zero2
_base_ = [
    '../../_base_/models/qwen/qwen3_4b.py',
    '../../_base_/datasets/colorist.py',
    '../../_base_/methods/qlora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
