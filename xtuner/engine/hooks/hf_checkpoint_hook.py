"""``HFCheckpointHook``: save the trained model in Hugging Face format at the end of the run."""
from __future__ import annotations

import os.path as osp

from mmengine.dist import master_only
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

__all__ = ["HFCheckpointHook"]


class HFCheckpointHook(Hook):
    """After training, write ``out_dir`` (default ``work_dir/hf_model``): the PEFT adapter for
    LoRA runs, else the full model, plus the tokenizer when the model knows it.

    Args:
        out_dir: where to write.
    """

    priority = 95

    def __init__(self, out_dir: str | None = None):
        self.out_dir = out_dir

    def before_run(self, runner) -> None:
        # Refuse at the start, not after hours of training.
        if type(runner).__name__ == "FlexibleRunner":
            raise NotImplementedError("HFCheckpointHook under DeepSpeed is not supported yet; "
                                      "remove it and use `xtuner convert pth_to_hf` on the "
                                      "checkpoint")

    @master_only
    def after_run(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        out_dir = self.out_dir or osp.join(runner.work_dir, "hf_model")
        model.llm.save_pretrained(out_dir, safe_serialization=True)
        runner.logger.info(f"Saved the Hugging Face model to {out_dir}")
