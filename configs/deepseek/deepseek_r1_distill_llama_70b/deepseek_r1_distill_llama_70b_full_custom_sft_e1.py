# DeepSeek-R1-Distill-Llama 70B, full on custom_sft, 1 epoch:
#     NPROC_PER_NODE=8 xtuner train deepseek_r1_distill_llama_70b_full_custom_sft_e1 --deepspeed deepspeed_zero3
_base_ = [
    '../../_base_/models/deepseek/deepseek_r1_distill_llama_70b.py',
    '../../_base_/datasets/custom_sft.py',
    '../../_base_/methods/full.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
