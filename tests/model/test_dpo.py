"""DPO: the seven losses against hand-computed values, the target mask, the reference model
(adapter disabled with LoRA, a frozen copy built from the config otherwise, never saved), and
packed pairs giving the log-probabilities of the padded batch."""
from __future__ import annotations

import math

import pytest
import torch
from transformers import AutoModelForCausalLM

from xtuner.dataset.collate_fns import preference_collate_fn
from xtuner.model import DPO
from xtuner.model.preference import dpo_losses, sequence_logps
from xtuner.utils.errors import ConfigError

IGNORE = -100

# Fixed per-sequence log-probabilities of two pairs.
PC, PR = [-1.0, -2.0], [-1.5, -1.0]  # policy chosen / rejected
RC, RR = [-1.2, -2.5], [-1.4, -0.8]  # reference chosen / rejected


def _logsig(x):
    return -math.log1p(math.exp(-x))


def _sig(x):
    return 1 / (1 + math.exp(-x))


def _expected(loss_type, beta, eps):
    """Each loss from its formula, on Python floats."""
    out = []
    for pc, pr, rc, rr in zip(PC, PR, RC, RR):
        z = (pc - pr) - (rc - rr)
        a, b = pc - rc, pr - rr
        if loss_type == "sigmoid":
            out.append(-_logsig(beta * z) * (1 - eps) - _logsig(-beta * z) * eps)
        elif loss_type == "robust":
            out.append((-_logsig(beta * z) * (1 - eps) + _logsig(-beta * z) * eps)
                       / (1 - 2 * eps))
        elif loss_type == "hinge":
            out.append(max(0.0, 1 - beta * z))
        elif loss_type == "ipo":
            out.append((z - 1 / (2 * beta)) ** 2)
        elif loss_type == "sppo_hard":
            out.append((a - 0.5 / beta) ** 2 + (b + 0.5 / beta) ** 2)
        elif loss_type == "nca_pair":
            out.append(-_logsig(beta * a) - 0.5 * _logsig(-beta * a) - 0.5 * _logsig(-beta * b))
    if loss_type == "kto_pair":
        chosen_kl = max(0.0, sum(p - r for p, r in zip(PC, RC)) / 2)
        rejected_kl = max(0.0, sum(p - r for p, r in zip(PR, RR)) / 2)
        out = ([1 - _sig(beta * ((pc - rc) - rejected_kl)) for pc, rc in zip(PC, RC)]
               + [1 - _sig(beta * (chosen_kl - (pr - rr))) for pr, rr in zip(PR, RR)])
    return out


@pytest.mark.parametrize("loss_type", ["sigmoid", "robust", "hinge", "ipo", "kto_pair",
                                       "sppo_hard", "nca_pair"])
@pytest.mark.parametrize("beta,eps", [(0.1, 0.0), (0.5, 0.2)])
def test_each_loss_equals_its_formula(loss_type, beta, eps):
    t = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    got = dpo_losses(t(PC), t(PR), t(RC), t(RR), beta, loss_type, eps)
    assert got.tolist() == pytest.approx(_expected(loss_type, beta, eps), rel=1e-12)


def test_kto_pair_clamps_a_negative_kl():
    # Here the policy lost probability on average: both KL estimates clamp to 0.
    t = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    got = dpo_losses(t([-3.0]), t([-3.0]), t([-1.0]), t([-1.0]), 0.1, "kto_pair")
    assert got.tolist() == pytest.approx([1 - _sig(0.1 * -2.0), 1 - _sig(0.1 * 2.0)])


def test_unknown_loss_and_bad_smoothing_are_config_errors(llama_dir):
    llm = dict(type=AutoModelForCausalLM.from_pretrained, pretrained_model_name_or_path=llama_dir)
    with pytest.raises(ConfigError, match="loss_type='dpo'.*sigmoid"):
        DPO(llm, loss_type="dpo")
    with pytest.raises(ConfigError, match="label_smoothing=0.5"):
        DPO(llm, loss_type="robust", label_smoothing=0.5)


# -- on a tiny model -----------------------------------------------------------------------------
def _llm(path):
    return dict(type=AutoModelForCausalLM.from_pretrained, pretrained_model_name_or_path=path,
                dtype="float32")


