# ChatGLM3 6B, qlora on alpaca, 3 epochs:
#     xtuner train chatglm3_6b_qlora_alpaca_e3 --deepspeed deepspeed_zero2
_base_ = [
    '../../_base_/models/chatglm/chatglm3_6b.py',
    '../../_base_/datasets/alpaca.py',
    '../../_base_/methods/qlora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
