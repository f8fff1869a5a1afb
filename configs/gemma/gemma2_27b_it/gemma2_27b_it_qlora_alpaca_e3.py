# Gemma 2 27B IT, qlora on alpaca, 3 epochs:
#     xtuner train gemma2_27b_it_qlora_alpaca_e3 --deepspeed deepspeed_zero2
_base_ = [
    '../../_base_/models/gemma/gemma2_27b_it.py',
    '../../_base_/datasets/alpaca.py',
    '../../_base_/methods/qlora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
