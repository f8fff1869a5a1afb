"""``VarlenAttnArgsToMessageHubHook``: kept so v0 configs that list it still load.

v0 moved ``cumulative_len``/``max_seqlen`` from each batch into a global ``MessageHub`` that
patched attention forwards read back. Here the batch itself carries them into the model's
forward (see ``SupervisedFinetune``), so there is nothing to move: the hook only checks that
the varlen arguments really are in the batch.
"""
from __future__ import annotations

from mmengine.hooks import Hook

__all__ = ["VarlenAttnArgsToMessageHubHook"]


class VarlenAttnArgsToMessageHubHook(Hook):
    """Compatibility hook for v0 configs; verifies that batches carry ``cumulative_len``."""

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        data = (data_batch or {}).get("data", data_batch or {})
        if "cumulative_len" not in data:
            raise RuntimeError(
                "VarlenAttnArgsToMessageHubHook is configured but the batch has no "
                "'cumulative_len': set use_varlen_attn=True in process_hf_dataset and "
                "default_collate_fn too")
