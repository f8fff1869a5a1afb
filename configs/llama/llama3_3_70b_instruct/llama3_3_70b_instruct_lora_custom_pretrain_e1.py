# Llama 3.3 70B Instruct, lora on custom_pretrain, 1 epoch:
#     xtuner train llama3_3_70b_instruct_lora_custom_pretrain_e1 --deepspeed deepspeed_zero2
_base_ = [
    '../../_base_/models/llama/llama3_3_70b_instruct.py',
    '../../_base_/datasets/custom_pretrain.py',
    '../../_base_/methods/lora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
