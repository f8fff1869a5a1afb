"""``xtuner benchmark`` on the CPU: synthetic packed data, FLOPs formula, the table/JSON, the
plain Hugging Face baseline and --random-init."""
from __future__ import annotations

import json
import os

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig

from xtuner.benchmark.synthetic import SyntheticPackedDataset
from xtuner.engine.hooks.throughput_hook import estimate_flops_per_token
from xtuner.entry_point import main as xtuner_main

IGNORE = -100


def test_synthetic_rows_are_whole_packed_samples():
    data = SyntheticPackedDataset(vocab_size=50, max_length=300, num_rows=4,
                                  sample_lengths=(20, 80))
    assert len(data) == 4
    for index in range(4):
        row = data[index]
        assert row == data[index]  # deterministic
        assert len(row["input_ids"]) == len(row["labels"]) == len(row["position_ids"]) == 300
        bounds = row["cumulative_len"]
        assert bounds[0] == 0 and bounds[-1] == 300
        lengths = [b - a for a, b in zip(bounds[:-1], bounds[1:])]
        assert lengths == data.sample_lengths_of(index)
        assert all(20 <= n <= 80 for n in lengths[:-1]) and 1 <= lengths[-1] <= 80
        assert all(0 <= t < 50 for t in row["input_ids"])
        for start, n in zip(bounds[:-1], lengths):
            assert row["position_ids"][start:start + n] == list(range(n))
            prompt = n // 4
            assert row["labels"][start:start + prompt] == [IGNORE] * prompt
            assert row["labels"][start + prompt:start + n] == \
                row["input_ids"][start + prompt:start + n]
    assert data[0] != data[1]
    with pytest.raises(ValueError):
        SyntheticPackedDataset(50, 300, 1, sample_lengths=(80, 20))


def test_flops_formula():
    config = LlamaConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, intermediate_size=128, vocab_size=1000)
    head_dim = 16
    attn = 64 * head_dim * (2 * 4 + 2 * 2)  # q, o: 4 heads; k, v: 2 heads
    mlp = 3 * 64 * 128
    dense = 2 * (attn + mlp) + 64 * 1000  # output head counted, embeddings not
    lengths = [10, 30]
    attention = sum(6 * 2 * 4 * head_dim * n * n for n in lengths) / 40
    assert estimate_flops_per_token(config, lengths) == pytest.approx(6 * dense + attention)
    # frozen weights: forward (2) + input gradients (2), no weight gradients
    assert estimate_flops_per_token(config, lengths, trainable_fraction=0.0) == \
        pytest.approx(4 * dense + attention)
    assert estimate_flops_per_token(config, lengths, trainable_fraction=0.5) == \
        pytest.approx(5 * dense + attention)


def _run(argv, capsys):
    code = xtuner_main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_benchmark_demo_with_baseline(in_tmp, capsys):
    path = in_tmp / "result.json"
    code, out, err = _run(["benchmark", "demo_tiny_lora_colorist_e40", "--steps", "2",
                           "--warmup", "1", "--seq-len", "128", "--sample-len", "16:64",
                           "--baseline", "--json", str(path)], capsys)
    assert code == 0, err
    assert "tokens/s per GPU" in out and "speed-up over the plain Hugging Face loop" in out
    assert "model FLOPs per token" in out
    payload = json.loads(path.read_text())
    ours, base = payload["results"]
    assert (ours["name"], base["name"]) == ("xtuner", "hf-baseline")
    batch = ours["settings"]["batch_size"]
    for result in (ours, base):
        assert result["steps"] == 2
        assert result["tokens_per_step"] == 128 * batch
        assert result["tokens_per_sec"] > 0 and result["model_tflops"] > 0
        assert result["mfu"] is None and result["peak_allocated_gib"] is None  # CPU
        assert result["compute_ms"] > 0 and result["optimizer_ms"] > 0
    assert ours["settings"]["method"] == "lora"
    assert ours["settings"]["seq_len"] == 128
    assert ours["settings"]["attention"] == "xtuner_varlen"
    assert payload["speedup"] == pytest.approx(ours["tokens_per_sec"] / base["tokens_per_sec"])


def test_benchmark_random_init_needs_only_config_json(in_tmp, capsys):
    config = LlamaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, intermediate_size=64, vocab_size=300,
                         max_position_embeddings=512)
    model_dir = in_tmp / "only_config"
    config.save_pretrained(model_dir)
    assert sorted(os.listdir(model_dir)) == ["config.json"]
    cfg = in_tmp / "cfg.py"
    cfg.write_text(
        "from torch.optim import AdamW\n"
        "from transformers import AutoModelForCausalLM\n"
        "from mmengine.optim import OptimWrapper\n"
        "from xtuner.model import SupervisedFinetune\n"
        f"max_length = 96\n"
        "model = dict(type=SupervisedFinetune, use_varlen_attn=True, llm=dict(\n"
        "    type=AutoModelForCausalLM.from_pretrained,\n"
        f"    pretrained_model_name_or_path={str(model_dir)!r}))\n"
        "train_dataloader = dict(batch_size=1, dataset=None)\n"
        "train_cfg = dict(max_epochs=1)\n"
        "optim_wrapper = dict(type=OptimWrapper, optimizer=dict(type=AdamW, lr=1e-3))\n")
    code, out, err = _run(["benchmark", str(cfg), "--random-init", "--steps", "2",
                           "--warmup", "1", "--work-dir", str(in_tmp / "wd")], capsys)
    assert code == 0, err
    built = [d for d in os.listdir(in_tmp / "wd") if d.startswith("random_init_")]
    assert len(built) == 1
    weights = AutoModelForCausalLM.from_pretrained(in_tmp / "wd" / built[0])
    assert weights.config.vocab_size == 300
    assert AutoConfig.from_pretrained(model_dir).hidden_size == 32
    assert "tokens/s per GPU" in out


