"""``HFCheckpointHook``: save the trained model in Hugging Face format at the end of the run
(and, with ``interval``, every that many optimizer steps)."""
from __future__ import annotations

import contextlib
import math
import os.path as osp
import re
import shutil
from pathlib import Path

from mmengine.dist import is_main_process
from mmengine.hooks import Hook

from xtuner.model.utils import unwrap_model

__all__ = ["HFCheckpointHook"]

_PREFIX = "llm."


def _deepspeed_engine(runner):
    """The DeepSpeed engine of a FlexibleRunner run, or None."""
    strategy = getattr(runner, "strategy", None)
    wrapper = getattr(strategy, "model", None)
    engine = getattr(wrapper, "model", None)
    return engine if hasattr(engine, "zero_optimization_stage") else None


def _whole_parameters(engine, model):
    """A context in which ``model``'s parameters are whole on every rank: under ZeRO-3 they
    are gathered from all ranks (a collective call: every rank enters it), else nothing."""
    if engine is None or engine.zero_optimization_stage() != 3:
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=None)


class HFCheckpointHook(Hook):
    """After training, write ``out_dir`` (default ``work_dir/hf_model``): the PEFT adapter for
    LoRA runs, else the full model plus the config's tokenizer. A model with its own
    ``save_hf(folder)`` (encoder + LLM, image-text models) writes itself.

    Works with the plain runner and under DeepSpeed; with ZeRO-3 the weights are gathered
    from all ranks (the DeepSpeed config must set
    ``stage3_gather_16bit_weights_on_model_save``, as the shipped zero3 configs do). A
    ``save_hf`` model under ZeRO-3 is gathered whole on every rank while rank 0 writes it, so
    each GPU briefly holds the whole model (and rank 0 the copy it merges adapters into).

    Args:
        out_dir: where to write.
        interval: also write ``work_dir/hf-STEP`` every this many optimizer steps (steps,
            not micro-batches: with gradient accumulation a step is several iterations).
        max_keep: keep only the newest this many ``hf-STEP`` folders (None: all).
    """

    priority = 95

    def __init__(self, out_dir: str | None = None, interval: int | None = None,
                 max_keep: int | None = None):
        self.out_dir = out_dir
        self.interval = interval
        self.max_keep = max_keep

    @staticmethod
    def _state_dict(runner, model):
        engine = _deepspeed_engine(runner)
        if engine is None:
            return None  # the model's own weights are complete
        if engine.zero_optimization_stage() == 3:
            # A collective call: every rank takes part, rank 0 receives the weights.
            state = engine._zero3_consolidated_16bit_state_dict()
        else:
            state = model.state_dict()
        if state is None:
            return None
        return {k[len(_PREFIX):]: v for k, v in state.items() if k.startswith(_PREFIX)}

    @staticmethod
    def _optimizer_step(runner) -> int | None:
        """The optimizer steps taken after this iteration, or None when the iteration only
        accumulated gradients."""
        engine = _deepspeed_engine(runner)
        if engine is not None:
            counts = int(engine.gradient_accumulation_steps())
        else:
            counts = int(getattr(runner.optim_wrapper, "_accumulative_counts", 1) or 1)
        done = runner.iter + 1
        if done % counts and done != runner.max_iters:
            return None
        return math.ceil(done / counts)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        if not self.interval:
            return
        step = self._optimizer_step(runner)
        if step is None or step % self.interval:
            return
        self._save(runner, osp.join(runner.work_dir, f"hf-{step}"))
        if is_main_process() and self.max_keep:
            written = sorted((p for p in Path(runner.work_dir).glob("hf-*")
                              if re.fullmatch(r"hf-\d+", p.name) and p.is_dir()),
                             key=lambda p: int(p.name[3:]))
            for old in written[:-self.max_keep]:
                shutil.rmtree(old)

    def after_run(self, runner) -> None:
        self._save(runner, self.out_dir or osp.join(runner.work_dir, "hf_model"))

    def _save(self, runner, out_dir: str) -> None:
        model = unwrap_model(runner.model)
        engine = _deepspeed_engine(runner)
        if engine is not None:
            model = engine.module
        if callable(getattr(type(model), "save_hf", None)):
            with _whole_parameters(engine, model):
                if is_main_process():
                    model.save_hf(out_dir)
                    runner.logger.info(f"Saved the Hugging Face model to {out_dir}")
            return
        state = self._state_dict(runner, model)
        if not is_main_process():
            return
        kwargs = {"safe_serialization": True}
        if state is not None:
            kwargs["state_dict"] = state
        model.llm.save_pretrained(out_dir, **kwargs)
        tokenizer_cfg = runner.cfg.get("tokenizer")
        if tokenizer_cfg is not None and not getattr(model, "use_lora", False):
            from xtuner.model.utils import build_from_cfg

            build_from_cfg(tokenizer_cfg).save_pretrained(out_dir)
        runner.logger.info(f"Saved the Hugging Face model to {out_dir}")
