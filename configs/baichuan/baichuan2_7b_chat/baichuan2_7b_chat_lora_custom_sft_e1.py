# Baichuan2 7B Chat, lora on custom_sft, 1 epoch:
#     xtuner train baichuan2_7b_chat_lora_custom_sft_e1 --deepspeed deepspeed_zero2
_base_ = [
    '../../_base_/models/baichuan/baichuan2_7b_chat.py',
    '../../_base_/datasets/custom_sft.py',
    '../../_base_/methods/lora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
