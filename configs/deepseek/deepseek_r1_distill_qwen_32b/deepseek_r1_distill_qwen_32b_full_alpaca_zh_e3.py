# DeepSeek-R1-Distill-Qwen 32B, full on alpaca_zh, 3 epochs:
#     NPROC_PER_NODE=8 xtuner train deepseek_r1_distill_qwen_32b_full_alpaca_zh_e3 --deepspeed deepspeed_zero3
_base_ = [
    '../../_base_/models/deepseek/deepseek_r1_distill_qwen_32b.py',
    '../../_base_/datasets/alpaca_zh.py',
    '../../_base_/methods/full.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
