# Phi-3.5 mini Instruct (microsoft/Phi-3.5-mini-instruct).
_base_ = '../_shared.py'
model_title = 'Phi-3.5 mini Instruct'
pretrained_model_name_or_path = 'microsoft/Phi-3.5-mini-instruct'
prompt_template = 'phi3_chat'  # PROMPT_TEMPLATE name (xtuner.utils.templates)
