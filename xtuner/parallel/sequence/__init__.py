"""Sequence parallelism (Ulysses), v0's import path ``xtuner.parallel.sequence``.

``sequence_parallel_size = N`` at the top of a config splits every sequence over ``N``
consecutive ranks: each rank runs the model on ``1/N`` of the tokens, and around attention an
all-to-all gives each rank the whole sequence for ``1/N`` of the heads. Activation memory per
rank drops about ``N``-fold, so ``N`` times longer rows fit.

How it fits together:

* the runner creates the groups (:func:`init_sequence_parallel`, from the config's
  ``sequence_parallel_size``, with the plain runner and with DeepSpeed);
* :class:`SequenceParallelSampler` gives every rank of a group the same samples, so the
  data-parallel size is ``world_size / N`` (v0 configs keep their global batch with
  ``accumulative_counts = 16 * sequence_parallel_size``);
* the model (``SupervisedFinetune`` and its subclasses) shifts the labels, pads and splits
  each batch (:func:`shard_for_sequence_parallel`) and runs its LLM with a registered
  attention backend that wraps the usual one (:mod:`.attention`);
* the loss is a global sum over trained tokens divided by the global count (the train loop
  counts each group's targets once), so gradients equal those of ``N = 1``.

With ``N = 1`` none of this runs.
"""
from mmengine.dist import init_dist

from .attention import (
    check_heads_for_sequence_parallel,
    kv_repeats_for_sequence_parallel,
    post_process_for_sequence_parallel_attn,
    pre_process_for_sequence_parallel_attn,
    register_sequence_parallel_attention,
    sequence_parallel_wrapper,
)
from .comm import (
    all_to_all,
    gather_for_sequence_parallel,
    gather_forward_split_backward,
    reduce_sequence_parallel_loss,
    split_for_sequence_parallel,
    split_forward_gather_backward,
)
from .data import (
    SequenceShard,
    pad_cumulative_len_for_sequence_parallel,
    pad_for_sequence_parallel,
    shard_for_sequence_parallel,
)
from .sampler import SequenceParallelSampler
from .setup_distributed import (
    get_data_parallel_group,
    get_data_parallel_rank,
    get_data_parallel_world_size,
    get_inner_sequence_parallel_group,
    get_inner_sequence_parallel_rank,
    get_inner_sequence_parallel_world_size,
    get_sequence_parallel_group,
    get_sequence_parallel_rank,
    get_sequence_parallel_world_size,
    init_inner_sequence_parallel,
    init_sequence_parallel,
    is_inner_sequence_parallel_initialized,
)

__all__ = [
    "SequenceParallelSampler", "SequenceShard", "all_to_all",
    "check_heads_for_sequence_parallel", "kv_repeats_for_sequence_parallel",
    "gather_for_sequence_parallel",
    "gather_forward_split_backward", "get_data_parallel_group", "get_data_parallel_rank",
    "get_data_parallel_world_size", "get_inner_sequence_parallel_world_size",
    "get_sequence_parallel_group", "get_sequence_parallel_rank",
    "get_sequence_parallel_world_size", "init_sequence_parallel",
    "pad_cumulative_len_for_sequence_parallel", "pad_for_sequence_parallel",
    "reduce_sequence_parallel_loss", "register_sequence_parallel_attention",
    "sequence_parallel_wrapper", "shard_for_sequence_parallel", "split_for_sequence_parallel",
    "split_forward_gather_backward", "init_dist", "pre_process_for_sequence_parallel_attn",
    "post_process_for_sequence_parallel_attn", "get_inner_sequence_parallel_group",
    "get_inner_sequence_parallel_rank", "init_inner_sequence_parallel",
    "is_inner_sequence_parallel_initialized",
]
