# ORPO, qlora, of InternLM2.5 7B Chat on ultrafeedback, 5 epochs:
#     xtuner train internlm2_5_chat_7b_orpo_qlora_ultrafeedback_e5 --deepspeed deepspeed_zero2
#     on one 11 GB GPU, instead of --deepspeed: --memory-budget 11GB (see README)
_base_ = [
    '../../_base_/models/internlm/internlm2_5_chat_7b.py',
    '../../_base_/preference/orpo.py',
    '../../_base_/preference/qlora.py',
]
