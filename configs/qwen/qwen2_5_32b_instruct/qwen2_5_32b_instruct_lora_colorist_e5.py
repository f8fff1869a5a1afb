# Qwen2.5 32B Instruct, lora on colorist, 5 epochs:
#     xtuner train qwen2_5_32b_instruct_lora_colorist_e5 --deepspeed deepspeed_zero2
_base_ = [
    '../../_base_/models/qwen/qwen2_5_32b_instruct.py',
    '../../_base_/datasets/colorist.py',
    '../../_base_/methods/lora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
