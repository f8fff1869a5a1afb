# DPO, full, of Llama 3.1 8B Instruct on orpo_dpo_mix_40k, 3 epochs:
#     NPROC_PER_NODE=8 xtuner train llama3_1_8b_instruct_dpo_full_orpo_dpo_mix_40k_e3 --deepspeed deepspeed_zero3
_base_ = [
    '../../_base_/models/llama/llama3_1_8b_instruct.py',
    '../../_base_/preference/dpo.py',
    '../../_base_/preference/full.py',
]
