# DeepSeek-R1-Distill-Qwen 32B (deepseek-ai/DeepSeek-R1-Distill-Qwen-32B).
_base_ = './deepseek_r1_distill.py'
model_title = 'DeepSeek-R1-Distill-Qwen 32B'
pretrained_model_name_or_path = 'deepseek-ai/DeepSeek-R1-Distill-Qwen-32B'
