"""``DPO``: direct preference optimisation and its variants (XTuner v0's API and seven losses).

A batch holds chosen/rejected pairs (``[c1, r1, c2, r2, ...]``), as right-padded rows or packed
into one row with variable-length attention (``use_varlen_attn=True``, sequence boundaries in
``cumulative_len``); see :mod:`xtuner.model.preference`. The policy is a
:class:`~xtuner.model.SupervisedFinetune`, so full fine-tuning, LoRA and QLoRA, packed rows,
activation checkpointing and the export work as for SFT.

The reference model:

* ``ref_llm`` given: built from it and frozen;
* LoRA/QLoRA without ``ref_llm``: the policy with its adapters disabled (no second copy);
* full fine-tuning without ``ref_llm``: a second, frozen model built from ``llm``'s own config
  (not a deep copy of the policy, which breaks on ZeRO-3's partitioned parameters).

The reference is never saved: checkpoints and exports hold the policy only.

The loss is each micro-batch's mean over its pairs (v0), so the train loop's ``loss_reduction``
normalisation, which counts target tokens, does not apply: preference models have
``loss_reduction = None`` and the loop leaves their batches alone.
"""
from __future__ import annotations

import copy
from collections import OrderedDict
from contextlib import contextmanager

import torch

from xtuner.parallel.sequence import shard_for_sequence_parallel
from xtuner.utils.errors import ConfigError

from .kernels import apply_liger_kernels
from .preference import (
    check_dpo_loss_type,
    check_head_gives_the_logits,
    dpo_losses,
    head_sequence_logps,
    head_softcap,
    logps_chunk_tokens,
    packed_bounds,
    parse_preference_losses,
    preference_metrics,
    sequence_logps,
    sharded_sequence_logps,
)
from .sft import SupervisedFinetune, _build_llm, _zero3_dtype

__all__ = ["DPO", "PreferenceModel"]

REF_PREFIX = "ref_llm."


def _freeze(model: torch.nn.Module) -> torch.nn.Module:
    for param in model.parameters():
        param.requires_grad_(False)
    return model.eval()


