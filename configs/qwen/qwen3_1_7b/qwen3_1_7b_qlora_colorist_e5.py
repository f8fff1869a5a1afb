# Qwen3 1.7B, qlora on colorist, 5 epochs:
#     xtuner train qwen3_1_7b_qlora_colorist_e5 --deepspeed deepspeed_zero2
#     in 3 GB of GPU memory: add --memory-budget 3GB (README: Fine-tuning on a small GPU)
_base_ = [
    '../../_base_/models/qwen/qwen3_1_7b.py',
    '../../_base_/datasets/colorist.py',
    '../../_base_/methods/qlora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
