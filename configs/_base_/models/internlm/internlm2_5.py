# What the internlm2_5_* models share; each model's file in this folder inherits it.
_base_ = '../_remote_code.py'
prompt_template = 'internlm2_chat'  # PROMPT_TEMPLATE name (xtuner.utils.templates)
