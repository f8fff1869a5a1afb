# Gemma 2 9B IT, lora on custom_pretrain, 1 epoch:
#     xtuner train gemma2_9b_it_lora_custom_pretrain_e1 --deepspeed deepspeed_zero2
_base_ = [
    '../../_base_/models/gemma/gemma2_9b_it.py',
    '../../_base_/datasets/custom_pretrain.py',
    '../../_base_/methods/lora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
