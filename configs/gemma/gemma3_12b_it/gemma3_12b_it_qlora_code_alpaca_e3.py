# Gemma 3 12B IT, qlora on code_alpaca, 3 epochs:
#     xtuner train gemma3_12b_it_qlora_code_alpaca_e3 --deepspeed deepspeed_zero2
_base_ = [
    '../../_base_/models/gemma/gemma3_12b_it.py',
    '../../_base_/datasets/code_alpaca.py',
    '../../_base_/methods/qlora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
