# ORPO, qlora, of Qwen2.5 7B Instruct on ultrafeedback, 5 epochs:
#     xtuner train qwen2_5_7b_instruct_orpo_qlora_ultrafeedback_e5 --deepspeed deepspeed_zero2
_base_ = [
    '../../_base_/models/qwen/qwen2_5_7b_instruct.py',
    '../../_base_/preference/orpo.py',
    '../../_base_/preference/qlora.py',
]
