# What the qwen3_* models share; each model's file in this folder inherits it.
_base_ = '../_shared.py'
prompt_template = 'qwen_chat'  # PROMPT_TEMPLATE name (xtuner.utils.templates)
template_note = (
    'Qwen3 chats in ChatML (v0 has no qwen3 template): answers are trained without a <think> '
    'block, i.e. non-thinking mode'
)
