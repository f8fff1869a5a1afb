# DeepSeek-R1-Distill-Qwen 14B, full on oasst1, 3 epochs:
#     NPROC_PER_NODE=8 xtuner train deepseek_r1_distill_qwen_14b_full_oasst1_e3 --deepspeed deepspeed_zero3
_base_ = [
    '../../_base_/models/deepseek/deepseek_r1_distill_qwen_14b.py',
    '../../_base_/datasets/oasst1.py',
    '../../_base_/methods/full.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
