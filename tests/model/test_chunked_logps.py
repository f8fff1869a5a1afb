"""``chunked_logps``: DPO's and ORPO's log-probabilities from the hidden states through the
output head, a chunk of target tokens at a time. The oracle is the logits path of the same
model: the same per-sequence log-probabilities, losses and gradients -- padded and packed
pairs, LoRA (the reference = adapters off) and full fine-tuning (a separate reference, the
output head trained), Gemma 2's logit soft-capping -- and a one-line refusal where the head's
output is not the logits."""
from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from tests.model.gradients import assert_same_loss_and_grads, step_loss_and_grads
from tests.model.test_dpo import _llm, _pairs, _perturb_lora
from xtuner.dataset.collate_fns import preference_collate_fn
from xtuner.model import DPO
from xtuner.model.orpo import ORPO
from xtuner.model.preference import head_sequence_logps, sequence_logps
from xtuner.utils.errors import ConfigError


@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("softcap", [None, 2.0])
def test_head_logps_equal_the_logits_path_with_gradients(llama_dir, packed, softcap):
    """Values and the gradients reaching the hidden states and the head's weight, with chunks
    of 3 target tokens (every chunk boundary crossing a sequence somewhere)."""
    llm = AutoModelForCausalLM.from_pretrained(llama_dir, dtype=torch.float32)
    batch = preference_collate_fn(_pairs(), return_hf_format=True, use_varlen_attn=packed)
    bounds = batch["cumulative_len"][0] if packed else None
    with torch.no_grad():
        hidden = llm.get_decoder()(input_ids=batch["input_ids"],
                                   position_ids=batch["position_ids"]).last_hidden_state
    head = llm.get_output_embeddings()
    results = []
    for chunked in (False, True):
        head.zero_grad()
        h = hidden.clone().requires_grad_(True)
        if chunked:
            logps = head_sequence_logps(h, head, batch["labels"], bounds, chunk_tokens=3,
                                        softcap=softcap)
        else:
            logits = head(h)
            if softcap:
                logits = torch.tanh(logits / softcap) * softcap
            logps = sequence_logps(logits, batch["labels"], bounds)
        # weights make every sequence's gradient differ
        (logps.sums * torch.arange(1.0, len(logps.sums) + 1)).sum().backward()
        results.append((logps, h.grad.clone(), head.weight.grad.clone()))
    (plain, h_plain, w_plain), (chunk, h_chunk, w_chunk) = results
    assert chunk.counts.tolist() == plain.counts.tolist() == [4, 2, 3, 4, 2, 1]
    torch.testing.assert_close(chunk.sums, plain.sums, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(h_chunk, h_plain, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(w_chunk, w_plain, atol=1e-6, rtol=1e-5)


def _build(cls, llama_dir, chunked, lora, packed, **kw):
    from peft import LoraConfig

    if lora:
        kw["lora"] = LoraConfig(r=4, lora_alpha=8, task_type="CAUSAL_LM")
    torch.manual_seed(0)  # the adapters' A matrices: the same in both models compared
    return cls(_llm(llama_dir), use_varlen_attn=packed, chunked_logps=chunked,
               use_activation_checkpointing=False, **kw).train()


@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("cls,lora,kw", [
    (DPO, True, {"loss_type": "sigmoid"}),
    (DPO, True, {"loss_type": "ipo"}),
    (DPO, False, {"loss_type": "sigmoid"}),
    (ORPO, True, {}),
    (ORPO, False, {}),
], ids=["dpo_lora", "dpo_lora_ipo", "dpo_full", "orpo_lora", "orpo_full"])
def test_training_step_is_the_logits_paths(llama_dir, cls, lora, kw, packed):
    batch = preference_collate_fn(_pairs(), return_hf_format=True, use_varlen_attn=packed)
    results = []
    for chunked in (False, True):
        model = _build(cls, llama_dir, chunked, lora, packed, **kw)
        if lora:
            _perturb_lora(model)  # the policy differs from its reference
        elif cls is DPO:
            with torch.no_grad():  # likewise for full fine-tuning
                for p in model.llm.parameters():
                    p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(
                        p.numel())) * 0.02)
        results.append(step_loss_and_grads(model, batch))
    assert results[1][1], "no gradients"
    if not lora:  # full fine-tuning: the output head is trained too
        assert any("lm_head" in name for name in results[1][1])
    assert_same_loss_and_grads(*results)


