# ORPO, full, of Qwen2.5 7B Instruct on ultrafeedback, 5 epochs:
#     NPROC_PER_NODE=8 xtuner train qwen2_5_7b_instruct_orpo_full_ultrafeedback_e5 --deepspeed deepspeed_zero3
_base_ = [
    '../../_base_/models/qwen/qwen2_5_7b_instruct.py',
    '../../_base_/preference/orpo.py',
    '../../_base_/preference/full.py',
]