class PreferenceModel(SupervisedFinetune):
    """A causal LM trained on chosen/rejected pairs (the common part of DPO and ORPO).

    Takes :class:`SupervisedFinetune`'s arguments except ``loss_reduction``, and:

    Args:
        chunked_logps: compute the sequences' log-probabilities from the decoder's hidden
            states through the output head, only at the target tokens and a chunk of them at
            a time (:func:`~xtuner.model.preference.head_sequence_logps`), instead of from
            the logits of the whole batch: those (tokens x vocabulary floats, several GiB for
            4k tokens of a 128k vocabulary, kept for the backward pass in float32) never
            exist. Same values and gradients. Off by default; not with sequence parallelism.
            The first batch checks that the model's logits are its head's output (a model
            that scales them is refused).
    """

    def __init__(self, llm, use_varlen_attn: bool = False, chunked_logps: bool = False,
                 **kwargs):
        if "loss_reduction" in kwargs:
            raise ConfigError("model.loss_reduction does not apply to preference training "
                              "(the loss is the mean over the micro-batch's pairs); remove it")
        super().__init__(llm, use_varlen_attn=use_varlen_attn, **kwargs)
        # The train loop normalises token losses over the optimizer step for models with a
        # loss_reduction; a pair loss is not a token loss.
        self.loss_reduction = None
        self.chunked_logps = False
        if chunked_logps:
            self.enable_chunked_logps()

    def enable_chunked_logps(self) -> None:
        """Switch to ``chunked_logps`` (also what the memory plan's lever does).

        Raises:
            ConfigError: with sequence parallelism.
        """
        if self.sequence_parallel_size > 1:
            raise ConfigError("model.chunked_logps does not work with "
                              "sequence_parallel_size > 1; set chunked_logps=False")
        self.chunked_logps = True
        self.logit_softcap = head_softcap(self.llm)
        self.logps_chunk_tokens = logps_chunk_tokens(self.llm.config.get_text_config().vocab_size)
        self._head_checked = False  # on the first batch (see _check_head)

    def _pair_inputs(self, data: dict) -> tuple[dict, torch.Tensor, torch.Tensor | None]:
        """The LLM's inputs (without labels), the labels and the packed boundaries."""
        bounds = packed_bounds(data)
        if bounds is not None and not self.use_varlen_attn:
            raise ConfigError("the batch is packed (cumulative_len) but the model has "
                              "use_varlen_attn=False: set use_varlen_attn=True in the model too")
        inputs = self._model_inputs(data)
        inputs.pop("loss_weights", None)
        labels = inputs.pop("labels")
        return inputs, labels, bounds

    def _logps_of(self, inputs: dict, labels: torch.Tensor, bounds: torch.Tensor | None):
        """A function from an LLM (the policy, or the reference) to the sequences'
        :class:`~xtuner.model.preference.SequenceLogps` on ``inputs``.

        With sequence parallelism the LLM runs on this rank's shard (labels shifted before the
        split) and the log-probabilities are those of the whole sequences (see
        :func:`~xtuner.model.preference.sharded_sequence_logps`).
        """
        group = self._sequence_parallel_group()
        if group is not None:
            shard = shard_for_sequence_parallel(inputs, group, labels=labels,
                                                with_sequence_ids=True)
            return lambda llm: sharded_sequence_logps(llm(**shard.inputs).logits, shard, group)
        if self.chunked_logps:
            self._check_head(inputs, bounds)
            return lambda llm: head_sequence_logps(
                llm.get_decoder()(**inputs).last_hidden_state, llm.get_output_embeddings(),
                labels, bounds, chunk_tokens=self.logps_chunk_tokens,
                softcap=self.logit_softcap)
        return lambda llm: sequence_logps(llm(**inputs).logits, labels, bounds)

    def _check_head(self, inputs: dict, bounds: torch.Tensor | None) -> None:
        """Once, on the first tokens of the first batch: the chunked path's logits (output
        head over the decoder's hidden states) are the model's
        (:func:`~xtuner.model.preference.check_head_gives_the_logits`)."""
        if self._head_checked:
            return
        if bounds is not None:  # packed: the row's first sequence
            first = int(bounds[1])
        elif "attention_mask" in inputs:  # padded: the first row, without its padding
            first = int(inputs["attention_mask"][0].sum())
        else:
            first = inputs["input_ids"].shape[1]
        length = max(1, min(16, first))  # one sequence: plain causal attention
        prefix = {key: inputs[key][:1, :length]
                  for key in ("input_ids", "attention_mask", "position_ids") if key in inputs}
        check_head_gives_the_logits(self.llm, prefix, self.logit_softcap)
        self._head_checked = True

    @contextmanager
    def _measured(self, data: dict):
        plan = self.checkpointing_plan
        measure = plan is not None and plan.measuring and self.training
        if measure:
            plan.note_forward_start(data["input_ids"].numel())
        yield
        if measure:
            plan.note_forward_end()

    def parse_losses(self, losses: dict):
        """Back-propagate ``loss`` only; log it and every metric."""
        return parse_preference_losses(losses)


