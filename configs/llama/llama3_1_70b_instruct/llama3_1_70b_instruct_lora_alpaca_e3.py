# Llama 3.1 70B Instruct, lora on alpaca, 3 epochs:
#     xtuner train llama3_1_70b_instruct_lora_alpaca_e3 --deepspeed deepspeed_zero2
_base_ = [
    '../../_base_/models/llama/llama3_1_70b_instruct.py',
    '../../_base_/datasets/alpaca.py',
    '../../_base_/methods/lora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
