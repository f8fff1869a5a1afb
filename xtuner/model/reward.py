"""``RewardModel``: a scalar reward head on an LLM, trained on chosen/rejected pairs (XTuner
v0's API).

The model is transformers' ``AutoModelForSequenceClassification`` with one label: the decoder
plus a linear ``score`` head (zero-initialised, as v0's ``v_head``). A config whose ``llm``
builds a causal LM (v0's configs: ``AutoModelForCausalLM.from_pretrained``) builds the
sequence-classification model of the same checkpoint instead; the unused LM head is not
loaded. Each sequence ends with ``reward_token_id`` (appended by ``build_preference_dataset``)
and its score is the head's output there: label 0 marks the chosen sequence's reward token, 1
the rejected one's (v0's data layout). ``to_hf`` writes a folder that plain transformers loads
with ``AutoModelForSequenceClassification`` and that scores a sequence ending with the reward
token exactly as the trained model does.

Losses (InternLM2 report, arXiv:2403.17297): ``ranking`` ``-log sigmoid(s_c - s_r)``, or
``focal`` (the ranking loss weighted by ``(1 - p)^2``, ``p = 2 relu(sigmoid(s_c - s_r) - 0.5)``),
plus ``penalty_weight`` times a ``log_barrier`` (scores kept inside (-5, 5)) or ``L2``
penalty on the scores; both are averaged over the micro-batch's pairs.
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch
import torch.nn.functional as F
from mmengine import print_log

from xtuner.registry import BUILDER
from xtuner.utils.errors import ConfigError

from .preference import packed_bounds, parse_preference_losses
from .sft import SupervisedFinetune, _build_llm
from .utils import find_all_linear_names, is_quantized

__all__ = ["RewardModel", "ranking_loss", "focal_loss", "log_barrier_penalty", "l2_penalty"]

LOSS_TYPES = ("ranking", "focal")
PENALTY_TYPES = ("log_barrier", "L2", "none")
SCORE_HEAD = "score"


def ranking_loss(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """Per-pair ``-log sigmoid(s_c - s_r)`` (Bradley-Terry)."""
    return -F.logsigmoid(chosen - rejected)


def focal_loss(chosen: torch.Tensor, rejected: torch.Tensor, gamma: float = 2) -> torch.Tensor:
    """Per-pair focal ranking loss: easy pairs (``sigmoid(s_c - s_r)`` near 1) weigh less."""
    p = 2 * torch.relu(torch.sigmoid(chosen - rejected) - 0.5)
    return (1 - p) ** gamma * ranking_loss(chosen, rejected)


def log_barrier_penalty(scores: torch.Tensor, lower: float = -5, upper: float = 5,
                        epsilon: float = 1e-3) -> torch.Tensor:
    """Per-score ``-log(upper - s) - log(s - lower)``, the score clamped ``epsilon`` inside."""
    s = scores.float().clamp(lower + epsilon, upper - epsilon)
    return -torch.log(upper - s) - torch.log(s - lower)


def l2_penalty(scores: torch.Tensor) -> torch.Tensor:
    return scores.float() ** 2


def _type_name(value) -> str:
    return getattr(value, "__qualname__", str(value))


def _as_sequence_classifier(llm):
    """The config building the one-label sequence-classification model of ``llm``'s
    checkpoint (a built sequence-classification module is kept as it is)."""
    if isinstance(llm, torch.nn.Module):
        if not hasattr(llm, SCORE_HEAD):
            raise ConfigError(f"RewardModel needs a sequence-classification model with a "
                              f"'{SCORE_HEAD}' head, got a built {type(llm).__name__}: give "
                              "model.llm as a config dict (AutoModelForCausalLM.from_pretrained"
                              " is turned into AutoModelForSequenceClassification)")
        return llm
    from transformers import AutoModelForSequenceClassification

    cfg = dict(llm)
    name = _type_name(cfg.get("type"))
    if "from_pretrained" not in name:
        raise ConfigError(f"model.llm of a RewardModel must be built with from_pretrained "
                          f"(AutoModelForCausalLM or AutoModelForSequenceClassification), got "
                          f"{name}")
    cfg["type"] = AutoModelForSequenceClassification.from_pretrained
    cfg["num_labels"] = 1
    return cfg


class RewardModel(SupervisedFinetune):
    """A reward model (v0's ``xtuner.model.reward.RewardModel``).

    Args:
        llm: the model config (a causal LM's is turned into its sequence-classification
            model) or a built ``*ForSequenceClassification`` module.
        lora: LoRA config; the adapters go on every linear layer but the score head, which is
            trained in full (and saved with the adapter).
        reward_token_id: the token appended to each sequence, where the score is read (kept in
            the exported config as ``reward_token_id``).
        loss_type: ``'ranking'`` or ``'focal'``.
        penalty_type: ``'log_barrier'``, ``'L2'`` or ``'none'``.
        penalty_weight: the penalty's weight.
        **kwargs: :class:`SupervisedFinetune`'s other arguments (``peft_model``,
            ``use_varlen_attn``, ``tokenizer``, ``use_activation_checkpointing``, ...).
    """

    def __init__(self, llm, lora=None, reward_token_id: int | None = None,
                 loss_type: str = "ranking", penalty_type: str = "log_barrier",
                 penalty_weight: float = 0.01, **kwargs):
        if loss_type not in LOSS_TYPES:
            raise ConfigError(f"model.loss_type={loss_type!r}: use one of "
                              f"{', '.join(map(repr, LOSS_TYPES))}")
        if penalty_type not in PENALTY_TYPES:
            raise ConfigError(f"model.penalty_type={penalty_type!r}: use one of "
                              f"{', '.join(map(repr, PENALTY_TYPES))}")
        if "loss_reduction" in kwargs:
            raise ConfigError("model.loss_reduction does not apply to reward models (the loss "
                              "is the mean over the micro-batch's pairs); remove it")
        from xtuner.parallel.sequence import get_sequence_parallel_world_size

        if get_sequence_parallel_world_size() > 1:
            raise ConfigError(f"reward models do not support sequence_parallel_size="
                              f"{get_sequence_parallel_world_size()} yet; set "
                              "sequence_parallel_size = 1")
        # liger's kernels patch causal-LM forwards; a score head gains nothing from them.
        kwargs.setdefault("use_liger_kernel", False)
        llm = _as_sequence_classifier(llm)
        if isinstance(llm, dict):
            # Built here so the head is zeroed before an adapter checkpoint (peft_model) loads.
            llm = _build_llm(llm, kwargs.pop("max_position_embeddings", None))
            with torch.no_grad():
                getattr(llm, SCORE_HEAD).weight.zero_()  # every reward starts at 0 (v0)
        super().__init__(llm, lora=lora, **kwargs)
        self.loss_reduction = None  # the train loop's token normalisation does not apply
        self.reward_token_id = reward_token_id
        self.loss_type = loss_type
        self.penalty_type = penalty_type
        self.penalty_weight = penalty_weight

    def _prepare_lora(self, lora, use_activation_checkpointing: bool) -> None:
        if isinstance(lora, dict):
            lora = BUILDER.build(lora)
        lora = copy.deepcopy(lora)
        if lora.target_modules is None:
            lora.target_modules = [n for n in find_all_linear_names(self.llm) if n != SCORE_HEAD]
        # peft's sequence-classification wrapper trains and saves the score head in full.
        lora.task_type = "SEQ_CLS"
        keep = list(lora.modules_to_save or [])
        lora.modules_to_save = keep + [SCORE_HEAD] if SCORE_HEAD not in keep else keep
        super()._prepare_lora(lora, use_activation_checkpointing)

    def _classifier(self):
        """The ``*ForSequenceClassification`` model (inside PEFT's wrapper with LoRA)."""
        return self.llm.get_base_model() if self.use_lora else self.llm

    # -- scores -------------------------------------------------------------------------------
    def token_scores(self, inputs: dict) -> torch.Tensor:
        """The score head at every position, ``(rows, length)`` float32."""
        model = self._classifier()
        backbone = getattr(model, model.base_model_prefix)
        hidden = backbone(**inputs).last_hidden_state
        return getattr(model, SCORE_HEAD)(hidden).squeeze(-1).float()

    def _forward_llm(self, data: dict, **loss_kwargs):
        inputs = self._model_inputs(data)
        inputs.pop("labels", None)
        inputs.pop("loss_weights", None)
        return self.token_scores(inputs)

    def predict(self, data: dict) -> list:
        """Per-position scores of each row (mmengine's predict mode)."""
        with torch.no_grad():
            return [{"logits": row} for row in self._forward_llm(data)]

    def compute_loss(self, data: dict) -> dict:
        """The mean loss over the batch's pairs, accuracy and mean scores."""
        labels = data["labels"]
        if packed_bounds(data) is not None and not self.use_varlen_attn:
            raise ConfigError("the batch is packed (cumulative_len) but the model has "
                              "use_varlen_attn=False: set use_varlen_attn=True in the model too")
        plan = self.checkpointing_plan
        measure = plan is not None and plan.measuring and self.training
        if measure:
            plan.note_forward_start(data["input_ids"].numel())
        scores = self._forward_llm(data)
        if measure:
            plan.note_forward_end()
        labels = labels.to(scores.device)
        chosen, rejected = scores[labels == 0], scores[labels == 1]
        if len(chosen) != len(rejected) or not len(chosen):
            raise ValueError(f"a reward batch needs one chosen (label 0) and one rejected "
                             f"(label 1) reward token per pair, got {len(chosen)} and "
                             f"{len(rejected)}")
        pairs = len(chosen)
        rank = (ranking_loss if self.loss_type == "ranking" else focal_loss)(chosen, rejected)
        loss = rank.sum() / pairs
        both = torch.cat([chosen, rejected])
        if self.penalty_type == "log_barrier":
            loss = loss + self.penalty_weight * log_barrier_penalty(both).sum() / pairs
        elif self.penalty_type == "L2":
            loss = loss + self.penalty_weight * l2_penalty(both).sum() / pairs
        return {"loss": loss,
                "acc": (chosen > rejected).float().mean().detach(),
                "chosen_score_mean": chosen.detach().mean(),
                "rejected_score_mean": rejected.detach().mean()}

    def parse_losses(self, losses: dict):
        return parse_preference_losses(losses)

    # -- export -------------------------------------------------------------------------------
    def to_hf(self, cfg, save_dir, fp32=False, save_pretrained_kwargs=None, dtype=None):
        """Write a Hugging Face ``*ForSequenceClassification`` folder (LoRA merged) and the
        tokenizer of ``cfg.tokenizer``; the config keeps ``reward_token_id`` (the model's, else
        the training config's top-level ``reward_token_id`` as in v0's configs) and a
        ``pad_token_id`` (transformers scores the last non-pad token of each row).

        The model is changed in place (adapters merged, weights cast), as v0 did.
        """
        from .export import _reset_attn_implementation, safetensors_to_bin
        from .utils import build_from_cfg

        if dtype is None:
            dtype = torch.float32 if fp32 else torch.float16
        model = self.llm
        if self.use_lora:
            if is_quantized(model):
                raise ConfigError("exporting a QLoRA reward model is not supported: merging "
                                  "into 4-bit weights changes the scores; train with LoRA on a "
                                  "16-bit model to export a reward model")
            model = model.merge_and_unload()
            self.llm, self.use_lora = model, False
        tokenizer = None
        if cfg is not None and cfg.get("tokenizer") is not None:
            tokenizer = build_from_cfg(cfg.tokenizer)
            tokenizer.save_pretrained(str(save_dir))
        config = model.config
        if config.pad_token_id is None and tokenizer is not None:
            config.pad_token_id = (tokenizer.pad_token_id if tokenizer.pad_token_id is not None
                                   else tokenizer.eos_token_id)
        # v0's configs give reward_token_id to the dataset only: take the config's then.
        reward_token_id = self.reward_token_id
        if reward_token_id is None and cfg is not None:
            reward_token_id = cfg.get("reward_token_id")
        config.reward_token_id = reward_token_id
        config.use_cache = True
        model.to(dtype)
        print_log(f"Saving the reward model ({str(dtype).replace('torch.', '')}) to {save_dir}",
                  logger="current")
        kwargs = dict(save_pretrained_kwargs or {})
        safe = kwargs.pop("safe_serialization", True)
        try:
            model.save_pretrained(str(save_dir), **kwargs)
        finally:
            config.use_cache = False
        _reset_attn_implementation(Path(save_dir))
        if not safe:
            safetensors_to_bin(save_dir)
