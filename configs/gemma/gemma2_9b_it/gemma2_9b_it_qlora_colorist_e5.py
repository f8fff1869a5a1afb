# Gemma 2 9B IT, qlora on colorist, 5 epochs:
#     xtuner train gemma2_9b_it_qlora_colorist_e5 --deepspeed deepspeed_zero2
#     on one 10 GB GPU, instead of --deepspeed: --memory-budget 10GB (see README)
_base_ = [
    '../../_base_/models/gemma/gemma2_9b_it.py',
    '../../_base_/datasets/colorist.py',
    '../../_base_/methods/qlora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
