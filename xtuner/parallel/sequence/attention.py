"""Ulysses sequence-parallel attention as transformers attention backends.

Each rank holds ``S/N`` tokens of every sequence. Around the attention kernel, an all-to-all
trades the sequence split for a head split, ``(B, H, S/N, D) -> (B, H/N, S, D)``, so the
kernel sees whole sequences for ``H/N`` heads; a second all-to-all trades back. The kernel is
xtuner's varlen backend (:mod:`xtuner.model.attention`) for packed rows, else causal SDPA.

The backends are registered through ``transformers.AttentionInterface`` (no model class is
patched) and only split anything when the forward call carries a
``sequence_parallel_group`` (:func:`xtuner.parallel.sequence.shard_for_sequence_parallel`
adds it); other calls (evaluation, generation) go to the wrapped backend unchanged.
"""
from __future__ import annotations

import torch.distributed as dist
import torch.nn.functional as F

from xtuner.utils.errors import ConfigError

from .comm import all_to_all

__all__ = ["SEQUENCE_PARALLEL_BACKENDS", "register_sequence_parallel_attention",
           "check_heads_for_sequence_parallel", "kv_repeats_for_sequence_parallel",
           "pre_process_for_sequence_parallel_attn", "post_process_for_sequence_parallel_attn",
           "sequence_parallel_wrapper"]

# the wrapped backend -> the name the wrapper is registered under
SEQUENCE_PARALLEL_BACKENDS = {"xtuner_varlen": "xtuner_sp_varlen", "sdpa": "xtuner_sp_sdpa"}
# backends whose padded-row maths SDPA reproduces (eager is the same softmax attention)
_SDPA_COMPATIBLE = ("sdpa", "eager", "flash_attention_2", "flash_attention_3")


def check_heads_for_sequence_parallel(config, sp_size: int) -> None:
    """``ConfigError`` unless the query heads divide by ``sp_size`` (key/value heads that do
    not divide are repeated, see :func:`kv_repeats_for_sequence_parallel`)."""
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    heads = getattr(config, "num_attention_heads", None)
    if heads is not None and heads % sp_size:
        raise ConfigError(f"sequence_parallel_size={sp_size}: the model's "
                          f"{heads} attention heads do not split over {sp_size} ranks; use a "
                          f"sequence_parallel_size that divides {heads}")


def kv_repeats_for_sequence_parallel(heads: int, kv_heads: int, sp_size: int) -> int:
    """How often each key/value head is repeated so they split over ``sp_size`` ranks and
    each rank's query heads keep their own key/value heads (1: no repeat)."""
    group = heads // kv_heads
    for repeat in range(1, group + 1):
        if group % repeat == 0 and (kv_heads * repeat) % sp_size == 0:
            return repeat
    return group


def _causal_sdpa(module, query, key, value, dropout, scaling, kwargs):
    window = kwargs.get("sliding_window")
    if window is not None and query.shape[2] > window:
        raise ValueError(f"sequence parallelism: a {query.shape[2]}-token row exceeds the "
                         f"model's sliding window ({window}), which it does not apply")
    if kwargs.get("softcap") is not None:
        raise ValueError("sequence parallelism does not support attention logit soft-capping")
    gqa = key.shape[1] != query.shape[1]
    out = F.scaled_dot_product_attention(query, key, value, dropout_p=dropout, scale=scaling,
                                         is_causal=True, enable_gqa=gqa)
    return out.transpose(1, 2)


