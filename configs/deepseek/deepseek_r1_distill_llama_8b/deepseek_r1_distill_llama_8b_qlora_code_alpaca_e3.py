# DeepSeek-R1-Distill-Llama 8B, qlora on code_alpaca, 3 epochs:
#     xtuner train deepseek_r1_distill_llama_8b_qlora_code_alpaca_e3 --deepspeed deepspeed_zero2
#     on one 8 GB GPU, instead of --deepspeed: --memory-budget 8GB (see README)
_base_ = [
    '../../_base_/models/deepseek/deepseek_r1_distill_llama_8b.py',
    '../../_base_/datasets/code_alpaca.py',
    '../../_base_/methods/qlora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
