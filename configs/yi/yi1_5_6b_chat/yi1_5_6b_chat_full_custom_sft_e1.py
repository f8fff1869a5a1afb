# Yi-1.5 6B Chat, full on custom_sft, 1 epoch:
#     NPROC_PER_NODE=8 xtuner train yi1_5_6b_chat_full_custom_sft_e1 --deepspeed deepspeed_zero3
_base_ = [
    '../../_base_/models/yi/yi1_5_6b_chat.py',
    '../../_base_/datasets/custom_sft.py',
    '../../_base_/methods/full.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
