# Gemma 2 2B IT, lora on alpaca_zh, 3 epochs:
#     xtuner train gemma2_2b_it_lora_alpaca_zh_e3 --deepspeed deepspeed_zero2
_base_ = [
    '../../_base_/models/gemma/gemma2_2b_it.py',
    '../../_base_/datasets/alpaca_zh.py',
    '../../_base_/methods/lora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
