# Llama 3.2 1B Instruct, full on custom_pretrain, 1 epoch:
#     NPROC_PER_NODE=8 xtuner train llama3_2_1b_instruct_full_custom_pretrain_e1 --deepspeed deepspeed_zero3
_base_ = [
    '../../_base_/models/llama/llama3_2_1b_instruct.py',
    '../../_base_/datasets/custom_pretrain.py',
    '../../_base_/methods/full.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
