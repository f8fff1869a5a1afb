# DeepSeek-R1-Distill-Qwen 7B, qlora on colorist, 5 epochs:
#     xtuner train deepseek_r1_distill_qwen_7b_qlora_colorist_e5 --deepspeed deepspeed_zero2
#     in 8 GB of GPU memory: add --memory-budget 8GB (README: Fine-tuning on a small GPU)
_base_ = [
    '../../_base_/models/deepseek/deepseek_r1_distill_qwen_7b.py',
    '../../_base_/datasets/colorist.py',
    '../../_base_/methods/qlora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
