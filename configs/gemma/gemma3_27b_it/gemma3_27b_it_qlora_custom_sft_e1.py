# Gemma 3 27B IT, qlora on custom_sft, 1 epoch:
#     xtuner train gemma3_27b_it_qlora_custom_sft_e1 --deepspeed deepspeed_zero2
_base_ = [
    '../../_base_/models/gemma/gemma3_27b_it.py',
    '../../_base_/datasets/custom_sft.py',
    '../../_base_/methods/qlora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
