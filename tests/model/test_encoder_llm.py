"""``EncoderLLM`` (issue 16): features land on the context tokens, text-only batches keep
the text, packed samples equal the samples alone, ``save_hf`` -> ``from_hf`` and plain
transformers load what was saved."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer, Wav2Vec2Config

from tests.model.gradients import assert_same_loss_and_grads, step_loss_and_grads
from xtuner.dataset.media import (
    TS_TOKENS,
    TimeSeriesTokenizeFunction,
    add_special_tokens,
    media_collate_fn,
)
from xtuner.model.encoder_llm import EncoderLLM

ENCODER = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
               conv_dim=(8, 8), conv_stride=(5, 4), conv_kernel=(10, 8),
               num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2,
               apply_spec_augment=False, mask_time_prob=0.0, layerdrop=0.0,
               feat_extract_norm="layer", do_stable_layer_norm=True)


@pytest.fixture(scope="module")
def parts(llama_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("encoder_llm")
    tokenizer = add_special_tokens(AutoTokenizer.from_pretrained(llama_dir), TS_TOKENS)
    config = Wav2Vec2Config(**ENCODER)
    fn = TimeSeriesTokenizeFunction(tokenizer, encoder_config=config, media_root=str(root))
    samples = []
    for i, length in enumerate((130, 0, 257)):
        if length:
            np.save(root / f"{i}.npy", np.sin(np.arange(length) / (i + 2)))
            content = [{"type": "time_series_url", "time_series_url": {"url": f"{i}.npy"}},
                       {"type": "text", "text": "What frequency?<TS_CONTEXT>"}]
        else:
            content = "Hello there"
        sample = fn({"messages": [{"role": "user", "content": content},
                                  {"role": "assistant", "content": f"Answer {i}."}]})
        samples.append({"input_ids": sample["input_ids"], "labels": sample["labels"],
                        "media": [fn.load(r) for r in sample["media"]]})
    return {"tokenizer": tokenizer, "config": config, "samples": samples, "llm": llama_dir}


def build(parts, seed=0, **kw):
    """The model; ``seed`` draws the projector and the new embedding rows (the encoder stands
    for a pretrained one: always the same)."""
    torch.manual_seed(0)
    encoder = AutoModel.from_config(parts["config"])
    torch.manual_seed(seed)
    kw.setdefault("use_varlen_attn", True)
    return EncoderLLM(llm=dict(type=AutoModelForCausalLM.from_pretrained,
                               pretrained_model_name_or_path=parts["llm"]),
                      encoder=encoder, tokenizer=parts["tokenizer"], **kw)


def logits(model, instances):
    batch = media_collate_fn(instances, use_varlen_attn=True)["data"]
    with torch.no_grad():
        return model(batch, mode="predict")[0]["logits"]


def test_features_replace_exactly_the_context_tokens(parts):
    model = build(parts).eval()
    sample = parts["samples"][0]
    ids = torch.tensor([sample["input_ids"]])
    with torch.no_grad():
        embeds = model.embed(ids, sample["media"])[0]
        hidden = model.encoder(input_values=sample["media"][0][None]).last_hidden_state
        features = model.projector(hidden)[0]
        text = model.llm.get_input_embeddings()(ids)[0]
    context = ids[0] == model.context_token_id
    assert int(context.sum()) == features.shape[0] > 0
    assert torch.equal(embeds[context], features)
    assert torch.equal(embeds[~context], text[~context])
    with pytest.raises(ValueError, match="no media"):
        model.embed(ids, [])


def test_text_only_batches_keep_the_text_and_the_encoder_in_the_graph(parts):
    model = build(parts, freeze_encoder=False, freeze_llm=False).train()
    text = parts["samples"][1]
    ids = torch.tensor([text["input_ids"]])
    embeds = model.embed(ids, [])
    assert torch.equal(embeds, model.llm.get_input_embeddings()(ids))
    batch = media_collate_fn([text], use_varlen_attn=True)["data"]
    model(batch, mode="loss")["loss"].backward()
    trainable = [p for m in (model.encoder, model.projector) for p in m.parameters()
                 if p.requires_grad]
    assert trainable and all(p.grad is not None for p in trainable)
    assert all(float(p.grad.abs().sum()) == 0 for p in trainable)


def test_packed_samples_equal_the_samples_alone(parts):
    model = build(parts).eval()
    samples = parts["samples"]
    packed = logits(model, samples)
    start = 0
    for sample in samples:
        alone = logits(model, [sample])
        end = start + len(sample["input_ids"])
        torch.testing.assert_close(packed[start:end], alone, atol=1e-5, rtol=1e-5)
        start = end
    assert start == packed.shape[0]


def test_padded_batches_equal_the_samples_alone(parts):
    """Without varlen attention (right-padded rows, one sample each) the media still land in
    their own rows, in order."""
    model = build(parts, use_varlen_attn=False).eval()
    samples = [parts["samples"][2], parts["samples"][1], parts["samples"][0]]
    batch = media_collate_fn(samples, pad_index=0)["data"]
    with torch.no_grad():
        padded = model(batch, mode="predict")
    for row, sample in zip(padded, samples):
        alone = media_collate_fn([sample], pad_index=0)["data"]
        with torch.no_grad():
            expected = model(alone, mode="predict")[0]["logits"]
        n = len(sample["input_ids"])
        torch.testing.assert_close(row["logits"][:n], expected[:n], atol=1e-5, rtol=1e-5)


def _perturb(model):
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_save_hf_round_trip_and_plain_transformers(parts, tmp_path, lora):
    from peft import LoraConfig

    kw = dict(llm_lora=LoraConfig(r=4, lora_alpha=8, target_modules=None)) if lora else \
        dict(freeze_llm=False)
    model = build(parts, freeze_encoder=False, **kw)
    _perturb(model)
    model.eval()
    out = model.save_hf(tmp_path / "hf")
    again = EncoderLLM.from_hf(out, use_varlen_attn=True).eval()
    samples = parts["samples"]
    torch.testing.assert_close(logits(again, samples), logits(model, samples),
                               atol=1e-5, rtol=1e-5)
    # Plain transformers loads the LLM part: the same logits on text.
    plain = AutoModelForCausalLM.from_pretrained(out).eval()
    ids = torch.tensor([samples[1]["input_ids"]])
    with torch.no_grad():
        expected = model.llm(input_ids=ids).logits
        torch.testing.assert_close(plain(input_ids=ids).logits, expected, atol=1e-5, rtol=1e-5)
    assert AutoTokenizer.from_pretrained(out).convert_tokens_to_ids(TS_TOKENS) == \
        parts["tokenizer"].convert_tokens_to_ids(TS_TOKENS)


def test_checkpoint_holds_what_trains_and_the_new_embedding_rows(parts):
    """A frozen LLM's checkpoint has the projector and the embeddings (the media tokens'
    rows are randomly initialised when the tokenizer grows); a model built with another
    seed and loaded from it computes the same logits."""
    model = build(parts, seed=0).eval()
    state = model.state_dict()
    assert any(k.startswith("projector.") for k in state)
    assert not any(k.startswith("encoder.") for k in state)
    other = build(parts, seed=5).eval()
    assert not torch.equal(logits(other, parts["samples"]), logits(model, parts["samples"]))
    other.load_state_dict(state)
    torch.testing.assert_close(logits(other, parts["samples"]), logits(model, parts["samples"]))


def test_qlora_save_hf_is_a_16_bit_llm_with_the_adapters_merged(parts, tmp_path):
    """A 4-bit LLM is written in 16 bits (here float32): its original weights with the
    trained adapters merged and the trained media-token rows. Plain transformers loading it
    computes what peft computes, unmerged, with those adapters on the original weights."""
    pytest.importorskip("bitsandbytes")
    import transformers
    from peft import LoraConfig

    torch.manual_seed(0)
    encoder = AutoModel.from_config(parts["config"])
    model = EncoderLLM(
        llm=dict(type=AutoModelForCausalLM.from_pretrained,
                 pretrained_model_name_or_path=parts["llm"],
                 quantization_config=dict(type=transformers.BitsAndBytesConfig,
                                          load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                          bnb_4bit_compute_dtype=torch.float32)),
        encoder=encoder, tokenizer=parts["tokenizer"], use_varlen_attn=True,
        llm_lora=LoraConfig(r=4, lora_alpha=8, target_modules=None),
        use_activation_checkpointing=False)
    _perturb(model)
    model.eval()
    out = model.save_hf(tmp_path / "hf", dtype=torch.float32)
    plain = AutoModelForCausalLM.from_pretrained(out).eval()
    assert not getattr(plain.config, "quantization_config", None)
    sample = parts["samples"][0]
    ids = torch.tensor([sample["input_ids"]])
    from peft import get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict

    base = AutoModelForCausalLM.from_pretrained(parts["llm"])
    base.resize_token_embeddings(len(model.llm.get_input_embeddings().weight))
    with torch.no_grad():
        base.get_input_embeddings().weight.copy_(model.llm.get_input_embeddings().weight)
        base.get_output_embeddings().weight.copy_(model.llm.get_output_embeddings().weight)
    reference = get_peft_model(base, copy.deepcopy(model.llm.peft_config["default"])).eval()
    set_peft_model_state_dict(reference, get_peft_model_state_dict(model.llm))
    with torch.no_grad():
        embeds = model.embed(ids, sample["media"])
        expected = reference(inputs_embeds=embeds).logits
        got = plain(inputs_embeds=embeds).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    again = EncoderLLM.from_hf(out, use_varlen_attn=True).eval()
    with torch.no_grad():
        torch.testing.assert_close(again.llm(inputs_embeds=embeds).logits, expected,
                                   atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("freeze_encoder", [True, False], ids=["frozen", "trained"])
def test_activation_checkpointing_keeps_the_loss_and_every_gradient(parts, freeze_encoder):
    """Checkpointing on (the LLM's layers reentrant, the default; a trained encoder's
    non-reentrant) gives the loss and gradients of no checkpointing, with the LLM frozen
    (only the projector, and the encoder when it trains, get gradients)."""
    batch = media_collate_fn(parts["samples"], use_varlen_attn=True)["data"]
    results = []
    for checkpointing in (False, True):
        model = build(parts, freeze_encoder=freeze_encoder, freeze_llm=True,
                      use_activation_checkpointing=checkpointing).train()
        assert model.is_checkpointing_activations is checkpointing
        loss, grads = step_loss_and_grads(model, batch)
        assert any(n.startswith("projector") for n in grads)
        assert any(n.startswith("encoder") for n in grads) is not freeze_encoder
        results.append((loss, grads))
    assert_same_loss_and_grads(*results)
