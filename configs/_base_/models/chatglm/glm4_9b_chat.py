# GLM-4 9B Chat (THUDM/glm-4-9b-chat).
_base_ = '../_remote_code.py'
model_title = 'GLM-4 9B Chat'
pretrained_model_name_or_path = 'THUDM/glm-4-9b-chat'
prompt_template = 'chatglm3'  # PROMPT_TEMPLATE name (xtuner.utils.templates)
template_note = (
    'approximated: v0 has no GLM-4 template; chatglm3 is the closest (same '
    '<|system|>/<|user|>/<|assistant|> roles)'
)
model_notes = [
    ("THUDM/glm-4-9b-chat-hf holds the same weights for transformers' own Glm classes "
     "(no remote code)"),
]
