# InternLM3 8B Instruct, full on alpaca, 3 epochs:
#     NPROC_PER_NODE=8 xtuner train internlm3_8b_instruct_full_alpaca_e3 --deepspeed deepspeed_zero3
_base_ = [
    '../../_base_/models/internlm/internlm3_8b_instruct.py',
    '../../_base_/datasets/alpaca.py',
    '../../_base_/methods/full.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