def _pairs():
    """Three pairs of different lengths; token id 0 appears inside responses; the last pair
    has an empty prompt, so its first label is a target in the data."""
    return [
        dict(chosen_ids=[3, 17, 25, 0, 41, 1], chosen_labels=[IGNORE, IGNORE, 25, 0, 41, 1],
             rejected_ids=[3, 17, 33, 1], rejected_labels=[IGNORE, IGNORE, 33, 1]),
        dict(chosen_ids=[3, 9, 10, 11, 12, 50, 51, 1],
             chosen_labels=[IGNORE] * 5 + [50, 51, 1],
             rejected_ids=[3, 9, 10, 11, 12, 0, 0, 60, 1],
             rejected_labels=[IGNORE] * 5 + [0, 0, 60, 1]),
        dict(chosen_ids=[70, 71, 1], chosen_labels=[70, 71, 1],
             rejected_ids=[80, 1], rejected_labels=[80, 1]),
    ]


def _manual_logps(model, pair_list):
    """Per-sequence sums of log p(label) with plain transformers, one sequence at a time."""
    out = []
    with torch.no_grad():
        for pair in pair_list:
            for side in ("chosen", "rejected"):
                ids = torch.tensor([pair[f"{side}_ids"]])
                logp = torch.log_softmax(model(input_ids=ids).logits[0].double(), -1)
                total = 0.0
                for t, label in enumerate(pair[f"{side}_labels"]):
                    if t > 0 and label != IGNORE:
                        total += float(logp[t - 1, label])
                out.append(total)
    return out


def test_mask_comes_from_labels_and_counts_token_id_zero(llama_dir):
    model = AutoModelForCausalLM.from_pretrained(llama_dir, dtype=torch.float32)
    batch = preference_collate_fn(_pairs(), return_hf_format=True)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"],
                       attention_mask=batch["attention_mask"]).logits
    got = sequence_logps(logits, batch["labels"])
    # targets: every label != -100 except a row's first (nothing predicts it)
    assert got.counts.tolist() == [4, 2, 3, 4, 2, 1]
    assert got.sums.tolist() == pytest.approx(_manual_logps(model, _pairs()), abs=1e-4)


def _perturb_lora(model, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.llm.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2)


def test_lora_reference_is_the_model_with_its_adapter_disabled(llama_dir):
    from peft import LoraConfig

    model = DPO(_llm(llama_dir), lora=LoraConfig(r=4, lora_alpha=8, task_type="CAUSAL_LM"),
                use_activation_checkpointing=False)
    assert model.ref_llm is None
    batch = preference_collate_fn(_pairs(), return_hf_format=True)
    # Step 0: LoRA's B matrices are 0, policy == reference, every pair scores log 2.
    out = model.compute_loss(batch)
    assert float(out["loss"]) == pytest.approx(math.log(2), abs=1e-6)
    assert float(out["reward_margin"]) == 0.0
    _perturb_lora(model)
    plain = AutoModelForCausalLM.from_pretrained(llama_dir, dtype=torch.float32)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids")}
    with torch.no_grad():
        expected = plain(**inputs).logits
    torch.testing.assert_close(model.reference_logits(inputs), expected, atol=1e-5, rtol=0)
    assert not torch.allclose(model.llm(**inputs).logits, expected, atol=1e-3)
    assert float(model.compute_loss(batch)["loss"]) != pytest.approx(math.log(2), abs=1e-4)
    # the adapter is active again after the reference pass
    assert not torch.allclose(model.llm(**inputs).logits, expected, atol=1e-3)


