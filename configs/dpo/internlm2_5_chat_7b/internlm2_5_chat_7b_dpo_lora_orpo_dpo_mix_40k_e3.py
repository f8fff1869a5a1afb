# DPO, lora, of InternLM2.5 7B Chat on orpo_dpo_mix_40k, 3 epochs:
#     xtuner train internlm2_5_chat_7b_dpo_lora_orpo_dpo_mix_40k_e3 --deepspeed deepspeed_zero2
_base_ = [
    '../../_base_/models/internlm/internlm2_5_chat_7b.py',
    '../../_base_/preference/dpo.py',
    '../../_base_/preference/lora.py',
]
