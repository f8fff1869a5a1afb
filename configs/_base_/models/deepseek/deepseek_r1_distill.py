# What the deepseek_r1_distill_* models share; each model's file in this folder inherits it.
_base_ = '../_shared.py'
prompt_template = 'deepseek_v2'  # PROMPT_TEMPLATE name (xtuner.utils.templates)
template_note = (
    'approximated: v0 has no DeepSeek-R1 template; deepseek_v2 is the closest DeepSeek chat '
    "format ('User: ...\\n\\nAssistant: ' where R1 uses its <｜User｜>/<｜Assistant｜> tokens)"
)
