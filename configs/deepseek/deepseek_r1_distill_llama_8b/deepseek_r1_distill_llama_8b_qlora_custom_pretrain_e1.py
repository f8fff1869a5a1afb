# DeepSeek-R1-Distill-Llama 8B, qlora on custom_pretrain, 1 epoch:
#     xtuner train deepseek_r1_distill_llama_8b_qlora_custom_pretrain_e1 --deepspeed deepspeed_zero2
#     on one 8 GB GPU, instead of --deepspeed: --memory-budget 8GB (see README)
_base_ = [
    '../../_base_/models/deepseek/deepseek_r1_distill_llama_8b.py',
    '../../_base_/datasets/custom_pretrain.py',
    '../../_base_/methods/qlora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
