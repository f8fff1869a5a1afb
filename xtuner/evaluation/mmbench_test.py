"""What a config's test section needs to score a LLaVA model on MMBench with ``xtuner test``.

    test_dataloader = dict(batch_size=1, num_workers=0,
        dataset=dict(type=MMBenchDataset, data_file=TSV, tokenizer=tokenizer,
                     image_processor=image_processor, prompt_template=prompt_template),
        sampler=dict(type=DefaultSampler, shuffle=False), collate_fn=dict(type=list_collate_fn))
    test_evaluator = dict(type=MMBenchMetric, data_file=TSV)
    test_cfg = dict(type=GenerationTestLoop, max_new_tokens=16)

:class:`GenerationTestLoop` asks the model to *generate* (mmengine's ``TestLoop`` would call
``test_step``, which for xtuner models returns logits) and hands the decoded answers to the
evaluator; :class:`MMBenchMetric` scores them as ``xtuner mmbench`` does.
"""
from __future__ import annotations

import torch
from mmengine.evaluator import BaseMetric
from mmengine.runner import TestLoop
from torch.utils.data import Dataset

from .generation import ImageAnswerer, encode_with_image
from .mmbench import MMBenchData, build_mmbench_prompt, mmbench_accuracy

__all__ = ["MMBenchDataset", "MMBenchMetric", "GenerationTestLoop", "list_collate_fn"]


def _build(obj):
    from mmengine.config import Config, ConfigDict

    from xtuner.registry import BUILDER

    return BUILDER.build(obj) if isinstance(obj, (dict, Config, ConfigDict)) else obj


def list_collate_fn(samples):
    """Keep the batch a list of samples (each is answered on its own)."""
    return list(samples)


class MMBenchDataset(Dataset):
    """An MMBench TSV as prompts and pictures for :class:`GenerationTestLoop`.

    Args:
        data_file: the TSV.
        tokenizer: the LLM's tokenizer (or its config).
        image_processor: the vision tower's processor (or its config).
        prompt_template: an XTuner ``PROMPT_TEMPLATE`` entry (None: plain text).
        pad_image_to_square: pad pictures to squares (v0's MMBench evaluation does).
    """

    def __init__(self, data_file, tokenizer, image_processor, prompt_template=None,
                 pad_image_to_square: bool = True, bot_name: str = "BOT"):
        self.data = MMBenchData(data_file)
        self.tokenizer = _build(tokenizer)
        self.image_processor = _build(image_processor)
        self.prompt_template = prompt_template
        self.pad_image_to_square = pad_image_to_square
        self.bot_name = bot_name

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, idx: int) -> dict:
        sample = self.data[idx]
        meta = {k: v for k, v in sample.items() if k != "img"}
        prompt = build_mmbench_prompt(sample, self.prompt_template, self.bot_name)
        # input_ids: what xtuner's DatasetInfoHook shows of the first sample.
        return {"prompt": prompt, "image": sample["img"], "meta": meta,
                "input_ids": encode_with_image(self.tokenizer, prompt)}


class GenerationTestLoop(TestLoop):
    """mmengine's test loop, but each sample's ``prompt``/``image`` is answered by greedy
    generation; the evaluator receives ``{**meta, "prediction": answer}`` per sample.

    Args:
        max_new_tokens: the answer's length limit.
        stop_words: the answer is cut at the first of these (the dataset's template's
            ``STOP_WORDS`` are added).
    """

    def __init__(self, runner, dataloader, evaluator, max_new_tokens: int = 100,
                 stop_words=(), fp16: bool = False):
        super().__init__(runner, dataloader, evaluator, fp16=fp16)
        dataset = self.dataloader.dataset
        template = getattr(dataset, "prompt_template", None) or {}
        self._settings = dict(max_new_tokens=max_new_tokens,
                              stop_words=list(stop_words) + list(template.get("STOP_WORDS", [])),
                              pad_to_square=getattr(dataset, "pad_image_to_square", True))
        self._answerer = None

    def _answer(self, prompt, image) -> str:
        if self._answerer is None:
            model = getattr(self.runner.model, "module", self.runner.model)
            dataset = self.dataloader.dataset
            self._answerer = ImageAnswerer(model, dataset.tokenizer, dataset.image_processor,
                                           **self._settings)
        return self._answerer(prompt, image)

    @torch.no_grad()
    def run_iter(self, idx, data_batch) -> None:
        self.runner.call_hook("before_test_iter", batch_idx=idx, data_batch=data_batch)
        self.runner.model.eval()
        outputs = [{**s["meta"], "prediction": self._answer(s["prompt"], s["image"])}
                   for s in data_batch]
        self.evaluator.process(data_samples=outputs, data_batch=data_batch)
        self.runner.call_hook("after_test_iter", batch_idx=idx, data_batch=data_batch,
                              outputs=outputs)


class MMBenchMetric(BaseMetric):
    """MMBench accuracy (circular, per category) of generated answers, in percent.

    Args:
        data_file: the TSV the answers are for (it must have an ``answer`` column).
        v0_only: read the letter exactly as v0 (see ``extract_choice``).
    """

    default_prefix = "mmbench"

    def __init__(self, data_file, v0_only: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.data_file, self.v0_only = data_file, v0_only

    def process(self, data_batch, data_samples) -> None:
        for sample in data_samples:
            self.results.append({**{k: sample.get(k) for k in ("index", "prediction")},
                                 **sample.get("options_dict", {})})

    def compute_metrics(self, results: list) -> dict:
        metrics = mmbench_accuracy(results, MMBenchData(self.data_file), self.v0_only)
        return {k: round(v * 100, 2) for k, v in metrics.items()}
