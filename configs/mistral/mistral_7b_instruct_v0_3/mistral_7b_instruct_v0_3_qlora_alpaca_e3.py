# Mistral 7B Instruct v0.3, qlora on alpaca, 3 epochs:
#     xtuner train mistral_7b_instruct_v0_3_qlora_alpaca_e3 --deepspeed deepspeed_zero2
#     on one 8 GB GPU, instead of --deepspeed: --memory-budget 8GB (see README)
_base_ = [
    '../../_base_/models/mistral/mistral_7b_instruct_v0_3.py',
    '../../_base_/datasets/alpaca.py',
    '../../_base_/methods/qlora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
