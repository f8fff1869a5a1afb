# Yi-1.5 34B Chat, full on alpaca, 3 epochs:
#     NPROC_PER_NODE=8 xtuner train yi1_5_34b_chat_full_alpaca_e3 --deepspeed deepspeed_zero3
_base_ = [
    '../../_base_/models/yi/yi1_5_34b_chat.py',
    '../../_base_/datasets/alpaca.py',
    '../../_base_/methods/full.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
