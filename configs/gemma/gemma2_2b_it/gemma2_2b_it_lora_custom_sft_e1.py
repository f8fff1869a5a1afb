# Gemma 2 2B IT, lora on custom_sft, 1 epoch:
#     xtuner train gemma2_2b_it_lora_custom_sft_e1 --deepspeed deepspeed_zero2
_base_ = [
    '../../_base_/models/gemma/gemma2_2b_it.py',
    '../../_base_/datasets/custom_sft.py',
    '../../_base_/methods/lora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
