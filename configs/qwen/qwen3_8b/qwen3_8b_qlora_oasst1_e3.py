# Qwen3 8B, qlora on oasst1, 3 epochs:
#     xtuner train qwen3_8b_qlora_oasst1_e3 --deepspeed deepspeed_zero2
#     on one 8 GB GPU, instead of --deepspeed: --memory-budget 8GB (see README)
_base_ = [
    '../../_base_/models/qwen/qwen3_8b.py',
    '../../_base_/datasets/oasst1.py',
    '../../_base_/methods/qlora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
