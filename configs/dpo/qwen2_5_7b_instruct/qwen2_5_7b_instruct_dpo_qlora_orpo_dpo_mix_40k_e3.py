# DPO, qlora, of Qwen2.5 7B Instruct on orpo_dpo_mix_40k, 3 epochs:
#     xtuner train qwen2_5_7b_instruct_dpo_qlora_orpo_dpo_mix_40k_e3 --deepspeed deepspeed_zero2
#     on one 14 GB GPU, instead of --deepspeed: --memory-budget 14GB (see README)
_base_ = [
    '../../_base_/models/qwen/qwen2_5_7b_instruct.py',
    '../../_base_/preference/dpo.py',
    '../../_base_/preference/qlora.py',
]
