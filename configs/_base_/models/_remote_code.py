# What models with their own modeling code (trust_remote_code=True) share.
_base_ = './_shared.py'
trust_remote_code = True
use_varlen_attn = False
varlen_note = (
    "remote-code model: its attention does not go through transformers' AttentionInterface, "
    "so xtuner's varlen backend cannot be applied (packed samples attend to each other, as in "
    'v0)'
)
