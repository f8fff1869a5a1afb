"""``SupervisedFinetune`` on tiny local Llama / Qwen2 models."""
from __future__ import annotations

import math

import peft
import pytest
import torch
import transformers
from bf16_llm import bf16_llm
from peft import LoraConfig, PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from xtuner.dataset.collate_fns import default_collate_fn
from xtuner.model import SupervisedFinetune

IGNORE = -100
LINEAR_NAMES = ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]
LORA = dict(type=LoraConfig, r=8, lora_alpha=16, target_modules=None, lora_dropout=0.0)


def llm_cfg(path, **kw):
    return dict(type=AutoModelForCausalLM.from_pretrained, pretrained_model_name_or_path=path,
                **kw)


def build_sft(path, llm_kw=None, **kw):
    """A SupervisedFinetune on the tiny checkpoint; checkpointing off unless asked for.

    LoRA's A matrices are initialised from torch's global RNG: seed it so that two builds
    start from the same adapter.
    """
    kw.setdefault("use_activation_checkpointing", False)
    torch.manual_seed(0)
    return SupervisedFinetune(llm=llm_cfg(path, **(llm_kw or {})), **kw)


def random_samples(lengths, vocab_size, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(5, vocab_size, (n,), generator=g).tolist() for n in lengths]


def padded_batch(model, seed=0):
    vocab = model.llm.get_input_embeddings().weight.shape[0]
    samples = random_samples([12, 9], vocab, seed)
    instances = [{"input_ids": s, "labels": [IGNORE] * 3 + s[3:]} for s in samples]
    return default_collate_fn(instances, pad_index=2)["data"]


