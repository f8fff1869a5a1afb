"""``HFCheckpointHook``: save the trained model in Hugging Face format at the end of the run."""
from __future__ import annotations

import os.path as osp

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


class HFCheckpointHook(Hook):
    """After training, write ``out_dir`` (default ``work_dir/hf_model``): the PEFT adapter for
    LoRA runs, else the full model plus the config's tokenizer.

    Works with the plain runner and under DeepSpeed; with ZeRO-3 the weights are gathered
    from all ranks (the DeepSpeed config must set
    ``stage3_gather_16bit_weights_on_model_save``, as the shipped zero3 configs do).

    Args:
        out_dir: where to write.
    """

    priority = 95

    def __init__(self, out_dir: str | None = None):
        self.out_dir = out_dir

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

    def after_run(self, runner) -> None:
        model = unwrap_model(runner.model)
        if _deepspeed_engine(runner) is not None:
            model = _deepspeed_engine(runner).module
        state = self._state_dict(runner, model)
        if not is_main_process():
            return
        out_dir = self.out_dir or osp.join(runner.work_dir, "hf_model")
        kwargs = {"safe_serialization": True}
        if state is not None:
            kwargs["state_dict"] = state
        model.llm.save_pretrained(out_dir, **kwargs)
        tokenizer_cfg = runner.cfg.get("tokenizer")
        if tokenizer_cfg is not None and not getattr(model, "use_lora", False):
            from xtuner.model.utils import build_from_cfg

            build_from_cfg(tokenizer_cfg).save_pretrained(out_dir)
        runner.logger.info(f"Saved the Hugging Face model to {out_dir}")
