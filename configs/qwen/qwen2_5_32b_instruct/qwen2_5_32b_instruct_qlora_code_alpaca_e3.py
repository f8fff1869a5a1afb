# Qwen2.5 32B Instruct, qlora on code_alpaca, 3 epochs:
#     xtuner train qwen2_5_32b_instruct_qlora_code_alpaca_e3 --deepspeed deepspeed_zero2
_base_ = [
    '../../_base_/models/qwen/qwen2_5_32b_instruct.py',
    '../../_base_/datasets/code_alpaca.py',
    '../../_base_/methods/qlora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
