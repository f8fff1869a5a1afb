# Yi-1.5 9B Chat, full on colorist, 5 epochs:
#     NPROC_PER_NODE=8 xtuner train yi1_5_9b_chat_full_colorist_e5 --deepspeed deepspeed_zero3
_base_ = [
    '../../_base_/models/yi/yi1_5_9b_chat.py',
    '../../_base_/datasets/colorist.py',
    '../../_base_/methods/full.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
