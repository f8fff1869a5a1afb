# What the baichuan2_* models share; each model's file in this folder inherits it.
_base_ = '../_remote_code.py'
prompt_template = 'baichuan2_chat'  # PROMPT_TEMPLATE name (xtuner.utils.templates)
