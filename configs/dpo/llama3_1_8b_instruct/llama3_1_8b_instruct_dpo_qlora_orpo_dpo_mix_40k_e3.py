# DPO, qlora, of Llama 3.1 8B Instruct on orpo_dpo_mix_40k, 3 epochs:
#     xtuner train llama3_1_8b_instruct_dpo_qlora_orpo_dpo_mix_40k_e3 --deepspeed deepspeed_zero2
#     on one 13 GB GPU, instead of --deepspeed: --memory-budget 13GB (see README)
_base_ = [
    '../../_base_/models/llama/llama3_1_8b_instruct.py',
    '../../_base_/preference/dpo.py',
    '../../_base_/preference/qlora.py',
]
