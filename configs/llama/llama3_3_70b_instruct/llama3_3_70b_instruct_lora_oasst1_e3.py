# Llama 3.3 70B Instruct, lora on oasst1, 3 epochs:
#     xtuner train llama3_3_70b_instruct_lora_oasst1_e3 --deepspeed deepspeed_zero2
_base_ = [
    '../../_base_/models/llama/llama3_3_70b_instruct.py',
    '../../_base_/datasets/oasst1.py',
    '../../_base_/methods/lora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
