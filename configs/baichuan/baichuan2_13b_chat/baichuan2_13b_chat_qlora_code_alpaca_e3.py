# Baichuan2 13B Chat, qlora on code_alpaca, 3 epochs:
#     xtuner train baichuan2_13b_chat_qlora_code_alpaca_e3 --deepspeed deepspeed_zero2
_base_ = [
    '../../_base_/models/baichuan/baichuan2_13b_chat.py',
    '../../_base_/datasets/code_alpaca.py',
    '../../_base_/methods/qlora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