def train_steps(model, data, steps=5, lr=1e-2):
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        loss = model(data, mode="loss")["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    with torch.no_grad():
        losses.append(model(data, mode="loss")["loss"].item())
    return losses


# -- (a) packed rows ------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["llama", "qwen2"])
@pytest.mark.parametrize("as_packed_row", [True, False])
def test_packed_sample_logits_equal_the_sample_alone(tiny_dirs, arch, as_packed_row):
    model = build_sft(tiny_dirs[arch], use_varlen_attn=True).eval()
    vocab = model.llm.config.vocab_size
    samples = random_samples([7, 5, 9], vocab)
    if as_packed_row:  # what pack_dataset emits
        instances = [{"input_ids": sum(samples, []), "labels": sum(samples, []),
                      "position_ids": [p for s in samples for p in range(len(s))],
                      "cumulative_len": [0, 7, 12, 21]}]
    else:  # unpacked samples collated into one varlen row
        instances = [{"input_ids": s, "labels": s} for s in samples]
    data = default_collate_fn(instances, use_varlen_attn=True)["data"]
    assert data["input_ids"].shape == (1, 21)
    assert data["cumulative_len"][0].tolist() == [0, 7, 12, 21]

    packed = model(data, mode="predict")[0]["logits"]
    # The reference is the plain Hugging Face model (SDPA), independent of xtuner.
    reference = AutoModelForCausalLM.from_pretrained(tiny_dirs[arch]).eval()
    with torch.no_grad():
        plain_causal = reference(input_ids=data["input_ids"]).logits[0]
    start = 0
    for i, sample in enumerate(samples):
        end = start + len(sample)
        with torch.no_grad():
            alone = reference(input_ids=torch.tensor([sample])).logits[0]
        torch.testing.assert_close(packed[start:end], alone, atol=1e-5, rtol=1e-5)
        if i > 0:
            # Attending across the boundary (v0's non-varlen packing) changes the logits.
            assert (plain_causal[start:end] - alone).abs().max() > 1e-2
        start = end


def test_packed_loss_is_the_token_weighted_mean_of_the_samples(llama_dir):
    model = build_sft(llama_dir, use_varlen_attn=True).eval()
    samples = random_samples([7, 5, 9], model.llm.config.vocab_size, seed=1)
    # Each sample starts with an untrained token (like BOS + prompt), so no label at a
    # boundary is predicted from the previous sample.
    labels = [[IGNORE, IGNORE] + s[2:] for s in samples]
    row = {"input_ids": sum(samples, []), "labels": sum(labels, []),
           "position_ids": [p for s in samples for p in range(len(s))],
           "cumulative_len": [0, 7, 12, 21]}
    data = default_collate_fn([row], use_varlen_attn=True)["data"]
    with torch.no_grad():
        packed = model(data, mode="loss")["loss"]
        total, count = 0.0, 0
        for s, lab in zip(samples, labels):
            loss = model.llm(input_ids=torch.tensor([s]), labels=torch.tensor([lab])).loss
            n = sum(1 for x in lab[1:] if x != IGNORE)
            total, count = total + loss.item() * n, count + n
    assert packed.item() == pytest.approx(total / count, rel=1e-5)


# -- (b) full fine-tuning --------------------------------------------------------------------
def test_full_finetuning_lowers_the_loss(llama_dir):
    model = build_sft(llama_dir)
    assert all(p.requires_grad for p in model.parameters())
    losses = train_steps(model, padded_batch(model))
    assert losses[-1] < losses[0] - 0.5, losses
    assert all(math.isfinite(x) for x in losses)


# -- (c) LoRA ------------------------------------------------------------------------------
def _lora_modules(model):
    return {name for name, m in model.named_modules() if isinstance(m, peft.tuners.lora.LoraLayer)}


def test_lora_adapts_every_linear_layer_but_lm_head(llama_dir):
    model = build_sft(llama_dir, lora=LORA)
    assert isinstance(model.llm, PeftModel)
    assert sorted(model.llm.peft_config["default"].target_modules) == LINEAR_NAMES
    adapted = _lora_modules(model)
    assert len(adapted) == 7 * 2  # 7 linear layers x 2 decoder layers
    assert {name.rsplit(".", 1)[-1] for name in adapted} == set(LINEAR_NAMES)
    assert not any("lm_head" in name for name in adapted)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    assert len(trainable) == 2 * 14


def test_lora_state_dict_round_trip(llama_dir, tmp_path):
    model = build_sft(llama_dir, lora=LORA)
    data = padded_batch(model)
    losses = train_steps(model, data, steps=3)
    assert losses[-1] < losses[0]

    state = model.state_dict()
    assert len(state) == 2 * 14
    assert all(".lora_A." in k or ".lora_B." in k for k in state)
    inputs = {"input_ids": data["input_ids"], "attention_mask": data["attention_mask"]}
    with torch.no_grad():
        trained = model.llm(**inputs).logits

    fresh = build_sft(llama_dir, lora=LORA).eval()
    with torch.no_grad():
        before = fresh.llm(**inputs).logits
    assert (before - trained).abs().max() > 1e-3  # so the comparison below can fail
    fresh.load_state_dict(state)
    with torch.no_grad():
        torch.testing.assert_close(fresh.llm(**inputs).logits, trained, atol=1e-6, rtol=0)

    # An incomplete adapter checkpoint is refused.
    partial_state = dict(list(state.items())[:-1])
    with pytest.raises(RuntimeError, match="checkpoint mismatch: missing"):
        build_sft(llama_dir, lora=LORA).load_state_dict(partial_state)

    # The adapter saved by peft loads with plain peft onto the plain base model.
    model.llm.save_pretrained(tmp_path / "adapter")
    base = AutoModelForCausalLM.from_pretrained(llama_dir)
    plain = PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
    with torch.no_grad():
        torch.testing.assert_close(plain(**inputs).logits, trained, atol=1e-6, rtol=0)


# -- (d) embedding resize ------------------------------------------------------------------
def test_embeddings_grow_to_a_multiple_of_64_for_a_larger_tokenizer(llama_dir):
    tokenizer = AutoTokenizer.from_pretrained(llama_dir)
    vocab = len(tokenizer)
    original = AutoModelForCausalLM.from_pretrained(llama_dir)
    assert original.get_input_embeddings().weight.shape[0] == vocab

    # Same size: nothing changes (tokenizer given as a config dict).
    same = build_sft(llama_dir, tokenizer=dict(type=AutoTokenizer.from_pretrained,
                                               pretrained_model_name_or_path=llama_dir))
    assert same.llm.get_input_embeddings().weight.shape[0] == vocab

    tokenizer.add_tokens([f"<extra_{i}>" for i in range(10)])
    model = build_sft(llama_dir, tokenizer=tokenizer)
    rows = math.ceil((vocab + 10) / 64) * 64
    assert rows > vocab + 10  # padded up, not just grown to the tokenizer's size
    assert model.llm.get_input_embeddings().weight.shape == (rows, 32)
    assert model.llm.get_output_embeddings().weight.shape == (rows, 32)
    assert model.llm.config.vocab_size == rows
    torch.testing.assert_close(model.llm.get_input_embeddings().weight[:vocab],
                               original.get_input_embeddings().weight)
    new_id = tokenizer.convert_tokens_to_ids("<extra_9>")
    logits = model(default_collate_fn([{"input_ids": [0, new_id], "labels": [0, new_id]}])
                   ["data"], mode="predict")[0]["logits"]
    assert logits.shape == (2, rows)


# -- (e) activation checkpointing ------------------------------------------------------------
def _packed_batch(model):
    samples = random_samples([7, 5, 9], model.llm.config.vocab_size, seed=2)
    instances = [{"input_ids": s, "labels": [IGNORE] + s[1:]} for s in samples]
    return default_collate_fn(instances, use_varlen_attn=True)["data"]


@pytest.mark.parametrize("setup", ["full", "lora", "lora_dropout", "varlen", "varlen_lora"])
def test_activation_checkpointing_gives_the_same_loss_and_grads(llama_dir, setup,
                                                              monkeypatch):
    """Either kind of checkpointing (reentrant, the default and v0's; non-reentrant) gives the
    loss and gradients of no checkpointing -- LoRA with frozen embeddings and with dropout
    (recomputed with the same random mask) included."""
    from torch.utils import checkpoint

    reentrant_segments = []
    apply = checkpoint.CheckpointFunction.apply
    monkeypatch.setattr(checkpoint.CheckpointFunction, "apply",
                        lambda *a: reentrant_segments.append(1) or apply(*a))
    kw = {}
    if "lora" in setup:
        kw["lora"] = {**LORA, "lora_dropout": 0.2 if setup == "lora_dropout" else 0.0}
    kw["use_varlen_attn"] = setup.startswith("varlen")
    results = []
    for checkpointing, reentrant in ((False, False), (True, False), (True, True)):
        model = build_sft(llama_dir, use_activation_checkpointing=checkpointing,
                          reentrant_checkpointing=reentrant, **kw)
        assert model.llm.is_gradient_checkpointing is checkpointing
        model.train()
        data = _packed_batch(model) if kw["use_varlen_attn"] else padded_batch(model)
        torch.manual_seed(1)  # the dropout masks
        reentrant_segments.clear()
        loss = model(data, mode="loss")["loss"]
        loss.backward()
        # the kind asked for ran: one reentrant segment per layer, or none
        assert len(reentrant_segments) == reentrant * model.llm.config.num_hidden_layers
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        assert grads and all(g is not None for g in grads.values())
        results.append((loss.item(), grads))
    loss_off, grads_off = results[0]
    for loss_on, grads_on in results[1:]:
        assert loss_on == pytest.approx(loss_off, rel=1e-6)
        assert grads_on.keys() == grads_off.keys()
        for name in grads_off:
            torch.testing.assert_close(grads_on[name], grads_off[name], atol=1e-6, rtol=1e-5)


def test_checkpointing_turned_back_on_keeps_offloading_and_the_kind(llama_dir, monkeypatch):
    """A hook that pauses checkpointing to generate (``gradient_checkpointing_enable()``)
    gets the memory plan's offloading back; ``use_non_reentrant_checkpointing`` switches the
    kind of a model already checkpointing (what DDP finding unused parameters needs)."""
    import contextlib

    from torch.utils import checkpoint

    offloaded, reentrant = [], []

    @contextlib.contextmanager
    def save_on_cpu(**kwargs):
        offloaded.append(1)
        yield

    monkeypatch.setattr(transformers.modeling_utils, "save_on_cpu", save_on_cpu)
    apply = checkpoint.CheckpointFunction.apply
    monkeypatch.setattr(checkpoint.CheckpointFunction, "apply",
                        lambda *a: reentrant.append(1) or apply(*a))
    model = build_sft(llama_dir, lora=LORA, use_activation_checkpointing=True).train()
    layers = model.llm.config.num_hidden_layers

    def step():
        offloaded.clear()
        reentrant.clear()
        model(padded_batch(model), mode="loss")["loss"].backward()
        return len(offloaded), len(reentrant)

    assert step() == (0, layers)  # reentrant by default, nothing offloaded
    embeddings = model.llm.get_input_embeddings()
    hooks = len(embeddings._forward_hooks)
    model.gradient_checkpointing_enable(offload=True)
    assert step() == (layers, layers)
    model.gradient_checkpointing_disable()
    assert step() == (0, 0)
    model.gradient_checkpointing_enable()
    assert step() == (layers, layers)
    assert len(embeddings._forward_hooks) == hooks  # turning it on again adds no hook
    model.use_non_reentrant_checkpointing()
    assert step() == (layers, 0)


# -- (f) QLoRA on the CPU ------------------------------------------------------------------
def test_qlora_4bit_on_cpu(llama_dir):
    bnb = pytest.importorskip("bitsandbytes")
    quantization = dict(type=transformers.BitsAndBytesConfig, load_in_4bit=True,
                        bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                        bnb_4bit_compute_dtype=torch.float32)
    model = build_sft(llama_dir, llm_kw=dict(quantization_config=quantization), lora=LORA)
    base = model.llm.get_base_model()
    q_proj = base.model.layers[0].self_attn.q_proj
    assert isinstance(q_proj.base_layer, bnb.nn.Linear4bit)
    assert q_proj.base_layer.weight.quant_type == "nf4"
    linear4bit = [n for n, m in base.named_modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(linear4bit) == 14
    assert not isinstance(base.lm_head, bnb.nn.Linear4bit)
    assert sorted(model.llm.peft_config["default"].target_modules) == LINEAR_NAMES
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert len(trainable) == 2 * 14 and all("lora_" in n for n in trainable)
    losses = train_steps(model, padded_batch(model), steps=5)
    assert losses[-1] < losses[0] - 0.1, losses
    assert len(model.state_dict()) == 2 * 14


# -- other behaviour -----------------------------------------------------------------------
def test_max_position_embeddings_extends_rope_linearly(llama_dir):
    base = build_sft(llama_dir)
    model = build_sft(llama_dir, max_position_embeddings=5000)  # 2048 -> x3
    assert model.llm.config.max_position_embeddings == 5000
    rotary = model.llm.model.rotary_emb
    assert rotary.rope_type == "linear"
    torch.testing.assert_close(rotary.inv_freq, base.llm.model.rotary_emb.inv_freq / 3)
    # Not asked for more context than the model has: unchanged.
    same = build_sft(llama_dir, max_position_embeddings=1024)
    assert same.llm.config.max_position_embeddings == 2048
    assert same.llm.model.rotary_emb.rope_type == "default"


def test_forward_modes_and_errors(llama_dir):
    model = build_sft(llama_dir, use_varlen_attn=True).eval()
    data = default_collate_fn([{"input_ids": [5, 6, 7], "labels": [5, 6, 7]}],
                              use_varlen_attn=True)["data"]
    with torch.no_grad():
        logits = model(data, mode="tensor").logits
    assert logits.shape == (1, 3, model.llm.config.vocab_size)
    torch.testing.assert_close(model(data, mode="predict")[0]["logits"], logits[0])
    with pytest.raises(NotImplementedError, match="unknown forward mode 'train'"):
        model(data, mode="train")
    data["cumulative_len"] = [data["cumulative_len"][0]] * 2
    with pytest.raises(ValueError, match="one row"):
        model(data, mode="loss")
    assert callable(model.generate)  # v0: attributes fall through to the LLM


def test_reentrant_checkpointing_under_qlora_gives_the_same_loss_and_grads(llama_dir):
    """QLoRA (4-bit frozen base, bf16): both kinds of checkpointing give the loss and adapter
    gradients of no checkpointing."""
    pytest.importorskip("bitsandbytes")
    results = []
    for checkpointing, reentrant in ((False, False), (True, False), (True, True)):
        llm = bf16_llm(llama_dir)
        torch.manual_seed(0)
        # B drawn too (not zero): every adapter matrix then has a gradient to compare
        model = SupervisedFinetune(llm=llm, lora={**LORA, "init_lora_weights": False},
                                   use_varlen_attn=True,
                                   use_activation_checkpointing=checkpointing,
                                   reentrant_checkpointing=reentrant).train()
        loss = model(_packed_batch(model), mode="loss")["loss"]
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        assert grads and all(g is not None and g.abs().sum() > 0 for g in grads.values())
        results.append((loss.item(), grads))
    loss_off, grads_off = results[0]
    for loss_on, grads_on in results[1:]:
        assert loss_on == pytest.approx(loss_off, rel=1e-6)
        for name in grads_off:
            torch.testing.assert_close(grads_on[name], grads_off[name], atol=1e-6, rtol=1e-5)
