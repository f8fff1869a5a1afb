# InternLM2.5 7B Chat (internlm/internlm2_5-7b-chat).
_base_ = './internlm2_5.py'
model_title = 'InternLM2.5 7B Chat'
pretrained_model_name_or_path = 'internlm/internlm2_5-7b-chat'
