"""Intel/orca_dpo_pairs (``system``, ``question``, ``chosen``, ``rejected``) -> preference
messages (v0's ``intel_orca_dpo_map_fn``)."""
from __future__ import annotations

__all__ = ["intel_orca_dpo_map_fn"]


def intel_orca_dpo_map_fn(example: dict) -> dict:
    """One record of Intel/orca_dpo_pairs as ``{"prompt", "chosen", "rejected"}`` messages.

    The system message is kept even when empty, as v0 did.
    """
    return {
        "prompt": [{"role": "system", "content": example["system"]},
                   {"role": "user", "content": example["question"]}],
        "chosen": [{"role": "assistant", "content": example["chosen"]}],
        "rejected": [{"role": "assistant", "content": example["rejected"]}],
    }
