# InternLM2.5 20B Chat, full on custom_sft, 1 epoch:
#     NPROC_PER_NODE=8 xtuner train internlm2_5_chat_20b_full_custom_sft_e1 --deepspeed deepspeed_zero3
_base_ = [
    '../../_base_/models/internlm/internlm2_5_chat_20b.py',
    '../../_base_/datasets/custom_sft.py',
    '../../_base_/methods/full.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
