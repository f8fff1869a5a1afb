# DPO, qlora, of InternLM2.5 7B Chat on orpo_dpo_mix_40k, 3 epochs:
#     xtuner train internlm2_5_chat_7b_dpo_qlora_orpo_dpo_mix_40k_e3 --deepspeed deepspeed_zero2
#     on one 11 GB GPU, instead of --deepspeed: --memory-budget 11GB (see README)
_base_ = [
    '../../_base_/models/internlm/internlm2_5_chat_7b.py',
    '../../_base_/preference/dpo.py',
    '../../_base_/preference/qlora.py',
]
