# What the qwen2_5_* models share; each model's file in this folder inherits it.
_base_ = '../_shared.py'
prompt_template = 'qwen_chat'  # PROMPT_TEMPLATE name (xtuner.utils.templates)
