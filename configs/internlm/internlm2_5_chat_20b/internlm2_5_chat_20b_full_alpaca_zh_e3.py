# InternLM2.5 20B Chat, full on alpaca_zh, 3 epochs:
#     NPROC_PER_NODE=8 xtuner train internlm2_5_chat_20b_full_alpaca_zh_e3 --deepspeed deepspeed_zero3
_base_ = [
    '../../_base_/models/internlm/internlm2_5_chat_20b.py',
    '../../_base_/datasets/alpaca_zh.py',
    '../../_base_/methods/full.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
