# What the gemma2_* models share; each model's file in this folder inherits it.
_base_ = '../_shared.py'
prompt_template = 'gemma'  # PROMPT_TEMPLATE name (xtuner.utils.templates)
template_note = "Gemma has no system role; the template's system turn is an XTuner extension"
use_varlen_attn = False
varlen_note = (
    'Gemma 2 caps attention logits (softcapping) and has sliding-window layers, which '
    "xtuner's varlen backend does not implement; packed samples attend to each other (as in "
    'v0)'
)
llm_kwargs = dict(attn_implementation='eager')
llm_kwargs_note = 'SDPA cannot cap attention logits; Gemma 2 trains with eager'
model_notes = [
    "Gated on the Hub: accept Google's license and `huggingface-cli login` first",
]
