# InternLM2.5 7B Chat, lora on oasst1, 3 epochs:
#     xtuner train internlm2_5_chat_7b_lora_oasst1_e3 --deepspeed deepspeed_zero2
_base_ = [
    '../../_base_/models/internlm/internlm2_5_chat_7b.py',
    '../../_base_/datasets/oasst1.py',
    '../../_base_/methods/lora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
