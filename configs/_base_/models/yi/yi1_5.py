# What the yi1_5_* models share; each model's file in this folder inherits it.
_base_ = '../_shared.py'
prompt_template = 'qwen_chat'  # PROMPT_TEMPLATE name (xtuner.utils.templates)
template_note = "Yi-1.5 chats in ChatML, which is v0's qwen_chat"
