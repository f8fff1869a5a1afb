# ChatGLM3 6B (THUDM/chatglm3-6b).
_base_ = '../_remote_code.py'
model_title = 'ChatGLM3 6B'
pretrained_model_name_or_path = 'THUDM/chatglm3-6b'
prompt_template = 'chatglm3'  # PROMPT_TEMPLATE name (xtuner.utils.templates)
