# Gemma 3 27B IT, lora on colorist, 5 epochs:
#     xtuner train gemma3_27b_it_lora_colorist_e5 --deepspeed deepspeed_zero2
_base_ = [
    '../../_base_/models/gemma/gemma3_27b_it.py',
    '../../_base_/datasets/colorist.py',
    '../../_base_/methods/lora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
