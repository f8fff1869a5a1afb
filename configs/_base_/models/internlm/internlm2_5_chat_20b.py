# InternLM2.5 20B Chat (internlm/internlm2_5-20b-chat).
_base_ = './internlm2_5.py'
model_title = 'InternLM2.5 20B Chat'
pretrained_model_name_or_path = 'internlm/internlm2_5-20b-chat'
