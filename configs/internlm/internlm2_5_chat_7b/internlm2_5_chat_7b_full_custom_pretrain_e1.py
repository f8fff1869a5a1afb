# InternLM2.5 7B Chat, full on custom_pretrain, 1 epoch:
#     NPROC_PER_NODE=8 xtuner train internlm2_5_chat_7b_full_custom_pretrain_e1 --deepspeed deepspeed_zero3
_base_ = [
    '../../_base_/models/internlm/internlm2_5_chat_7b.py',
    '../../_base_/datasets/custom_pretrain.py',
    '../../_base_/methods/full.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
