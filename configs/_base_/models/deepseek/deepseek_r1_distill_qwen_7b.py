# DeepSeek-R1-Distill-Qwen 7B (deepseek-ai/DeepSeek-R1-Distill-Qwen-7B).
_base_ = './deepseek_r1_distill.py'
model_title = 'DeepSeek-R1-Distill-Qwen 7B'
pretrained_model_name_or_path = 'deepseek-ai/DeepSeek-R1-Distill-Qwen-7B'
