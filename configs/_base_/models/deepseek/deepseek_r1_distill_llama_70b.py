# DeepSeek-R1-Distill-Llama 70B (deepseek-ai/DeepSeek-R1-Distill-Llama-70B).
_base_ = './deepseek_r1_distill.py'
model_title = 'DeepSeek-R1-Distill-Llama 70B'
pretrained_model_name_or_path = 'deepseek-ai/DeepSeek-R1-Distill-Llama-70B'
