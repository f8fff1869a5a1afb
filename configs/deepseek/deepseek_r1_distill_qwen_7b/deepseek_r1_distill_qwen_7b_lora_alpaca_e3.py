# DeepSeek-R1-Distill-Qwen 7B, lora on alpaca, 3 epochs:
#     xtuner train deepseek_r1_distill_qwen_7b_lora_alpaca_e3 --deepspeed deepspeed_zero2
_base_ = [
    '../../_base_/models/deepseek/deepseek_r1_distill_qwen_7b.py',
    '../../_base_/datasets/alpaca.py',
    '../../_base_/methods/lora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
