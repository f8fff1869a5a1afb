"""``ThroughputHook``: log tokens/s per GPU and model TFLOPs per GPU each iteration."""
from __future__ import annotations

from collections import deque

import torch
from mmengine.hooks import Hook

from xtuner.model.utils import unwrap_model
from xtuner.utils.constants import IMAGE_TOKEN_INDEX

__all__ = ["ThroughputHook", "estimate_flops_per_token", "trainable_fraction"]


def estimate_flops_per_token(config, sample_lengths, trainable_fraction: float = 1.0) -> float:
    """Training FLOPs for one token, averaged over a batch.

    ``6 * N`` for the dense weights (2 forward + 4 backward FLOPs per parameter and token:
    2 for the input gradient, 2 for the weight gradient; frozen weights, as with LoRA, get no
    weight gradient, so ``(4 + 2 * trainable_fraction) * N``) plus
    causal attention over each sample's real length: ``6 * layers * hidden * L`` per token on
    average for a sample of length ``L`` (QK^T and AV, forward and backward, halved by the
    causal mask). Recomputation by activation checkpointing is not counted.
    """
    hidden = config.hidden_size
    layers = config.num_hidden_layers
    inter = getattr(config, "intermediate_size", 4 * hidden)
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", heads) or heads
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    vocab = config.vocab_size
    attn_params = hidden * head_dim * (2 * heads + 2 * kv_heads)
    mlp_params = 3 * hidden * inter
    dense = layers * (attn_params + mlp_params) + hidden * vocab
    weight_factor = 4 + 2 * trainable_fraction
    total_tokens = sum(sample_lengths)
    attention = sum(6 * layers * heads * head_dim * n * n for n in sample_lengths)
    return weight_factor * dense + attention / max(1, total_tokens)


def trainable_fraction(model) -> float:
    """The fraction of ``model``'s weights that train (1.0 for full fine-tuning)."""
    # ZeRO-3 leaves each rank a shard; `ds_numel` is the full size.
    sizes = [(getattr(p, "ds_numel", p.numel()), p.requires_grad) for p in model.parameters()]
    total = sum(n for n, _ in sizes)
    return sum(n for n, grad in sizes if grad) / max(1, total)


class ThroughputHook(Hook):
    """Log ``tokens_per_sec`` (per GPU) and ``tflops`` (per GPU) after each training iteration.

    Tokens are the non-padding tokens of the batch; FLOPs follow
    :func:`estimate_flops_per_token` over the real sample lengths (packed rows count each
    sample separately, so varlen does not inflate the number as it did in v0). Both are
    rates over the same window as the logged ``time`` (the log processor's ``window_size``
    last iterations): the tokens of the window over its time, not the last iteration's rate.
    """

    priority = 55  # after IterTimerHook (60) measured the time, before LoggerHook (50)

    def __init__(self, use_activation_checkpointing=None, hidden_size=None, num_layers=None,
                 vocab_size=None, mlp_ratio=None, is_casual=None):
        # v0's arguments are accepted; the model config is read instead.
        self._config = None
        self._trainable_fraction = 1.0
        self._tokens_per_image = 1
        self._window: deque = deque()
        self._totals = torch.zeros(3, dtype=torch.float64)

    def before_train(self, runner) -> None:
        model = unwrap_model(runner.model)
        llm = getattr(model, "llm", model)
        self._config = getattr(llm, "config", None)
        self._trainable_fraction = trainable_fraction(llm)
        self._tokens_per_image = getattr(model, "tokens_per_image", 1)
        window = getattr(getattr(runner, "log_processor", None), "window_size", 10)
        # 'epoch'/'global' windows: every iteration so far.
        self._window = deque(maxlen=window if isinstance(window, int) else None)
        self._totals = torch.zeros(3, dtype=torch.float64)

    @staticmethod
    def sample_lengths(data: dict, tokens_per_image: int = 1) -> list[int]:
        """Real (non-padding) sample lengths of a collated batch as the LLM sees them: packed
        rows count each sample, and each image placeholder counts as the
        ``tokens_per_image`` features it becomes (LLaVA)."""
        ids = data["input_ids"]
        if data.get("cumulative_len") is not None:
            spans = []
            for row, cu in enumerate(data["cumulative_len"]):
                cu = torch.as_tensor(cu).tolist()
                spans += [(row, a, b) for a, b in zip(cu[:-1], cu[1:])]
        elif data.get("attention_mask") is not None:
            spans = [(row, 0, int(n)) for row, n in enumerate(data["attention_mask"].sum(-1))]
        else:
            spans = [(row, 0, ids.shape[-1]) for row in range(ids.shape[0])]
        lengths = [b - a for _, a, b in spans]
        if tokens_per_image > 1:
            images = (ids == IMAGE_TOKEN_INDEX)
            lengths = [n + (tokens_per_image - 1) * int(images[row, a:b].sum())
                       for n, (row, a, b) in zip(lengths, spans)]
        return lengths

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self._config is None or not data_batch:
            return
        data = data_batch.get("data", data_batch)
        from xtuner.parallel.sequence import get_sequence_parallel_world_size

        lengths = self.sample_lengths(data, self._tokens_per_image)
        # with sequence parallelism the N ranks of a group share the batch's tokens
        tokens = sum(lengths) / get_sequence_parallel_world_size()
        iter_time = runner.message_hub.get_scalar("train/time").current()
        if not iter_time:
            return
        flops = estimate_flops_per_token(self._config, lengths, self._trainable_fraction)
        entry = torch.tensor([tokens, flops * tokens, iter_time], dtype=torch.float64)
        # Running totals: an 'epoch'/'global' window is not summed anew every iteration, and
        # only a bounded window keeps its entries (to take the oldest out).
        if self._window.maxlen is not None:
            if len(self._window) == self._window.maxlen:
                self._totals -= self._window[0]
            self._window.append(entry)
        self._totals += entry
        tokens_sum, flops_sum, seconds = self._totals.tolist()
        runner.message_hub.update_scalar("train/tokens_per_sec", tokens_sum / seconds)
        runner.message_hub.update_scalar("train/tflops", flops_sum / seconds / 1e12)
