# Yi-1.5 9B Chat, qlora on custom_sft, 1 epoch:
#     xtuner train yi1_5_9b_chat_qlora_custom_sft_e1 --deepspeed deepspeed_zero2
#     in 8 GB of GPU memory: add --memory-budget 8GB (README: Fine-tuning on a small GPU)
_base_ = [
    '../../_base_/models/yi/yi1_5_9b_chat.py',
    '../../_base_/datasets/custom_sft.py',
    '../../_base_/methods/qlora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