@pytest.mark.parametrize("argv,message", [
    (["--sample-len", "64:16"], "MIN <= MAX"),
    (["--steps", "0"], "at least 1"),
    (["--baseline", "--deepspeed", "deepspeed_zero2"], "--baseline runs on one GPU"),
    (["--warmup", "-1"], "must be 0 or more"),
    (["--cfg-options", "model.llm.pretrained_model_name_or_path=/no/such/model"],
     "cannot read the model config of '/no/such/model'"),
])
def test_benchmark_usage_errors(in_tmp, capsys, argv, message):
    code, out, err = _run(["benchmark", "demo_tiny_full_colorist_e40", *argv], capsys)
    assert code == 2
    assert message in err
    assert "Traceback" not in err


def test_baseline_keeps_packed_samples_apart(in_tmp):
    """The plain loop relies on transformers building a block-diagonal mask from the packed
    position ids: a packed sample's logits equal the sample run alone."""
    from xtuner.benchmark.baseline import _build
    from xtuner.engine.config import load_config
    from xtuner.utils.paths import resolve_config

    cfg = load_config(resolve_config("demo_tiny_full_colorist_e40"))
    model = _build(cfg).eval()
    ids = torch.randint(5, 200, (1, 40), generator=torch.Generator().manual_seed(0))
    positions = torch.cat([torch.arange(15), torch.arange(25)])[None]
    with torch.no_grad():
        packed = model(input_ids=ids, position_ids=positions).logits[0, 15:]
        alone = model(input_ids=ids[:, 15:]).logits[0]
    torch.testing.assert_close(packed, alone, rtol=1e-4, atol=1e-4)


def test_synthetic_rows_with_images_count_each_image_as_its_features():
    """LLaVA: each sample opens with one image placeholder; the row's length as the LLM sees
    it (images expanded) is ``max_length``, and ThroughputHook counts it that way."""
    import torch

    from xtuner.dataset.collate_fns import default_collate_fn
    from xtuner.engine.hooks.throughput_hook import ThroughputHook
    from xtuner.utils.constants import IMAGE_TOKEN_INDEX

    data = SyntheticPackedDataset(vocab_size=50, max_length=400, num_rows=8,
                                  sample_lengths=(20, 80), image_tokens=16, image_size=8)
    assert all(min(data.sample_lengths_of(i)) >= 18 for i in range(8))  # room for an image
    row = data[0]
    images = row["input_ids"].count(IMAGE_TOKEN_INDEX)
    assert images == len(row["cumulative_len"]) - 1 == row["pixel_values"].shape[0]
    assert len(row["input_ids"]) + 15 * images == 400
    assert row["labels"][1] == IGNORE
    batch = default_collate_fn([row], use_varlen_attn=True, return_hf_format=True)
    assert sum(ThroughputHook.sample_lengths(batch, tokens_per_image=16)) == 400
    assert ThroughputHook.sample_lengths(batch, 16) == data.sample_lengths_of(0)
    assert torch.equal(batch["pixel_values"], row["pixel_values"])


def test_random_init_builds_on_the_cpu_when_the_gpu_is_too_small(tmp_path, monkeypatch):
    """An 8 GB card cannot hold the 16-bit 8B model its QLoRA job loads 4-bit: the random
    weights are then drawn on the CPU, in bf16, and the folder loads as before."""
    import transformers

    from xtuner.benchmark.setup import make_random_init_model

    config = LlamaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, intermediate_size=64, vocab_size=300)
    config.save_pretrained(tmp_path / "arch")
    build = transformers.AutoModelForCausalLM.from_config
    calls = []

    def from_config(*args, **kwargs):  # the first call is the GPU's
        calls.append(kwargs["dtype"])
        if len(calls) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory (the test's small GPU)")
        return build(*args, **kwargs)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_config", from_config)
    path = make_random_init_model(str(tmp_path / "arch"), str(tmp_path / "cache"))
    assert calls == [torch.bfloat16, torch.bfloat16]
    monkeypatch.undo()
    model = AutoModelForCausalLM.from_pretrained(path)
    assert model.config.vocab_size == 300
    assert model.config.dtype == torch.bfloat16
