# Baichuan2 7B Chat, full on colorist, 5 epochs:
#     NPROC_PER_NODE=8 xtuner train baichuan2_7b_chat_full_colorist_e5 --deepspeed deepspeed_zero3
_base_ = [
    '../../_base_/models/baichuan/baichuan2_7b_chat.py',
    '../../_base_/datasets/colorist.py',
    '../../_base_/methods/full.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
