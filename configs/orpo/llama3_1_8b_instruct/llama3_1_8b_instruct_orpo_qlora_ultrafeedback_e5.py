# ORPO, qlora, of Llama 3.1 8B Instruct on ultrafeedback, 5 epochs:
#     xtuner train llama3_1_8b_instruct_orpo_qlora_ultrafeedback_e5 --deepspeed deepspeed_zero2
#     on one 13 GB GPU, instead of --deepspeed: --memory-budget 13GB (see README)
_base_ = [
    '../../_base_/models/llama/llama3_1_8b_instruct.py',
    '../../_base_/preference/orpo.py',
    '../../_base_/preference/qlora.py',
]
