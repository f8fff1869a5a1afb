# Gemma 2 9B IT, qlora on custom_sft, 1 epoch:
#     xtuner train gemma2_9b_it_qlora_custom_sft_e1 --deepspeed deepspeed_zero2
#     on one 10 GB GPU, instead of --deepspeed: --memory-budget 10GB (see README)
_base_ = [
    '../../_base_/models/gemma/gemma2_9b_it.py',
    '../../_base_/datasets/custom_sft.py',
    '../../_base_/methods/qlora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
