# Gemma 2 9B IT, qlora on alpaca, 3 epochs:
#     xtuner train gemma2_9b_it_qlora_alpaca_e3 --deepspeed deepspeed_zero2
#     in 9 GB of GPU memory: add --memory-budget 9GB (README: Fine-tuning on a small GPU)
_base_ = [
    '../../_base_/models/gemma/gemma2_9b_it.py',
    '../../_base_/datasets/alpaca.py',
    '../../_base_/methods/qlora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
