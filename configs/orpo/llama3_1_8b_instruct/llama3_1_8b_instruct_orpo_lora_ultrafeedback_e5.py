# ORPO, lora, of Llama 3.1 8B Instruct on ultrafeedback, 5 epochs:
#     xtuner train llama3_1_8b_instruct_orpo_lora_ultrafeedback_e5 --deepspeed deepspeed_zero2
_base_ = [
    '../../_base_/models/llama/llama3_1_8b_instruct.py',
    '../../_base_/preference/orpo.py',
    '../../_base_/preference/lora.py',
]
