# Baichuan2 13B Chat (baichuan-inc/Baichuan2-13B-Chat).
_base_ = './baichuan2.py'
model_title = 'Baichuan2 13B Chat'
pretrained_model_name_or_path = 'baichuan-inc/Baichuan2-13B-Chat'
