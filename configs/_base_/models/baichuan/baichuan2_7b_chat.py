# Baichuan2 7B Chat (baichuan-inc/Baichuan2-7B-Chat).
_base_ = './baichuan2.py'
model_title = 'Baichuan2 7B Chat'
pretrained_model_name_or_path = 'baichuan-inc/Baichuan2-7B-Chat'
