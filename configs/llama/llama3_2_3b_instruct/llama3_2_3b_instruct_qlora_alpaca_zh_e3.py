# Llama 3.2 3B Instruct, qlora on alpaca_zh, 3 epochs:
#     xtuner train llama3_2_3b_instruct_qlora_alpaca_zh_e3 --deepspeed deepspeed_zero2
_base_ = [
    '../../_base_/models/llama/llama3_2_3b_instruct.py',
    '../../_base_/datasets/alpaca_zh.py',
    '../../_base_/methods/qlora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
