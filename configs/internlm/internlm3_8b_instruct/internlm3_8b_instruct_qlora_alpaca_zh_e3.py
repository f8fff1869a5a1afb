# InternLM3 8B Instruct, qlora on alpaca_zh, 3 epochs:
#     xtuner train internlm3_8b_instruct_qlora_alpaca_zh_e3 --deepspeed deepspeed_zero2
#     on one 9 GB GPU, instead of --deepspeed: --memory-budget 9GB (see README)
_base_ = [
    '../../_base_/models/internlm/internlm3_8b_instruct.py',
    '../../_base_/datasets/alpaca_zh.py',
    '../../_base_/methods/qlora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
