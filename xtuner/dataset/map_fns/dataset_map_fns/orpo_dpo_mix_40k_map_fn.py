"""mlabonne/orpo-dpo-mix-40k (``chosen``/``rejected``: whole conversations that differ in the
last message) -> preference messages (v0's ``orpo_dpo_mix_40k_map_fn``)."""
from __future__ import annotations

from xtuner.utils.errors import DataError

__all__ = ["orpo_dpo_mix_40k_map_fn"]


def orpo_dpo_mix_40k_map_fn(example: dict) -> dict:
    """The shared turns become the prompt; the last message of each side is the response."""
    chosen, rejected = example["chosen"], example["rejected"]
    if len(chosen) != len(rejected):
        raise DataError(f"orpo_dpo_mix_40k_map_fn: 'chosen' has {len(chosen)} messages and "
                        f"'rejected' {len(rejected)}; both must be the same conversation "
                        "differing in the last message")
    return {"prompt": chosen[:-1], "chosen": chosen[-1:], "rejected": rejected[-1:]}
