# Llama 3.1 8B Instruct, qlora on oasst1, 3 epochs:
#     xtuner train llama3_1_8b_instruct_qlora_oasst1_e3 --deepspeed deepspeed_zero2
#     in 8 GB of GPU memory: add --memory-budget 8GB (README: Fine-tuning on a small GPU)
_base_ = [
    '../../_base_/models/llama/llama3_1_8b_instruct.py',
    '../../_base_/datasets/oasst1.py',
    '../../_base_/methods/qlora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
