"""``DatasetInfoHook``: log the dataset size and one decoded sample before training."""
from __future__ import annotations

from mmengine.hooks import Hook

from xtuner.dataset.render import decode_with_image_tokens, render_trained_spans
from xtuner.model.utils import build_from_cfg

__all__ = ["DatasetInfoHook", "decode_with_image_tokens", "render_trained_spans"]


class DatasetInfoHook(Hook):
    """Log ``Num train samples N`` and decode the first sample (v0's hook).

    Args:
        tokenizer: tokenizer or its config dict.
        is_intern_repo_dataset: ids may be negative (InternEvo's "no loss" marking).
    """

    def __init__(self, tokenizer, is_intern_repo_dataset: bool = False):
        self.tokenizer = build_from_cfg(tokenizer)
        self.is_intern_repo_dataset = is_intern_repo_dataset

    def _log(self, runner, dataset, mode: str) -> None:
        runner.logger.info(f"Num {mode} samples {len(dataset)}")
        if len(dataset) == 0:
            return
        sample = dataset[0]
        runner.logger.info(f"{mode} example:")
        if "labels" in sample:
            runner.logger.info(render_trained_spans(self.tokenizer, sample["input_ids"],
                                                    sample["labels"]))
            runner.logger.info("(text between [[ and ]] is trained on)")
        else:
            runner.logger.info(decode_with_image_tokens(self.tokenizer, sample["input_ids"]))

    def before_train(self, runner) -> None:
        self._log(runner, runner.train_dataloader.dataset, "train")

    def before_val(self, runner) -> None:
        self._log(runner, runner.val_dataloader.dataset, "eval")

    def before_test(self, runner) -> None:
        self._log(runner, runner.test_dataloader.dataset, "test")
