"""``DatasetInfoHook``: log the dataset size and one decoded sample before training."""
from __future__ import annotations

from mmengine.hooks import Hook

from xtuner.model.utils import build_from_cfg
from xtuner.utils.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX

__all__ = ["DatasetInfoHook", "decode_with_image_tokens", "render_trained_spans"]


def decode_with_image_tokens(tokenizer, input_ids) -> str:
    """Decode ids, writing ``<image>`` where ``IMAGE_TOKEN_INDEX`` stands."""
    pieces, chunk = [], []
    for token in input_ids:
        if token == IMAGE_TOKEN_INDEX:
            pieces.append(tokenizer.decode(chunk))
            pieces.append("<image>")
            chunk = []
        else:
            chunk.append(abs(int(token)))
    pieces.append(tokenizer.decode(chunk))
    return "".join(pieces)


def render_trained_spans(tokenizer, input_ids, labels, start: str = "[[",
                         end: str = "]]") -> str:
    """Decode a sample with the trained spans wrapped in ``start``/``end`` markers."""
    out, span, trained = [], [], None
    for token, label in zip(input_ids, labels):
        is_trained = label != IGNORE_INDEX
        if trained is not None and is_trained != trained:
            text = decode_with_image_tokens(tokenizer, span)
            out.append(f"{start}{text}{end}" if trained else text)
            span = []
        span.append(token)
        trained = is_trained
    if span:
        text = decode_with_image_tokens(tokenizer, span)
        out.append(f"{start}{text}{end}" if trained else text)
    return "".join(out)


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
