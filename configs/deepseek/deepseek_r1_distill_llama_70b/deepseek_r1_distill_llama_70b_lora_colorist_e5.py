# DeepSeek-R1-Distill-Llama 70B, lora on colorist, 5 epochs:
#     xtuner train deepseek_r1_distill_llama_70b_lora_colorist_e5 --deepspeed deepspeed_zero2
_base_ = [
    '../../_base_/models/deepseek/deepseek_r1_distill_llama_70b.py',
    '../../_base_/datasets/colorist.py',
    '../../_base_/methods/lora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
