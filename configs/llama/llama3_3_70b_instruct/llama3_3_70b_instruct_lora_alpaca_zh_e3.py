# Llama 3.3 70B Instruct, lora on alpaca_zh, 3 epochs:
#     xtuner train llama3_3_70b_instruct_lora_alpaca_zh_e3 --deepspeed deepspeed_zero2
_base_ = [
    '../../_base_/models/llama/llama3_3_70b_instruct.py',
    '../../_base_/datasets/alpaca_zh.py',
    '../../_base_/methods/lora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
