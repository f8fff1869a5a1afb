# Yi-1.5 9B Chat, qlora on custom_sft, 1 epoch:
#     xtuner train yi1_5_9b_chat_qlora_custom_sft_e1 --deepspeed deepspeed_zero2
#     on one 8 GB GPU, instead of --deepspeed: --memory-budget 8GB (see README)
_base_ = [
    '../../_base_/models/yi/yi1_5_9b_chat.py',
    '../../_base_/datasets/custom_sft.py',
    '../../_base_/methods/qlora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
