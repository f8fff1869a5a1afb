# DeepSeek-R1-Distill-Llama 8B (deepseek-ai/DeepSeek-R1-Distill-Llama-8B).
_base_ = './deepseek_r1_distill.py'
model_title = 'DeepSeek-R1-Distill-Llama 8B'
pretrained_model_name_or_path = 'deepseek-ai/DeepSeek-R1-Distill-Llama-8B'
