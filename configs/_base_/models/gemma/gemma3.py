# What the gemma3_* models share; each model's file in this folder inherits it.
_base_ = '../_shared.py'
prompt_template = 'gemma'  # PROMPT_TEMPLATE name (xtuner.utils.templates)
template_note = "Gemma has no system role; the template's system turn is an XTuner extension"
use_varlen_attn = False
varlen_note = (
    "Gemma 3 has sliding-window attention layers, which xtuner's varlen backend does not "
    'implement; packed samples attend to each other (as in v0)'
)
model_notes = [  # gemma3_1b_it (text only) keeps the first
    "Gated on the Hub: accept Google's license and `huggingface-cli login` first",
    ("Multimodal checkpoint (Gemma3ForConditionalGeneration): trained here on text only; "
     "LoRA also wraps the vision tower's linear layers"),
]
