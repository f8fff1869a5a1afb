# Phi-4 (14B) (microsoft/phi-4).
_base_ = '../_shared.py'
model_title = 'Phi-4 (14B)'
pretrained_model_name_or_path = 'microsoft/phi-4'
prompt_template = 'qwen_chat'  # PROMPT_TEMPLATE name (xtuner.utils.templates)
template_note = (
    'approximated: Phi-4 writes ChatML with <|im_sep|> after the role; v0 has no phi4 '
    'template, qwen_chat (ChatML with a newline there) is the closest'
)
