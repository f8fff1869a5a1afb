# DeepSeek-R1-Distill-Qwen 7B, full on code_alpaca, 3 epochs:
#     NPROC_PER_NODE=8 xtuner train deepseek_r1_distill_qwen_7b_full_code_alpaca_e3 --deepspeed deepspeed_zero3
_base_ = [
    '../../_base_/models/deepseek/deepseek_r1_distill_qwen_7b.py',
    '../../_base_/datasets/code_alpaca.py',
    '../../_base_/methods/full.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
