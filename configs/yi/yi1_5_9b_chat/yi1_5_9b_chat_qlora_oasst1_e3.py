# Yi-1.5 9B Chat, qlora on oasst1, 3 epochs:
#     xtuner train yi1_5_9b_chat_qlora_oasst1_e3 --deepspeed deepspeed_zero2
#     on one 8 GB GPU, instead of --deepspeed: --memory-budget 8GB (see README)
_base_ = [
    '../../_base_/models/yi/yi1_5_9b_chat.py',
    '../../_base_/datasets/oasst1.py',
    '../../_base_/methods/qlora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
