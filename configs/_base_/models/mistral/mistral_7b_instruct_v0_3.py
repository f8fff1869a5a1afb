# Mistral 7B Instruct v0.3 (mistralai/Mistral-7B-Instruct-v0.3).
_base_ = '../_shared.py'
model_title = 'Mistral 7B Instruct v0.3'
pretrained_model_name_or_path = 'mistralai/Mistral-7B-Instruct-v0.3'
prompt_template = 'mistral'  # PROMPT_TEMPLATE name (xtuner.utils.templates)
template_note = (
    "v0's [INST] ... [/INST] format; Mistral has no system role, the template gives the "
    'system prompt its own [INST] block'
)
