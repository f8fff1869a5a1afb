# Gemma 3 1B IT, qlora on colorist, 5 epochs:
#     xtuner train gemma3_1b_it_qlora_colorist_e5 --deepspeed deepspeed_zero2
_base_ = [
    '../../_base_/models/gemma/gemma3_1b_it.py',
    '../../_base_/datasets/colorist.py',
    '../../_base_/methods/qlora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
