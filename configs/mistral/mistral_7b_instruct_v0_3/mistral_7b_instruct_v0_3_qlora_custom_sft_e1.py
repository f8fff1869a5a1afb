# Mistral 7B Instruct v0.3, qlora on custom_sft, 1 epoch:
#     xtuner train mistral_7b_instruct_v0_3_qlora_custom_sft_e1 --deepspeed deepspeed_zero2
#     on one 8 GB GPU, instead of --deepspeed: --memory-budget 8GB (see README)
_base_ = [
    '../../_base_/models/mistral/mistral_7b_instruct_v0_3.py',
    '../../_base_/datasets/custom_sft.py',
    '../../_base_/methods/qlora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
