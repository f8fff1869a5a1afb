# Gemma 3 1B IT, full on custom_sft, 1 epoch:
#     NPROC_PER_NODE=8 xtuner train gemma3_1b_it_full_custom_sft_e1 --deepspeed deepspeed_zero3
_base_ = [
    '../../_base_/models/gemma/gemma3_1b_it.py',
    '../../_base_/datasets/custom_sft.py',
    '../../_base_/methods/full.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
