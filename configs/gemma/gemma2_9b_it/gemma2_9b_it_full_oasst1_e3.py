# Gemma 2 9B IT, full on oasst1, 3 epochs:
#     NPROC_PER_NODE=8 xtuner train gemma2_9b_it_full_oasst1_e3 --deepspeed deepspeed_zero3
_base_ = [
    '../../_base_/models/gemma/gemma2_9b_it.py',
    '../../_base_/datasets/oasst1.py',
    '../../_base_/methods/full.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