class DPO(PreferenceModel):
    """Direct preference optimisation (v0's ``xtuner.model.DPO``).

    Args:
        llm: the policy, or its config dict.
        ref_llm: the reference model's config dict (or module); None: see the module
            docstring.
        beta: the KL weight (for ``ipo`` the regularisation tau, for ``sppo_hard`` 1/eta).
        loss_type: one of ``sigmoid, robust, hinge, ipo, kto_pair, sppo_hard, nca_pair``.
        label_smoothing: the assumed label-noise rate of ``sigmoid`` (cDPO) and ``robust``.
        use_varlen_attn: packed pairs (one row, ``cumulative_len``).
        **kwargs: :class:`SupervisedFinetune`'s arguments (``lora``, ``tokenizer``,
            ``use_activation_checkpointing``, ...).

    ``compute_loss`` returns the loss and, for the log, ``chosen_rewards``,
    ``rejected_rewards`` (``beta`` times the policy/reference log-ratio), ``reward_acc`` and
    ``reward_margin``.
    """

    def __init__(self, llm, ref_llm=None, beta: float = 0.1, loss_type: str = "sigmoid",
                 label_smoothing: float = 0.0, use_varlen_attn: bool = False, **kwargs):
        check_dpo_loss_type(loss_type, label_smoothing)
        super().__init__(llm, use_varlen_attn=use_varlen_attn, **kwargs)
        self.beta = beta
        self.loss_type = loss_type
        self.label_smoothing = label_smoothing
        if ref_llm is not None:
            ref = _build_llm(ref_llm, kwargs.get("max_position_embeddings"))
        elif self.use_lora:
            ref = None  # the policy with its adapters disabled
        else:
            ref = self._reference_from_policy_config(llm, kwargs.get("max_position_embeddings"))
        if ref is not None:
            ref.config.use_cache = False
            if self.attn_implementation is not None:  # varlen, sequence parallel
                ref.set_attn_implementation(self.attn_implementation)
            if self.use_liger_kernel:
                # the same kernels as the policy: at step 0 both give the same log-probs
                apply_liger_kernels(ref, True, layer_kernels=not self.use_torch_compile)
            self._match_vocabulary(ref)
            ref = _freeze(ref)
        self.ref_llm = ref

    def _reference_from_policy_config(self, llm, max_position_embeddings):
        if isinstance(llm, torch.nn.Module):
            if _zero3_dtype() is not None:
                raise ConfigError("DPO under ZeRO-3 needs the reference built from a config: "
                                  "give model.llm (or model.ref_llm) as a config dict, not a "
                                  "built model")
            return copy.deepcopy(self.llm)
        return _build_llm(llm, max_position_embeddings)

    def _match_vocabulary(self, ref) -> None:
        """A policy whose embeddings were resized for the tokenizer gets a reference with the
        same rows (the new rows are random, so they are copied)."""
        policy_emb = self.llm.get_input_embeddings().weight
        ref_emb = ref.get_input_embeddings().weight
        if ref_emb.shape[0] == policy_emb.shape[0]:
            return
        old = ref_emb.shape[0]
        ref.resize_token_embeddings(policy_emb.shape[0], mean_resizing=False)
        with torch.no_grad():
            ref.get_input_embeddings().weight[old:] = policy_emb[old:].to(ref_emb.dtype)
            out_ref, out_policy = ref.get_output_embeddings(), self.llm.get_output_embeddings()
            if out_ref is not None and out_ref.weight is not ref.get_input_embeddings().weight:
                out_ref.weight[old:] = out_policy.weight[old:].to(out_ref.weight.dtype)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.ref_llm is not None:
            self.ref_llm.eval()  # no dropout in the reference
        return self

    # -- loss ---------------------------------------------------------------------------------
    def reference_logits(self, inputs: dict) -> torch.Tensor:
        """The reference model's logits for the LLM inputs ``inputs``."""
        return self._with_reference(lambda llm: llm(**inputs).logits)

    @torch.no_grad()
    def _with_reference(self, run):
        """``run(reference LLM)``: ``ref_llm``, or the policy with its adapters disabled."""
        if self.ref_llm is not None:
            return run(self.ref_llm)
        with self.llm.disable_adapter():
            return run(self.llm)

    def compute_loss(self, data: dict) -> dict:
        """The mean DPO loss over the batch's pairs, and the reward metrics."""
        inputs, labels, bounds = self._pair_inputs(data)
        logps_of = self._logps_of(inputs, labels, bounds)
        average = self.loss_type == "ipo"  # IPO compares per-token averages
        with self._measured(data):
            ref = self._with_reference(logps_of)
            policy = logps_of(self.llm)
        policy_chosen, policy_rejected = policy.pairs(average)
        ref_chosen, ref_rejected = ref.pairs(average)
        losses = dpo_losses(policy_chosen, policy_rejected, ref_chosen, ref_rejected,
                            self.beta, self.loss_type, self.label_smoothing)
        return {"loss": losses.mean(),
                **preference_metrics(self.beta * (policy_chosen - ref_chosen),
                                     self.beta * (policy_rejected - ref_rejected))}

    # -- checkpoints: the reference is never saved --------------------------------------------
    def state_dict(self, *args, **kwargs):
        """The policy's weights (adapter only with LoRA); never the reference's."""
        state = super().state_dict(*args, **kwargs)
        prefix = kwargs.get("prefix", "") + REF_PREFIX
        return OrderedDict((k, v) for k, v in state.items() if not k.startswith(prefix))

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Load a policy checkpoint; the reference keeps the weights it was built with."""
        if self.use_lora or self.ref_llm is None:
            return super().load_state_dict(state_dict, strict=strict, assign=assign)
        state_dict = {k: v for k, v in state_dict.items() if not k.startswith(REF_PREFIX)}
        result = torch.nn.Module.load_state_dict(self, state_dict, strict=False, assign=assign)
        missing = [k for k in result.missing_keys if not k.startswith(REF_PREFIX)]
        if strict and (missing or result.unexpected_keys):
            raise RuntimeError(f"DPO checkpoint mismatch: missing {missing[:5]}, unexpected "
                               f"{result.unexpected_keys[:5]}")
        result.missing_keys[:] = missing
        return result
