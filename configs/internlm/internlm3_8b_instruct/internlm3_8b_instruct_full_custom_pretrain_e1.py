# InternLM3 8B Instruct, full on custom_pretrain, 1 epoch:
#     NPROC_PER_NODE=8 xtuner train internlm3_8b_instruct_full_custom_pretrain_e1 --deepspeed deepspeed_zero3
_base_ = [
    '../../_base_/models/internlm/internlm3_8b_instruct.py',
    '../../_base_/datasets/custom_pretrain.py',
    '../../_base_/methods/full.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
