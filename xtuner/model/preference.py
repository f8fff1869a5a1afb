"""What DPO, ORPO and reward models share: per-sequence log-probabilities of a batch of
chosen/rejected pairs, padded or packed, and the loss formulas.

Batches (see :func:`xtuner.dataset.collate_fns.preference_collate_fn`) hold the sequences of
each pair next to each other, chosen first: ``[c1, r1, c2, r2, ...]``, either as right-padded
rows (one sequence per row) or as one packed row whose sequence boundaries are
``cumulative_len``.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F

from xtuner.utils.constants import IGNORE_INDEX
from xtuner.utils.errors import ConfigError

__all__ = ["DPO_LOSS_TYPES", "SequenceLogps", "check_head_gives_the_logits", "dpo_losses",
           "head_sequence_logps", "head_softcap", "logps_chunk_tokens", "packed_bounds",
           "parse_preference_losses", "preference_metrics", "sequence_logps",
           "sharded_sequence_logps"]

DPO_LOSS_TYPES = ("sigmoid", "robust", "hinge", "ipo", "kto_pair", "sppo_hard", "nca_pair")


def packed_bounds(data: dict) -> torch.Tensor | None:
    """The sequence boundaries of a packed batch (one row), or None for padded rows."""
    bounds = data.get("cumulative_len")
    if bounds is None:
        return None
    if isinstance(bounds, (list, tuple)):
        if len(bounds) != 1:
            raise ValueError("packed preference batches must be one row (use "
                             "preference_collate_fn with use_varlen_attn=True)")
        bounds = bounds[0]
    return torch.as_tensor(bounds, dtype=torch.long)


class SequenceLogps:
    """Summed log-probabilities of the target tokens of each sequence, and their counts.

    Attributes:
        sums: ``(num_sequences,)`` float32, the sum of ``log p(label_t | tokens_<t)`` over the
            sequence's targets.
        counts: ``(num_sequences,)`` how many targets each sequence has.
    """

    def __init__(self, sums: torch.Tensor, counts: torch.Tensor):
        self.sums = sums
        self.counts = counts

    def means(self) -> torch.Tensor:
        """Per-token average (IPO, ORPO); 0 for a sequence without targets."""
        return self.sums / self.counts.clamp(min=1)

    def pairs(self, average: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """``(chosen, rejected)``: even sequences are chosen, odd ones rejected."""
        values = self.means() if average else self.sums
        if len(values) % 2:
            raise ValueError(f"a preference batch holds pairs, got {len(values)} sequences")
        return values[0::2], values[1::2]


def sequence_logps(logits: torch.Tensor, labels: torch.Tensor,
                   cu_seqlens: torch.Tensor | None = None) -> SequenceLogps:
    """Log-probabilities of each sequence's targets (labels other than ``IGNORE_INDEX``).

    The target mask comes from the labels alone, so a target token with id 0 counts (v0
    treated id 0 as padding). ``labels[t]`` is predicted from position ``t - 1`` of the same
    sequence: in a packed row (``cu_seqlens`` given, one row) the first label of each
    sequence is never a target, as it would be predicted from the previous sequence's last
    token. The logits are upcast to float32.

    Args:
        logits: ``(rows, length, vocab)``.
        labels: ``(rows, length)``.
        cu_seqlens: boundaries of the sequences of a packed row, ``[0, ..., length]``; None
            when every row is one sequence.
    """
    targets, mask = _shifted_targets(labels.to(logits.device), cu_seqlens)
    return _per_sequence(_target_logps(logits[:, :-1], targets) * mask, mask, cu_seqlens)


# Logits of one chunk of head_sequence_logps: 32M floats (128 MiB in float32), 256 tokens of
# a 128k vocabulary.
CHUNK_LOGITS = 2**25


def logps_chunk_tokens(vocab_size: int) -> int:
    """Target tokens per chunk of :func:`head_sequence_logps`: ``CHUNK_LOGITS`` logits."""
    return max(64, CHUNK_LOGITS // vocab_size)


def head_sequence_logps(hidden: torch.Tensor, head: torch.nn.Module, labels: torch.Tensor,
                        cu_seqlens: torch.Tensor | None = None,
                        chunk_tokens: int | None = None,
                        softcap: float | None = None) -> SequenceLogps:
    """:func:`sequence_logps` from the last hidden states and the output head, without the
    logits of the whole batch: only the target positions go through the head, ``chunk_tokens``
    at a time, and each chunk's logits are recomputed in the backward pass
    (``torch.utils.checkpoint``) instead of being kept. Same values and gradients.

    Args:
        hidden: ``(rows, length, hidden)``, the decoder's output.
        head: the output head (``model.get_output_embeddings()``).
        labels, cu_seqlens: as for :func:`sequence_logps`.
        chunk_tokens: target positions whose logits exist at once; default
            :func:`logps_chunk_tokens` of the head's ``out_features``.
        softcap: the model's final logit soft-capping (``tanh(logits / c) * c``; Gemma 2).
    """
    from torch.utils.checkpoint import checkpoint

    targets, mask = _shifted_targets(labels.to(hidden.device), cu_seqlens)
    selected = hidden[:, :-1][mask]  # (targets, hidden): prompts never reach the head
    picked_ids = targets[mask]
    if chunk_tokens is None:
        chunk_tokens = logps_chunk_tokens(head.out_features)
    # At least one (possibly empty) chunk: a batch without targets still gets a loss with a
    # gradient (zero), as on the logits path, and DDP sees the head used.
    pieces = [checkpoint(_chunk_logps, head, selected[i:i + chunk_tokens],
                         picked_ids[i:i + chunk_tokens], softcap, use_reentrant=False)
              for i in range(0, max(len(selected), 1), chunk_tokens)]
    token_logps = torch.zeros(targets.shape, dtype=torch.float32, device=hidden.device)
    token_logps = token_logps.index_put((mask,), torch.cat(pieces))
    return _per_sequence(token_logps, mask, cu_seqlens)


def head_softcap(llm) -> float | None:
    """The final logit soft-capping :func:`head_sequence_logps` must apply for ``llm``
    (Gemma 2's ``final_logit_softcapping``), or None.

    Raises:
        ConfigError: the model has no output head.
    """
    if llm.get_output_embeddings() is None:
        raise ConfigError(f"model.chunked_logps: {_model_name(llm)} has no output head; set "
                          "chunked_logps=False")
    return getattr(llm.config.get_text_config(), "final_logit_softcapping", None) or None


@torch.no_grad()
def check_head_gives_the_logits(llm, inputs: dict, softcap: float | None) -> None:
    """Refuse a model whose logits are not its output head applied to the decoder's hidden
    states (soft-capped as ``softcap`` says): some scale them (Cohere's ``logit_scale``,
    Granite's ``logits_scaling``, Falcon-H1's ``lm_head_multiplier``, ...), which
    :func:`head_sequence_logps` would silently leave out. Compares both on ``inputs`` (a few
    tokens) in eval mode, so dropout draws nothing.

    Raises:
        ConfigError: they differ.
    """
    training = llm.training
    llm.eval()
    try:
        expected = llm(**inputs).logits.float()
        got = _head_logits(llm.get_output_embeddings(),
                           llm.get_decoder()(**inputs).last_hidden_state, softcap)
    finally:
        llm.train(training)
    scale = expected.abs().max().clamp(min=1e-6)
    diff = (got - expected).abs().max()
    if diff > 1e-2 * scale:
        raise ConfigError(f"model.chunked_logps: {_model_name(llm)} does more to its logits "
                          f"than its output head (max difference {float(diff):.3g} of "
                          f"{float(scale):.3g}), which the chunked log-probabilities leave "
                          "out; set chunked_logps=False")


def _model_name(llm) -> str:
    return type(getattr(llm, "get_base_model", lambda: llm)()).__name__


def _head_logits(head: torch.nn.Module, hidden: torch.Tensor, softcap: float | None
                 ) -> torch.Tensor:
    """The logits the model computes from ``hidden``, in float32."""
    logits = head(hidden).float()
    return torch.tanh(logits / softcap) * softcap if softcap else logits


def _chunk_logps(head: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor,
                 softcap: float | None) -> torch.Tensor:
    return _target_logps(_head_logits(head, hidden, softcap), targets)


def _target_logps(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``log_softmax(logits)`` at ``targets`` only: logit - logsumexp, in float32 (no full
    log-softmax tensor kept)."""
    logits = logits.float()
    return logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)


