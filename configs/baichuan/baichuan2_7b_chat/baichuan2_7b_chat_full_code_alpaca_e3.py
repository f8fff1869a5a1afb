# Baichuan2 7B Chat, full on code_alpaca, 3 epochs:
#     NPROC_PER_NODE=8 xtuner train baichuan2_7b_chat_full_code_alpaca_e3 --deepspeed deepspeed_zero3
_base_ = [
    '../../_base_/models/baichuan/baichuan2_7b_chat.py',
    '../../_base_/datasets/code_alpaca.py',
    '../../_base_/methods/full.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
