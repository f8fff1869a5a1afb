# DeepSeek-R1-Distill-Qwen 7B, qlora on colorist, 5 epochs:
#     xtuner train deepseek_r1_distill_qwen_7b_qlora_colorist_e5 --deepspeed deepspeed_zero2
#     on one 8 GB GPU, instead of --deepspeed: --memory-budget 8GB (see README)
_base_ = [
    '../../_base_/models/deepseek/deepseek_r1_distill_qwen_7b.py',
    '../../_base_/datasets/colorist.py',
    '../../_base_/methods/qlora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
