# InternLM3 8B Instruct, qlora on code_alpaca, 3 epochs:
#     xtuner train internlm3_8b_instruct_qlora_code_alpaca_e3 --deepspeed deepspeed_zero2
#     in 9 GB of GPU memory: add --memory-budget 9GB (README: Fine-tuning on a small GPU)
_base_ = [
    '../../_base_/models/internlm/internlm3_8b_instruct.py',
    '../../_base_/datasets/code_alpaca.py',
    '../../_base_/methods/qlora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
