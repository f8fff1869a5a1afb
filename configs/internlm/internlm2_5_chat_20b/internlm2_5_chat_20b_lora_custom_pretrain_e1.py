# InternLM2.5 20B Chat, lora on custom_pretrain, 1 epoch:
#     xtuner train internlm2_5_chat_20b_lora_custom_pretrain_e1 --deepspeed deepspeed_zero2
_base_ = [
    '../../_base_/models/internlm/internlm2_5_chat_20b.py',
    '../../_base_/datasets/custom_pretrain.py',
    '../../_base_/methods/lora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