def test_full_reference_is_built_from_the_config_frozen_and_never_saved(llama_dir):
    model = DPO(_llm(llama_dir), use_activation_checkpointing=False)
    ref = model.ref_llm
    assert ref is not None and ref is not model.llm
    assert not any(p.requires_grad for p in ref.parameters())
    for (name, p), (_, q) in zip(model.llm.named_parameters(), ref.named_parameters()):
        assert p.data_ptr() != q.data_ptr(), name
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    assert model.loss_reduction is None  # the train loop's token normalisation skips DPO
    state = model.state_dict()
    assert state and not any(k.startswith("ref_llm.") for k in state)
    assert set(state) == {f"llm.{k}" for k in model.llm.state_dict()}

    batch = preference_collate_fn(_pairs(), return_hf_format=True)
    losses = model.compute_loss(batch)
    assert float(losses["loss"]) == pytest.approx(math.log(2), abs=1e-6)
    loss, log = model.parse_losses(losses)
    assert loss is losses["loss"]  # the metrics are only logged
    assert set(log) == {"loss", "chosen_rewards", "rejected_rewards", "reward_acc",
                        "reward_margin"}
    ref_before = {k: v.clone() for k, v in ref.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    model.train()
    assert not ref.training
    loss.backward()
    optimizer.step()
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(v, ref_before[k], rtol=0, atol=0)
    after = model.compute_loss(batch)
    assert float(after["loss"]) < math.log(2)  # the step moved the policy, not the reference

    # A checkpoint (no reference) loads back strictly into a fresh model.
    fresh = DPO(_llm(llama_dir), use_activation_checkpointing=False)
    fresh.load_state_dict(model.state_dict())
    torch.testing.assert_close(fresh.compute_loss(batch)["loss"], after["loss"])
    with pytest.raises(RuntimeError, match="missing"):
        fresh.load_state_dict({k: v for k, v in model.state_dict().items()
                               if "embed" not in k})


def test_explicit_reference_llm_is_frozen_and_not_saved(tiny_dirs):
    model = DPO(_llm(tiny_dirs["llama"]), ref_llm=_llm(tiny_dirs["llama"]),
                use_activation_checkpointing=False)
    assert not any(p.requires_grad for p in model.ref_llm.parameters())
    assert not any(k.startswith("ref_llm") for k in model.state_dict())


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo"])
def test_packed_pairs_give_the_log_probs_of_the_padded_batch(llama_dir, loss_type):
    from peft import LoraConfig

    lora = LoraConfig(r=4, lora_alpha=8, task_type="CAUSAL_LM")
    padded_model = DPO(_llm(llama_dir), lora=lora, loss_type=loss_type,
                       use_activation_checkpointing=False)
    packed_model = DPO(_llm(llama_dir), lora=lora, loss_type=loss_type, use_varlen_attn=True,
                       use_activation_checkpointing=False)
    _perturb_lora(padded_model)
    packed_model.load_state_dict(padded_model.state_dict())  # the same (random) adapters
    padded = preference_collate_fn(_pairs(), return_hf_format=True)
    packed = preference_collate_fn(_pairs(), return_hf_format=True, use_varlen_attn=True)
    assert packed["input_ids"].shape[0] == 1 and "attention_mask" not in packed

    def logps(model, batch):
        inputs, labels, bounds = model._pair_inputs(batch)
        with torch.no_grad():
            return sequence_logps(model.llm(**inputs).logits, labels, bounds)

    a, b = logps(padded_model, padded), logps(packed_model, packed)
    assert a.counts.tolist() == b.counts.tolist() == [4, 2, 3, 4, 2, 1]
    torch.testing.assert_close(b.sums, a.sums, atol=1e-4, rtol=0)
    # and the packed sums are those of each sequence alone
    plain = padded_model.llm
    assert b.sums.tolist() == pytest.approx(_manual_logps(plain, _pairs()), abs=1e-4)
    with torch.no_grad():
        la, lb = padded_model.compute_loss(padded), packed_model.compute_loss(packed)
    for key in la:
        torch.testing.assert_close(lb[key], la[key], atol=1e-5, rtol=0)


def test_a_packed_batch_needs_varlen_attention(llama_dir):
    model = DPO(_llm(llama_dir), use_activation_checkpointing=False)
    packed = preference_collate_fn(_pairs(), return_hf_format=True, use_varlen_attn=True)
    with pytest.raises(ConfigError, match="use_varlen_attn=True"):
        model.compute_loss(packed)


def test_reference_gets_the_policys_resized_embeddings(llama_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(llama_dir)
    vocab = len(tokenizer)
    tokenizer.add_tokens([f"<new_{i}>" for i in range(70)])
    model = DPO(_llm(llama_dir), tokenizer=tokenizer, use_activation_checkpointing=False)
    rows = model.llm.get_input_embeddings().weight.shape[0]
    assert rows >= len(tokenizer) > vocab
    torch.testing.assert_close(model.ref_llm.get_input_embeddings().weight,
                               model.llm.get_input_embeddings().weight, rtol=0, atol=0)
    torch.testing.assert_close(model.ref_llm.get_output_embeddings().weight,
                               model.llm.get_output_embeddings().weight, rtol=0, atol=0)
    new = vocab + 5
    pair = dict(chosen_ids=[3, new, new + 1], chosen_labels=[IGNORE, new, new + 1],
                rejected_ids=[3, new + 2], rejected_labels=[IGNORE, new + 2])
    out = model.compute_loss(preference_collate_fn([pair], return_hf_format=True))
    assert float(out["loss"]) == pytest.approx(math.log(2), abs=1e-6)
