# Yi-1.5 34B Chat (01-ai/Yi-1.5-34B-Chat).
_base_ = './yi1_5.py'
model_title = 'Yi-1.5 34B Chat'
pretrained_model_name_or_path = '01-ai/Yi-1.5-34B-Chat'
