# Yi-1.5 6B Chat, full on code_alpaca, 3 epochs:
#     NPROC_PER_NODE=8 xtuner train yi1_5_6b_chat_full_code_alpaca_e3 --deepspeed deepspeed_zero3
_base_ = [
    '../../_base_/models/yi/yi1_5_6b_chat.py',
    '../../_base_/datasets/code_alpaca.py',
    '../../_base_/methods/full.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
