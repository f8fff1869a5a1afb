# GLM-4 9B Chat, qlora on alpaca_zh, 3 epochs:
#     xtuner train glm4_9b_chat_qlora_alpaca_zh_e3 --deepspeed deepspeed_zero2
#     in 9 GB of GPU memory: add --memory-budget 9GB (README: Fine-tuning on a small GPU)
_base_ = [
    '../../_base_/models/chatglm/glm4_9b_chat.py',
    '../../_base_/datasets/alpaca_zh.py',
    '../../_base_/methods/qlora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
