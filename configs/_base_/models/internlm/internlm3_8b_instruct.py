# InternLM3 8B Instruct (internlm/internlm3-8b-instruct).
_base_ = '../_remote_code.py'
model_title = 'InternLM3 8B Instruct'
pretrained_model_name_or_path = 'internlm/internlm3-8b-instruct'
prompt_template = 'internlm2_chat'  # PROMPT_TEMPLATE name (xtuner.utils.templates)
template_note = "InternLM3 keeps InternLM2's ChatML format"
