"""MMLU with ``xtuner test``: XTuner v0's ``MMLUMetric`` and ``mmlu_collate_fn``.

v0's ``internlm_7b_qlora_oasst1_mmlu_e3`` config tests on MMLU five-shot prompts tokenized
without their answers (``process_hf_dataset(..., input_ids_with_output=False)``); the model's
``predict`` returns logits, and the predicted choice is the letter among A-D whose token has
the highest logit at the last prompt token. Accuracy (percent) per subject, subcategory and
category, and ``average`` over subjects, as v0 computed them.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log
from torch.nn.utils.rnn import pad_sequence

from xtuner.utils.constants import DEFAULT_PAD_TOKEN_INDEX, IGNORE_INDEX

__all__ = ["MMLUMetric", "mmlu_collate_fn", "SUBCATEGORIES", "CATEGORIES"]

# MMLU's subject -> subcategory and category -> subcategories tables (Hendrycks et al.,
# as XTuner v0's MMLUMetric has them).
SUBCATEGORIES = {
    "abstract_algebra": ["math"],
    "anatomy": ["health"],
    "astronomy": ["physics"],
    "business_ethics": ["business"],
    "clinical_knowledge": ["health"],
    "college_biology": ["biology"],
    "college_chemistry": ["chemistry"],
    "college_computer_science": ["computer science"],
    "college_mathematics": ["math"],
    "college_medicine": ["health"],
    "college_physics": ["physics"],
    "computer_security": ["computer science"],
    "conceptual_physics": ["physics"],
    "econometrics": ["economics"],
    "electrical_engineering": ["engineering"],
    "elementary_mathematics": ["math"],
    "formal_logic": ["philosophy"],
    "global_facts": ["other"],
    "high_school_biology": ["biology"],
    "high_school_chemistry": ["chemistry"],
    "high_school_computer_science": ["computer science"],
    "high_school_european_history": ["history"],
    "high_school_geography": ["geography"],
    "high_school_government_and_politics": ["politics"],
    "high_school_macroeconomics": ["economics"],
    "high_school_mathematics": ["math"],
    "high_school_microeconomics": ["economics"],
    "high_school_physics": ["physics"],
    "high_school_psychology": ["psychology"],
    "high_school_statistics": ["math"],
    "high_school_us_history": ["history"],
    "high_school_world_history": ["history"],
    "human_aging": ["health"],
    "human_sexuality": ["culture"],
    "international_law": ["law"],
    "jurisprudence": ["law"],
    "logical_fallacies": ["philosophy"],
    "machine_learning": ["computer science"],
    "management": ["business"],
    "marketing": ["business"],
    "medical_genetics": ["health"],
    "miscellaneous": ["other"],
    "moral_disputes": ["philosophy"],
    "moral_scenarios": ["philosophy"],
    "nutrition": ["health"],
    "philosophy": ["philosophy"],
    "prehistory": ["history"],
    "professional_accounting": ["other"],
    "professional_law": ["law"],
    "professional_medicine": ["health"],
    "professional_psychology": ["psychology"],
    "public_relations": ["politics"],
    "security_studies": ["politics"],
    "sociology": ["culture"],
    "us_foreign_policy": ["politics"],
    "virology": ["health"],
    "world_religions": ["philosophy"],
}
CATEGORIES = {
    "STEM": ["physics", "chemistry", "biology", "computer science", "math", "engineering"],
    "humanities": ["history", "philosophy", "law"],
    "social sciences": ["politics", "culture", "economics", "geography", "psychology"],
    "other (business, health, misc.)": ["other", "business", "health"],
}


def mmlu_collate_fn(instances: Sequence[dict], pad_index: int = DEFAULT_PAD_TOKEN_INDEX,
                    return_hf_format: bool = False) -> dict:
    """Pad prompts (right) and keep each sample's answer letter and subject for the metric."""
    input_ids = [torch.tensor(x["input_ids"]) for x in instances]
    labels = [torch.tensor(x["labels"]) for x in instances]
    input_ids = pad_sequence(input_ids, batch_first=True, padding_value=pad_index)
    labels = pad_sequence(labels, batch_first=True, padding_value=IGNORE_INDEX)
    data = {"input_ids": input_ids, "attention_mask": input_ids.ne(pad_index), "labels": labels}
    if return_hf_format:
        return data
    return {"data": data, "data_samples": {"labels": [x["output"] for x in instances],
                                           "subjects": [x["subject"] for x in instances]}}


def _percent(pairs: list[tuple[int, int]]) -> float:
    return 100.0 * sum(p == g for p, g in pairs) / len(pairs)


class MMLUMetric(BaseMetric):
    """v0's MMLU accuracy from the logits at the last prompt token.

    Args:
        tokenizer: the tokenizer (or its config); the first token of "A".."D" is read.
    """

    def __init__(self, tokenizer, *args, **kwargs):
        super().__init__(*args, **kwargs)
        from xtuner.evaluation.mmbench_test import _build

        tokenizer = _build(tokenizer)
        self.abcd_idx = [tokenizer.encode(c, add_special_tokens=False)[0] for c in "ABCD"]

    def process(self, data_batch, data_samples) -> None:
        samples = data_batch["data_samples"]
        masks = data_batch["data"]["attention_mask"]
        for out, mask, subject, gt in zip(data_samples, masks, samples["subjects"],
                                          samples["labels"]):
            # The last prompt token: before the first padding position (v0 looked for the
            # first 0 of the mask; an unpadded row uses its last position).
            zeros = torch.nonzero(mask == 0)
            position = int(zeros[0]) - 1 if zeros.numel() else -1
            pred = int(torch.argmax(out["logits"][position, self.abcd_idx]))
            self.results.append((subject, pred, "ABCD".index(gt)))

    def compute_metrics(self, results: list) -> dict:
        by_subject: dict[str, list] = {}
        by_subcat: dict[str, list] = {}
        for subject, pred, gt in results:
            by_subject.setdefault(subject, []).append((pred, gt))
            for subcat in SUBCATEGORIES.get(subject, []):
                by_subcat.setdefault(subcat, []).append((pred, gt))
        metrics = {s: _percent(v) for s, v in by_subject.items()}
        metrics.update({s: _percent(v) for s, v in by_subcat.items()})
        categories = {}
        for cat, subcats in CATEGORIES.items():
            pairs = [p for s in subcats for p in by_subcat.get(s, [])]
            if pairs:
                categories[cat] = _percent(pairs)
        metrics.update(categories)
        metrics["average"] = sum(metrics[s] for s in by_subject) / max(len(by_subject), 1)
        table = "\n".join(f"  {k:<34} {v:6.1f}" for k, v in
                          {**categories, "average": metrics["average"]}.items())
        print_log(f"MMLU accuracy (%):\n{table}", "current")
        return metrics
