"""ORPO: the loss equals the formula computed by hand from plain transformers' log-probs, packed
pairs equal padded ones, only the loss is back-propagated."""
from __future__ import annotations

import math

import pytest
import torch
from transformers import AutoModelForCausalLM

from xtuner.dataset.collate_fns import preference_collate_fn
from xtuner.model import ORPO

IGNORE = -100
PAIRS = [
    dict(chosen_ids=[3, 17, 25, 0, 41, 1], chosen_labels=[IGNORE, IGNORE, 25, 0, 41, 1],
         rejected_ids=[3, 17, 33, 1], rejected_labels=[IGNORE, IGNORE, 33, 1]),
    dict(chosen_ids=[3, 9, 10, 50, 51, 1], chosen_labels=[IGNORE] * 3 + [50, 51, 1],
         rejected_ids=[3, 9, 10, 0, 0, 60, 1], rejected_labels=[IGNORE] * 3 + [0, 0, 60, 1]),
]


def _llm(path):
    return dict(type=AutoModelForCausalLM.from_pretrained, pretrained_model_name_or_path=path,
                dtype="float32")


def _token_logps(model, ids, labels):
    """log p of each target, from plain transformers, one sequence alone."""
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].double(), -1)
    return [float(logp[t - 1, y]) for t, y in enumerate(labels) if t > 0 and y != IGNORE]


def _expected(model, beta):
    chosen_tokens, ratios, log_odds, averages = [], [], [], []
    for pair in PAIRS:
        c = _token_logps(model, pair["chosen_ids"], pair["chosen_labels"])
        r = _token_logps(model, pair["rejected_ids"], pair["rejected_labels"])
        chosen_tokens += c
        pc, pr = sum(c) / len(c), sum(r) / len(r)
        odds = (pc - pr) - (math.log1p(-math.exp(pc)) - math.log1p(-math.exp(pr)))
        log_odds.append(odds)
        ratios.append(-math.log1p(math.exp(-odds)))
        averages.append((pc, pr))
    nll = -sum(chosen_tokens) / len(chosen_tokens)
    return nll - beta * sum(ratios) / len(ratios), nll, averages, log_odds


@pytest.mark.parametrize("use_varlen_attn", [False, True])
def test_orpo_loss_equals_the_formula(llama_dir, use_varlen_attn):
    model = ORPO(_llm(llama_dir), beta=0.25, use_varlen_attn=use_varlen_attn,
                 use_activation_checkpointing=False)
    assert model.loss_reduction is None
    batch = preference_collate_fn(PAIRS, return_hf_format=True, use_varlen_attn=use_varlen_attn)
    out = model.compute_loss(batch)
    plain = AutoModelForCausalLM.from_pretrained(llama_dir, dtype=torch.float32)
    loss, nll, averages, log_odds = _expected(plain, 0.25)
    assert float(out["loss"]) == pytest.approx(loss, abs=1e-5)
    assert float(out["nll_loss"]) == pytest.approx(nll, abs=1e-5)
    assert float(out["log_odds_chosen"]) == pytest.approx(sum(log_odds) / 2, abs=1e-5)
    chosen_rewards = [0.25 * pc for pc, _ in averages]
    assert float(out["chosen_rewards"]) == pytest.approx(sum(chosen_rewards) / 2, abs=1e-5)
    assert float(out["reward_acc"]) == sum(pc > pr for pc, pr in averages) / 2
    # the NLL is transformers' own cross-entropy over the chosen responses' tokens
    chosen = preference_collate_fn([{**p, "rejected_ids": p["chosen_ids"],
                                     "rejected_labels": p["chosen_labels"]} for p in PAIRS],
                                   return_hf_format=True)
    rows = slice(0, None, 2)
    with torch.no_grad():
        hf = plain(input_ids=chosen["input_ids"][rows],
                   attention_mask=chosen["attention_mask"][rows],
                   labels=chosen["labels"][rows]).loss
    assert float(out["nll_loss"]) == pytest.approx(float(hf), abs=1e-5)


def test_only_the_loss_is_back_propagated(llama_dir):
    model = ORPO(_llm(llama_dir), use_activation_checkpointing=False)
    losses = model.compute_loss(preference_collate_fn(PAIRS, return_hf_format=True))
    loss, log = model.parse_losses(losses)
    assert loss is losses["loss"] and loss.requires_grad
    # mmengine's default would add nll_loss (a key with 'loss' in it) to the loss
    assert float(log["loss"]) == pytest.approx(float(losses["loss"]))
    assert not any(v.requires_grad for v in log.values())
