# Baichuan2 7B Chat, qlora on colorist, 5 epochs:
#     xtuner train baichuan2_7b_chat_qlora_colorist_e5 --deepspeed deepspeed_zero2
#     in 8 GB of GPU memory: add --memory-budget 8GB (README: Fine-tuning on a small GPU)
_base_ = [
    '../../_base_/models/baichuan/baichuan2_7b_chat.py',
    '../../_base_/datasets/colorist.py',
    '../../_base_/methods/qlora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
