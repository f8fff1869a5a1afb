# Llama 3.3 70B Instruct, qlora on custom_pretrain, 1 epoch:
#     xtuner train llama3_3_70b_instruct_qlora_custom_pretrain_e1 --deepspeed deepspeed_zero2
_base_ = [
    '../../_base_/models/llama/llama3_3_70b_instruct.py',
    '../../_base_/datasets/custom_pretrain.py',
    '../../_base_/methods/qlora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
