# Llama 3.2 1B Instruct, qlora on custom_pretrain, 1 epoch:
#     xtuner train llama3_2_1b_instruct_qlora_custom_pretrain_e1 --deepspeed deepspeed_zero2
_base_ = [
    '../../_base_/models/llama/llama3_2_1b_instruct.py',
    '../../_base_/datasets/custom_pretrain.py',
    '../../_base_/methods/qlora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
