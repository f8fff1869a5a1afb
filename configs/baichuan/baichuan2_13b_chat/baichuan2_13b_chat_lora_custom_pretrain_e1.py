# Baichuan2 13B Chat, lora on custom_pretrain, 1 epoch:
#     xtuner train baichuan2_13b_chat_lora_custom_pretrain_e1 --deepspeed deepspeed_zero2
_base_ = [
    '../../_base_/models/baichuan/baichuan2_13b_chat.py',
    '../../_base_/datasets/custom_pretrain.py',
    '../../_base_/methods/lora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
