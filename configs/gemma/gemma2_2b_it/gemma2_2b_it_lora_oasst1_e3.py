# Gemma 2 2B IT, lora on oasst1, 3 epochs:
#     xtuner train gemma2_2b_it_lora_oasst1_e3 --deepspeed deepspeed_zero2
_base_ = [
    '../../_base_/models/gemma/gemma2_2b_it.py',
    '../../_base_/datasets/oasst1.py',
    '../../_base_/methods/lora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