def test_gemma2_logit_softcapping(tmp_path):
    """A model that soft-caps its logits (Gemma 2): the chunked DPO step is the logits one."""
    from transformers import Gemma2Config, Gemma2ForCausalLM

    torch.manual_seed(0)
    Gemma2ForCausalLM(Gemma2Config(
        vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=8,
        final_logit_softcapping=3.0)).save_pretrained(tmp_path)
    batch = preference_collate_fn(_pairs(), return_hf_format=True)
    results = [step_loss_and_grads(_build(DPO, tmp_path, chunked, True, False), batch)
               for chunked in (False, True)]
    assert_same_loss_and_grads(*results)


@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
def test_a_model_that_scales_its_logits_is_refused_on_the_first_batch(tmp_path, packed):
    """Cohere multiplies its logits (logit_scale): the first batch's check sees that the
    head's output is not the logits, whatever the config key is called."""
    from transformers import CohereConfig, CohereForCausalLM

    CohereForCausalLM(CohereConfig(
        vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=2, logit_scale=0.5)).save_pretrained(tmp_path)
    model = _build(DPO, tmp_path, True, True, packed)
    batch = preference_collate_fn(_pairs(), return_hf_format=True, use_varlen_attn=packed)
    with pytest.raises(ConfigError, match=r"^model.chunked_logps: CohereForCausalLM does more "
                                          r"to its logits than its output head"):
        model(batch, mode="loss")
    # the logits path trains it
    _build(DPO, tmp_path, False, True, packed)(batch, mode="loss")["loss"].backward()


@pytest.mark.parametrize("cls", [DPO, ORPO])
def test_a_batch_without_targets_still_has_a_gradient(llama_dir, cls):
    """Every label ignored: the loss is the logits path's and backward works (zero grads)."""
    pairs = [{**p, "chosen_labels": [-100] * len(p["chosen_ids"]),
              "rejected_labels": [-100] * len(p["rejected_ids"])} for p in _pairs()]
    batch = preference_collate_fn(pairs, return_hf_format=True, use_varlen_attn=True)
    results = [step_loss_and_grads(_build(cls, llama_dir, chunked, True, True), batch)
               for chunked in (False, True)]
    assert_same_loss_and_grads(*results)


def test_sequence_parallelism_is_refused_when_the_model_is_built(llama_dir, monkeypatch):
    import xtuner.model.sft as sft

    monkeypatch.setattr(sft, "get_sequence_parallel_world_size", lambda: 2)
    with pytest.raises(ConfigError, match=r"^model.chunked_logps does not work with "
                                          r"sequence_parallel_size > 1"):
        _build(DPO, llama_dir, True, True, True)


def test_checkpointed_training_step_over_several_chunks_is_the_logits_paths(llama_dir,
                                                                             monkeypatch):
    """Every layer checkpointed (reentrant, the default) and chunks of 4 targets."""
    import xtuner.model.dpo as dpo

    monkeypatch.setattr(dpo, "logps_chunk_tokens", lambda vocab: 4)
    batch = preference_collate_fn(_pairs(), return_hf_format=True, use_varlen_attn=True)
    results = []
    for chunked in (False, True):
        model = _build(DPO, llama_dir, chunked, True, True)
        model.gradient_checkpointing_enable()
        _perturb_lora(model)
        results.append(step_loss_and_grads(model, batch))
    assert_same_loss_and_grads(*results)


@pytest.mark.parametrize("cls", [DPO, ORPO])
def test_no_tokens_by_vocabulary_tensor_is_kept_for_backward(llama_dir, cls):
    """What the memory saving rests on: the logits path keeps a (tokens x vocabulary) tensor
    for the backward pass; the chunked path keeps none larger than a chunk of targets."""
    batch = preference_collate_fn(_pairs(), return_hf_format=True, use_varlen_attn=True)
    kept = {}
    for chunked in (False, True):
        model = _build(cls, llama_dir, chunked, True, True)
        vocab = model.llm.get_output_embeddings().weight.shape[0]
        shapes = []

        def pack(tensor, shapes=shapes):
            shapes.append(tuple(tensor.shape))
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(batch, mode="loss")
        kept[chunked] = [s for s in shapes if s and s[-1] == vocab]
    tokens = batch["input_ids"].numel()
    assert any(s[:-1] == (1, tokens) or s[:-1] == (1, tokens - 1) for s in kept[False])
    assert kept[True] == []
