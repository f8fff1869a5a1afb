# Baichuan2 7B Chat, qlora on alpaca_zh, 3 epochs:
#     xtuner train baichuan2_7b_chat_qlora_alpaca_zh_e3 --deepspeed deepspeed_zero2
#     on one 8 GB GPU, instead of --deepspeed: --memory-budget 8GB (see README)
_base_ = [
    '../../_base_/models/baichuan/baichuan2_7b_chat.py',
    '../../_base_/datasets/alpaca_zh.py',
    '../../_base_/methods/qlora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
