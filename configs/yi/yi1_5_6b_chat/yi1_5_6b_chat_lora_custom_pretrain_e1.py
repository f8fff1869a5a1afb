# Yi-1.5 6B Chat, lora on custom_pretrain, 1 epoch:
#     xtuner train yi1_5_6b_chat_lora_custom_pretrain_e1 --deepspeed deepspeed_zero2
_base_ = [
    '../../_base_/models/yi/yi1_5_6b_chat.py',
    '../../_base_/datasets/custom_pretrain.py',
    '../../_base_/methods/lora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