def _make_backend(inner_name: str):
    def forward(module, query, key, value, attention_mask, dropout=0.0, scaling=None,
                sequence_parallel_group=None, **kwargs):
        if inner_name == "xtuner_varlen":
            from xtuner.model.attention import varlen_attention_forward as inner
        else:
            from transformers.integrations.sdpa_attention import sdpa_attention_forward as inner
        if sequence_parallel_group is None:
            return inner(module, query, key, value, attention_mask, dropout=dropout,
                         scaling=scaling, **kwargs)
        group = sequence_parallel_group
        world = dist.get_world_size(group)
        heads, kv_heads = query.shape[1], key.shape[1]
        if heads % world:
            raise ValueError(f"{heads} attention heads do not split over {world} ranks")
        repeat = kv_repeats_for_sequence_parallel(heads, kv_heads, world)
        if repeat > 1:
            key = key.repeat_interleave(repeat, dim=1)
            value = value.repeat_interleave(repeat, dim=1)
        # (B, heads, S/N, D) -> (B, heads/N, S, D)
        query, key, value = (all_to_all(t, group, scatter_dim=1, gather_dim=2)
                             for t in (query, key, value))
        if kwargs.get("cu_seq_lens_q") is not None:
            from xtuner.model.attention import varlen_attention_forward

            # the shard carries no padding mask: the whole row is causal within samples
            out, _ = varlen_attention_forward(module, query, key, value, None,
                                              dropout=dropout, scaling=scaling, **kwargs)
        else:
            out = _causal_sdpa(module, query, key, value, dropout, scaling, kwargs)
        # (B, S, heads/N, D) -> (B, S/N, heads, D)
        return all_to_all(out, group, scatter_dim=1, gather_dim=2), None

    forward.__name__ = f"{SEQUENCE_PARALLEL_BACKENDS[inner_name]}_forward"
    forward.__doc__ = (f"Ulysses sequence parallelism around the ``{inner_name}`` attention "
                       "backend (transformers attention function).")
    return forward


_BACKENDS = {name: _make_backend(name) for name in SEQUENCE_PARALLEL_BACKENDS}


def register_sequence_parallel_attention(current: str | None) -> str:
    """Register the sequence-parallel wrapper of the model's attention backend ``current``
    with transformers and return the name to select (idempotent).

    Packed rows (``xtuner_varlen``) keep the varlen kernel; padded rows run causal SDPA on the
    gathered sequence (the maths of ``sdpa``, ``eager`` and flash-attention).

    Raises:
        ConfigError: another backend (flex attention, a hub kernel...).
    """
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    if current in SEQUENCE_PARALLEL_BACKENDS.values():
        return current
    if current in _SDPA_COMPATIBLE or current is None:
        inner = "sdpa"
    elif current == "xtuner_varlen":
        inner = current
    else:
        raise ConfigError(f"sequence parallelism wraps the sdpa, eager, flash-attention and "
                          f"xtuner varlen attention backends, not {current!r}; set the "
                          "model's attn_implementation to 'sdpa' or use_varlen_attn=True")
    if inner == "xtuner_varlen":
        from xtuner.model.attention import register_varlen_attention, varlen_attention_mask

        register_varlen_attention()
        mask = varlen_attention_mask
    else:
        from transformers.masking_utils import sdpa_mask as mask
    name = SEQUENCE_PARALLEL_BACKENDS[inner]
    AttentionInterface.register(name, _BACKENDS[inner])
    AttentionMaskInterface.register(name, mask)
    return name


def pre_process_for_sequence_parallel_attn(query_states, key_states, value_states,
                                           scatter_dim: int = 2, gather_dim: int = 1):
    """v0's helper for hand-written attention, layout ``(B, S/N, heads, D)``: all-to-all to
    ``(B, S, heads/N, D)`` (heads must divide by ``N``; repeat key/value heads first)."""
    from .setup_distributed import get_sequence_parallel_group

    group = get_sequence_parallel_group()
    return tuple(all_to_all(t, group, scatter_dim, gather_dim)
                 for t in (query_states, key_states, value_states))


def post_process_for_sequence_parallel_attn(attn_output, scatter_dim: int = 1,
                                            gather_dim: int = 2):
    """The inverse of :func:`pre_process_for_sequence_parallel_attn` for the attention
    output: ``(B, S, heads/N, D) -> (B, S/N, heads, D)``."""
    from .setup_distributed import get_sequence_parallel_group

    return all_to_all(attn_output, get_sequence_parallel_group(), scatter_dim, gather_dim)


def sequence_parallel_wrapper(attention_fn):
    """v0 decorated each model's flash-attention function; here attention is wrapped once,
    as a transformers backend (:func:`register_sequence_parallel_attention`). Kept so v0
    imports work: it returns ``attention_fn`` unchanged."""
    return attention_fn
