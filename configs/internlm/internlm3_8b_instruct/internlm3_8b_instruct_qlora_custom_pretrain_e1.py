# InternLM3 8B Instruct, qlora on custom_pretrain, 1 epoch:
#     xtuner train internlm3_8b_instruct_qlora_custom_pretrain_e1 --deepspeed deepspeed_zero2
#     on one 9 GB GPU, instead of --deepspeed: --memory-budget 9GB (see README)
_base_ = [
    '../../_base_/models/internlm/internlm3_8b_instruct.py',
    '../../_base_/datasets/custom_pretrain.py',
    '../../_base_/methods/qlora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
