"""RewardModel: v0's losses and penalties against hand-computed values, a zero-initialised score
head, packed pairs scoring as padded ones, LoRA keeping the head trainable and saved, and the
export that plain transformers loads as a sequence-classification model scoring a pair the
same."""
from __future__ import annotations

import math

import pytest
import torch
from mmengine.config import Config
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from xtuner.dataset.collate_fns import preference_collate_fn
from xtuner.model import RewardModel
from xtuner.utils.errors import ConfigError

IGNORE = -100
REWARD = 7  # the reward token of these tests


def _pair(chosen, rejected):
    return dict(chosen_ids=chosen + [REWARD], chosen_labels=[IGNORE] * len(chosen) + [0],
                rejected_ids=rejected + [REWARD],
                rejected_labels=[IGNORE] * len(rejected) + [1])


PAIRS = [_pair([3, 17, 25, 41], [3, 17, 33]), _pair([3, 9, 10, 11, 50], [3, 9, 60]),
         _pair([70], [80, 81, 82, 83, 84])]


def _llm(path):
    return dict(type=AutoModelForCausalLM.from_pretrained, pretrained_model_name_or_path=path,
                dtype="float32")


def _expected(chosen, rejected, loss_type, penalty_type, weight):
    rank = []
    for c, r in zip(chosen, rejected):
        base = math.log1p(math.exp(-(c - r)))
        if loss_type == "focal":
            p = 2 * max(0.0, 1 / (1 + math.exp(-(c - r))) - 0.5)
            base *= (1 - p) ** 2
        rank.append(base)
    scores = chosen + rejected
    if penalty_type == "log_barrier":
        penalty = sum(-math.log(5 - min(max(s, -4.999), 4.999))
                      - math.log(min(max(s, -4.999), 4.999) + 5) for s in scores)
    elif penalty_type == "L2":
        penalty = sum(s * s for s in scores)
    else:
        penalty = 0.0
    return (sum(rank) + weight * penalty) / len(chosen)


def _set_scores(model, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.llm.named_parameters():
            if name.endswith("score.weight") or "score.modules_to_save" in name:
                p.copy_(torch.randn(p.shape, generator=gen))


@pytest.mark.parametrize("loss_type", ["ranking", "focal"])
@pytest.mark.parametrize("penalty_type", ["log_barrier", "L2", "none"])
def test_loss_equals_the_formula(llama_dir, loss_type, penalty_type):
    model = RewardModel(_llm(llama_dir), reward_token_id=REWARD, loss_type=loss_type,
                        penalty_type=penalty_type, penalty_weight=0.05,
                        use_activation_checkpointing=False)
    assert model.loss_reduction is None
    batch = preference_collate_fn(PAIRS, return_hf_format=True)
    # zero-initialised head: every score is 0
    zero = model.compute_loss(batch)
    assert float(zero["loss"]) == pytest.approx(
        _expected([0.0] * 3, [0.0] * 3, loss_type, penalty_type, 0.05), abs=1e-6)
    _set_scores(model)
    out = model.compute_loss(batch)
    with torch.no_grad():
        scores = model.token_scores({k: batch[k] for k in ("input_ids", "attention_mask")})
    last = batch["attention_mask"].sum(1) - 1
    per_seq = scores[torch.arange(len(last)), last].tolist()
    chosen, rejected = per_seq[0::2], per_seq[1::2]
    assert any(abs(s) > 0.1 for s in per_seq)
    assert float(out["loss"]) == pytest.approx(
        _expected(chosen, rejected, loss_type, penalty_type, 0.05), rel=1e-5)
    assert float(out["acc"]) == pytest.approx(sum(c > r for c, r in zip(chosen, rejected)) / 3)
    assert float(out["chosen_score_mean"]) == pytest.approx(sum(chosen) / 3, rel=1e-5)


def test_bad_loss_or_penalty_is_a_config_error(llama_dir):
    with pytest.raises(ConfigError, match="loss_type='hinge'"):
        RewardModel(_llm(llama_dir), loss_type="hinge")
    with pytest.raises(ConfigError, match="penalty_type='l1'"):
        RewardModel(_llm(llama_dir), penalty_type="l1")


def test_packed_pairs_score_as_padded_ones(llama_dir):
    padded_model = RewardModel(_llm(llama_dir), reward_token_id=REWARD,
                               use_activation_checkpointing=False)
    packed_model = RewardModel(_llm(llama_dir), reward_token_id=REWARD, use_varlen_attn=True,
                               use_activation_checkpointing=False)
    _set_scores(padded_model)
    packed_model.load_state_dict(padded_model.state_dict())
    a = padded_model.compute_loss(preference_collate_fn(PAIRS, return_hf_format=True))
    b = packed_model.compute_loss(preference_collate_fn(PAIRS, return_hf_format=True,
                                                        use_varlen_attn=True))
    for key in a:
        torch.testing.assert_close(b[key], a[key], atol=1e-5, rtol=0)


def test_lora_trains_and_saves_the_score_head(llama_dir):
    from peft import LoraConfig

    model = RewardModel(_llm(llama_dir), reward_token_id=REWARD,
                        lora=dict(type=LoraConfig, r=4, lora_alpha=8, task_type="CAUSAL_LM"),
                        use_activation_checkpointing=False)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any("score" in n for n in trainable)
    assert any("lora_A" in n for n in trainable)
    assert not any("score" in n and "lora" in n for n in trainable)  # no adapter on the head
    assert set(model.state_dict()) == trainable


@pytest.mark.parametrize("use_lora", [False, True])
def test_export_scores_a_pair_like_the_trained_model(llama_dir, tmp_path, use_lora):
    from peft import LoraConfig

    lora = LoraConfig(r=4, lora_alpha=8, task_type="CAUSAL_LM") if use_lora else None
    model = RewardModel(_llm(llama_dir), lora=lora, reward_token_id=REWARD,
                        use_activation_checkpointing=False)
    _set_scores(model)
    if use_lora:
        gen = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for name, p in model.llm.named_parameters():
                if "lora_B" in name:
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    model.eval()
    batch = preference_collate_fn(PAIRS, return_hf_format=True)
    with torch.no_grad():
        scores = model.token_scores({k: batch[k] for k in ("input_ids", "attention_mask")})
    last = batch["attention_mask"].sum(1) - 1
    expected = scores[torch.arange(len(last)), last]
    cfg = Config(dict(tokenizer=dict(type=AutoTokenizer.from_pretrained,
                                     pretrained_model_name_or_path=llama_dir)))
    model.to_hf(cfg, tmp_path, fp32=True)

    hf = AutoModelForSequenceClassification.from_pretrained(tmp_path, dtype=torch.float32)
    assert hf.config.reward_token_id == REWARD and hf.config.num_labels == 1
    # transformers scores each row's last non-pad token: the reward token
    pad = hf.config.pad_token_id
    ids = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, pad)
    with torch.no_grad():
        got = hf(input_ids=ids, attention_mask=batch["attention_mask"]).logits[:, 0]
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
