# ORPO, qlora, of Qwen2.5 7B Instruct on ultrafeedback, 5 epochs:
#     xtuner train qwen2_5_7b_instruct_orpo_qlora_ultrafeedback_e5 --deepspeed deepspeed_zero2
#     on one 14 GB GPU, instead of --deepspeed: --memory-budget 14GB (see README)
_base_ = [
    '../../_base_/models/qwen/qwen2_5_7b_instruct.py',
    '../../_base_/preference/orpo.py',
    '../../_base_/preference/qlora.py',
]
