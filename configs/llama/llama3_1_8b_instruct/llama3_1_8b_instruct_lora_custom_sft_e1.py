# Llama 3.1 8B Instruct, lora on custom_sft, 1 epoch:
#     xtuner train llama3_1_8b_instruct_lora_custom_sft_e1 --deepspeed deepspeed_zero2
_base_ = [
    '../../_base_/models/llama/llama3_1_8b_instruct.py',
    '../../_base_/datasets/custom_sft.py',
    '../../_base_/methods/lora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
