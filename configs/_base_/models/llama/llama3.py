# What the llama3_* models share; each model's file in this folder inherits it.
_base_ = '../_shared.py'
prompt_template = 'llama3_chat'  # PROMPT_TEMPLATE name (xtuner.utils.templates)
model_notes = [
    "Gated on the Hub: accept Meta's license and `huggingface-cli login` first",
]