def _shifted_targets(labels: torch.Tensor, cu_seqlens: torch.Tensor | None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(targets, mask)``: the label each position predicts (``labels[:, 1:]``, a packed
    row's sequence starts ignored; 0 where ignored) and which of them count."""
    targets = labels[:, 1:].clone()
    if cu_seqlens is not None:
        if labels.shape[0] != 1:
            raise ValueError("a packed batch must be one row")
        starts = cu_seqlens[1:-1].to(labels.device)
        # label index `start` sits at shifted index `start - 1`
        targets[0, (starts - 1)[starts > 0]] = IGNORE_INDEX
    mask = targets != IGNORE_INDEX
    return targets.masked_fill(~mask, 0), mask


def _per_sequence(token_logps: torch.Tensor, mask: torch.Tensor,
                  cu_seqlens: torch.Tensor | None) -> SequenceLogps:
    """Sum the per-position log-probabilities of each sequence."""
    if cu_seqlens is None:
        return SequenceLogps(token_logps.sum(-1), mask.sum(-1))
    device = token_logps.device
    bounds = cu_seqlens.to(device)
    # shifted index i holds label i + 1, which belongs to the sequence containing it
    label_pos = torch.arange(1, token_logps.shape[1] + 1, device=device)
    seq_of = torch.searchsorted(bounds, label_pos, right=True) - 1
    num = len(bounds) - 1
    sums = torch.zeros(num, dtype=token_logps.dtype, device=device)
    sums = sums.index_add(0, seq_of, token_logps[0])
    counts = torch.zeros(num, dtype=torch.long, device=device)
    counts = counts.index_add(0, seq_of, mask[0].long())
    return SequenceLogps(sums, counts)


def sharded_sequence_logps(logits: torch.Tensor, shard, group) -> SequenceLogps:
    """:func:`sequence_logps` of the whole sequences from one sequence-parallel shard.

    Args:
        logits: ``(rows, S/N, vocab)``, the shard's logits.
        shard: the :class:`~xtuner.parallel.sequence.SequenceShard` the logits come from (made
            with ``with_sequence_ids=True``): shifted labels and each position's sequence.
        group: the sequence-parallel group.

    The per-sequence sums are all-reduced over the group with autograd
    (``torch.distributed.nn``): every rank then computes the same pair loss, and each shard's
    gradient is summed over the ``N`` ranks' copies of it, which the average of the gradients
    over all ranks (DDP, DeepSpeed) divides back out.
    """
    import torch.distributed as dist
    import torch.distributed.nn.functional as dist_fn

    targets = shard.shift_labels.to(logits.device)
    mask = targets != IGNORE_INDEX
    token_logps = _target_logps(logits, targets.masked_fill(~mask, 0)) * mask
    ids = shard.sequence_ids.to(logits.device).reshape(-1)
    num = shard.num_sequences
    sums = torch.zeros(num, dtype=token_logps.dtype, device=logits.device)
    sums = sums.index_add(0, ids, token_logps.reshape(-1))
    counts = torch.zeros(num, dtype=torch.long, device=logits.device)
    counts = counts.index_add(0, ids, mask.reshape(-1).long())
    dist.all_reduce(counts, group=group)
    return SequenceLogps(dist_fn.all_reduce(sums, group=group), counts)


def check_dpo_loss_type(loss_type: str, label_smoothing: float) -> None:
    """One-line ``ConfigError`` for an unknown loss or an unusable label smoothing."""
    if loss_type not in DPO_LOSS_TYPES:
        raise ConfigError(f"model.loss_type={loss_type!r}: use one of "
                          f"{', '.join(map(repr, DPO_LOSS_TYPES))}")
    if loss_type == "robust" and not 0 <= label_smoothing < 0.5:
        raise ConfigError(f"model.label_smoothing={label_smoothing}: the robust loss divides "
                          "by 1 - 2 * label_smoothing, use a value in [0, 0.5)")


def dpo_losses(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor,
               ref_chosen: torch.Tensor, ref_rejected: torch.Tensor, beta: float,
               loss_type: str = "sigmoid", label_smoothing: float = 0.0) -> torch.Tensor:
    """Per-pair DPO losses (``kto_pair``: the chosen terms, then the rejected terms).

    The formulas are v0's (after TRL): ``sigmoid`` (DPO, conservative with
    ``label_smoothing``), ``robust`` (rDPO), ``hinge`` (SLiC), ``ipo`` (eq. 17 of the IPO
    paper, on per-token averages), ``kto_pair`` (HALOs eq. 7, the KL terms estimated from the
    batch), ``sppo_hard`` (SPPO with hard win probabilities) and ``nca_pair`` (NCA).
    """
    logits = (policy_chosen - policy_rejected) - (ref_chosen - ref_rejected)
    eps = label_smoothing
    if loss_type == "sigmoid":
        return -F.logsigmoid(beta * logits) * (1 - eps) - F.logsigmoid(-beta * logits) * eps
    if loss_type == "robust":
        return ((-F.logsigmoid(beta * logits) * (1 - eps)
                 + F.logsigmoid(-beta * logits) * eps) / (1 - 2 * eps))
    if loss_type == "hinge":
        return torch.relu(1 - beta * logits)
    if loss_type == "ipo":
        return (logits - 1 / (2 * beta)) ** 2
    chosen_ratio = policy_chosen - ref_chosen
    rejected_ratio = policy_rejected - ref_rejected
    if loss_type == "kto_pair":
        chosen_kl = chosen_ratio.mean().clamp(min=0)
        rejected_kl = rejected_ratio.mean().clamp(min=0)
        # the KL term of one half is estimated from the other half (KTO report)
        return torch.cat((1 - torch.sigmoid(beta * (chosen_ratio - rejected_kl)),
                          1 - torch.sigmoid(beta * (chosen_kl - rejected_ratio))))
    if loss_type == "sppo_hard":
        return (chosen_ratio - 0.5 / beta) ** 2 + (rejected_ratio + 0.5 / beta) ** 2
    if loss_type == "nca_pair":
        chosen_rewards, rejected_rewards = beta * chosen_ratio, beta * rejected_ratio
        return (-F.logsigmoid(chosen_rewards) - 0.5 * F.logsigmoid(-chosen_rewards)
                - 0.5 * F.logsigmoid(-rejected_rewards))
    raise ConfigError(f"unknown DPO loss_type {loss_type!r}")


def preference_metrics(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor) -> dict:
    """What is logged each step: mean rewards, reward accuracy and margin (detached)."""
    chosen_rewards, rejected_rewards = chosen_rewards.detach(), rejected_rewards.detach()
    return {
        "chosen_rewards": chosen_rewards.mean(),
        "rejected_rewards": rejected_rewards.mean(),
        "reward_acc": (chosen_rewards > rejected_rewards).float().mean(),
        "reward_margin": (chosen_rewards - rejected_rewards).mean(),
    }


def parse_preference_losses(losses: dict):
    """``(loss to back-propagate, values to log)``: only ``losses['loss']`` gets gradients.

    mmengine's default sums every key containing ``'loss'`` (``nll_loss`` would count
    twice); the metrics are logged as they are.
    """
    log = OrderedDict((key, value.detach().float().mean()) for key, value in losses.items())
    return losses["loss"], log
