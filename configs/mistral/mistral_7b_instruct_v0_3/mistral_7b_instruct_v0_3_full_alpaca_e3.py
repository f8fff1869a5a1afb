# Mistral 7B Instruct v0.3, full on alpaca, 3 epochs:
#     NPROC_PER_NODE=8 xtuner train mistral_7b_instruct_v0_3_full_alpaca_e3 --deepspeed deepspeed_zero3
_base_ = [
    '../../_base_/models/mistral/mistral_7b_instruct_v0_3.py',
    '../../_base_/datasets/alpaca.py',
    '../../_base_/methods/full.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
