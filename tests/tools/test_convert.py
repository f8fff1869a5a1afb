"""``xtuner convert pth_to_hf|merge|split`` on the shipped tiny demo configs (CPU, no downloads).

Checkpoints are made the way training makes them, without training: the demo config's
``SupervisedFinetune`` is built, its trainable weights are perturbed (so a LoRA adapter changes
the logits), and ``{'meta', 'state_dict', ...}`` is written with ``torch.save`` as mmengine does.
A real DeepSpeed ZeRO-2 checkpoint directory comes from ``deepspeed.initialize`` +
``engine.save_checkpoint`` on the CPU (gloo, one rank) in a subprocess. Every conversion runs
the CLI in-process through ``xtuner.entry_point.main``.
"""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

from tests.ports import free_port
from xtuner.demo import TINY_LLM_PATH
from xtuner.entry_point import main as xtuner

FULL = "demo_tiny_full_colorist_e40"
LORA = "demo_tiny_lora_colorist_e40"
QLORA = "demo_tiny_qlora_colorist_e40"
IDS = torch.tensor([[0, 5, 17, 42, 99, 250, 3, 7, 511, 600]])


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models; extra threads only slow a busy CI machine down
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def no_debug(monkeypatch):
    monkeypatch.delenv("XTUNER_DEBUG", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@torch.no_grad()
def logits_of(model) -> torch.Tensor:
    model.eval()
    return model(input_ids=IDS, use_cache=False).logits.float()


def _train_like(config: str, path: Path, seed: int = 0):
    """Build ``config``'s model, perturb its trainable weights, save an mmengine checkpoint."""
    from xtuner.engine.config import load_config
    from xtuner.model.export import build_model
    from xtuner.utils.paths import resolve_config

    torch.manual_seed(seed)
    model = build_model(load_config(resolve_config(config)))
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
    torch.save({"meta": {"iter": 2, "seed": seed}, "state_dict": model.state_dict(),
                "message_hub": {"runtime_info": {"iter": 2}}}, path)
    return model, logits_of(model.llm)


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """``{kind: (iter_2.pth, logits of the trained model)}`` for full, lora and qlora."""
    root = tmp_path_factory.mktemp("ckpts")
    out = {}
    for kind, config in (("full", FULL), ("lora", LORA), ("qlora", QLORA)):
        path = root / f"{kind}_iter_2.pth"
        out[kind] = (path, _train_like(config, path)[1])
    return out


def convert(*args: str) -> int:
    return xtuner(["convert", *map(str, args)])


def one_line_error(capsys, prog: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if line.startswith(f"xtuner {prog}")]
    assert len(lines) == 1, err
    return lines[0]


def no_leftovers(parent: Path, name: str) -> None:
    assert not (parent / name).exists()
    assert not [p for p in parent.iterdir() if p.name.startswith(f".{name}.")]


def base_llm():
    return AutoModelForCausalLM.from_pretrained(TINY_LLM_PATH, dtype=torch.float32)


# -- pth_to_hf --------------------------------------------------------------------------------
def test_full_sharded_fp16_with_tokenizer(ckpts, tmp_path, capsys):
    pth, trained = ckpts["full"]
    out = tmp_path / "hf"
    assert convert("pth_to_hf", FULL, pth, out, "--max-shard-size", "1MB") == 0
    printed = capsys.readouterr().out
    assert "Parity check passed: max |logits difference|" in printed
    files = sorted(p.name for p in out.iterdir())
    shards = [f for f in files if f.startswith("model-") and f.endswith(".safetensors")]
    assert len(shards) >= 2 and "model.safetensors.index.json" in files
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"].values()) == set(shards)
    assert {"tokenizer.json", "tokenizer_config.json", "config.json"} <= set(files)
    assert (out / "xtuner_config.py").read_text().startswith("# Offline demo: full")
    with safe_open(str(out / shards[0]), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    config = json.loads((out / "config.json").read_text())
    assert config["dtype"] == "float16" and "xtuner" not in json.dumps(config)
    model = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32)
    torch.testing.assert_close(logits_of(model), trained, atol=2e-2, rtol=0)


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_written_files_follow_the_umask(ckpts, tmp_path, umask):
    """transformers writes weight shards through mkstemp (0600); the outputs get the modes
    every other file the user writes gets."""
    full, adapter, merged = tmp_path / "full", tmp_path / "adapter", tmp_path / "merged"
    old = os.umask(umask)
    try:
        assert convert("pth_to_hf", FULL, ckpts["full"][0], full, "--no-verify") == 0
        assert convert("pth_to_hf", LORA, ckpts["lora"][0], adapter, "--no-verify") == 0
        assert convert("merge", TINY_LLM_PATH, adapter, merged, "--no-verify") == 0
    finally:
        os.umask(old)
    for folder in (full, adapter, merged):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o777 & ~umask
        files = [p for p in folder.rglob("*") if p.is_file()]
        assert any(p.suffix == ".safetensors" for p in files)
        for path in files:
            assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path


def test_full_fp32_is_exact(ckpts, tmp_path):
    pth, trained = ckpts["full"]
    out = tmp_path / "hf32"
    assert convert("pth_to_hf", FULL, pth, out, "--fp32", "--no-verify") == 0
    model = AutoModelForCausalLM.from_pretrained(str(out))
    assert model.dtype == torch.float32
    torch.testing.assert_close(logits_of(model), trained, atol=1e-5, rtol=1e-5)


def test_lora_adapter_loads_with_plain_peft(ckpts, tmp_path):
    from peft import PeftModel

    pth, trained = ckpts["lora"]
    out = tmp_path / "adapter"
    assert convert("pth_to_hf", LORA, pth, out) == 0
    assert {"adapter_config.json", "adapter_model.safetensors",
            "xtuner_config.py"} <= {p.name for p in out.iterdir()}
    weights = load_file(str(out / "adapter_model.safetensors"))
    assert {v.dtype for v in weights.values()} == {torch.float16}
    # modules_to_save of the demo LoRA (embeddings and output head) are in the adapter.
    assert any("embed_tokens" in k for k in weights) and any("lm_head" in k for k in weights)
    model = PeftModel.from_pretrained(base_llm(), str(out))
    torch.testing.assert_close(logits_of(model), trained, atol=2e-2, rtol=0)
    assert not torch.allclose(logits_of(base_llm()), trained, atol=0.1)  # the adapter matters


def test_deepspeed_zero2_directory(tmp_path):
    """A real ZeRO-2 checkpoint directory (DeepSpeed on the CPU, gloo, one rank)."""
    pytest.importorskip("deepspeed")
    script = tmp_path / "ds_train.py"
    script.write_text(textwrap.dedent(f"""
        import importlib, os, sys
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=sys.argv[2], RANK="0",
                          LOCAL_RANK="0", WORLD_SIZE="1")
        import torch, deepspeed
        # DeepSpeed's CPU backend JIT-compiles a shared-memory all-reduce kernel (minutes)
        # that one rank never uses.
        importlib.import_module("deepspeed.comm.torch").build_shm_op = lambda: None
        from xtuner.engine.config import load_config
        from xtuner.model.export import build_model
        from xtuner.utils.paths import resolve_config
        torch.manual_seed(0)
        model = build_model(load_config(resolve_config("{LORA}"))).train()
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                      lr=1e-2)
        torch.distributed.init_process_group("gloo", rank=0, world_size=1)
        config = {{"train_micro_batch_size_per_gpu": 1, "zero_optimization": {{"stage": 2}},
                  "zero_allow_untested_optimizer": True, "steps_per_print": 10**9}}
        engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, config=config,
                                          dist_init_required=False)
        ids = torch.arange(3, 40)[None]
        for _ in range(2):
            loss = engine(dict(input_ids=ids, labels=ids), mode="loss")["loss"]
            engine.backward(loss)
            engine.step()
        # As mmengine's DeepSpeedStrategy saves (xtuner sets exclude_frozen_parameters).
        engine.save_checkpoint(sys.argv[1], tag="iter_2.pth", client_state={{"meta": {{}}}},
                               save_latest=False, exclude_frozen_parameters=True)
        with torch.no_grad():
            model.eval()
            ids = torch.tensor({IDS.tolist()})
            torch.save(model.llm(input_ids=ids, use_cache=False).logits.float(),
                       os.path.join(sys.argv[1], "logits.pt"))
        torch.distributed.destroy_process_group()
    """))
    work_dir = tmp_path / "work_dir"
    port = str(free_port())
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, str(script), str(work_dir), port], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = work_dir / "iter_2.pth"
    assert (ckpt / "mp_rank_00_model_states.pt").is_file()
    assert list(ckpt.glob("zero_pp_rank_0_mp_rank_00_optim_states.pt"))
    trained = torch.load(work_dir / "logits.pt")

    from peft import PeftModel

    out = tmp_path / "adapter"
    assert convert("pth_to_hf", LORA, ckpt, out, "--fp32") == 0
    model = PeftModel.from_pretrained(base_llm(), str(out))
    torch.testing.assert_close(logits_of(model), trained, atol=1e-4, rtol=1e-4)


# -- merge ------------------------------------------------------------------------------------
def test_merge_lora_and_qlora_adapters(ckpts, tmp_path):
    from peft import PeftModel

    for kind, config in (("lora", LORA), ("qlora", QLORA)):
        adapter = tmp_path / f"{kind}_adapter"
        # QLoRA's parity check runs the 4-bit base (bitsandbytes on the CPU).
        assert convert("pth_to_hf", config, ckpts[kind][0], adapter) == 0
        merged = tmp_path / f"{kind}_merged"
        assert convert("merge", TINY_LLM_PATH, adapter, merged, "--device", "cpu",
                       "--max-shard-size", "1MB") == 0
        assert (merged / "tokenizer.json").is_file()
        assert (merged / "model.safetensors.index.json").is_file()
        expected = logits_of(PeftModel.from_pretrained(base_llm(), str(adapter)))
        got = logits_of(AutoModelForCausalLM.from_pretrained(str(merged)))
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_merge_clip_vision_adapter(tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(0)
    base_dir, adapter = tmp_path / "clip", tmp_path / "clip_adapter"
    config = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=4, image_size=32, patch_size=8)
    CLIPVisionModel(config).save_pretrained(str(base_dir))
    lora = get_peft_model(CLIPVisionModel.from_pretrained(str(base_dir)),
                          LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.1)
    lora.save_pretrained(str(adapter))
    merged = tmp_path / "clip_merged"
    assert convert("merge", base_dir, adapter, merged, "--is-clip") == 0
    pixels = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        expected = lora.eval()(pixel_values=pixels).last_hidden_state
        got = CLIPVisionModel.from_pretrained(str(merged)).eval()(
            pixel_values=pixels).last_hidden_state
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


# -- split ------------------------------------------------------------------------------------
@pytest.mark.parametrize("safe", [True, False], ids=["safetensors", "bin"])
def test_split_one_tensor_per_shard(ckpts, tmp_path, safe):
    flag = "--safe-serialization" if safe else "--no-safe-serialization"
    src, dst = tmp_path / "src", tmp_path / "dst"
    assert convert("pth_to_hf", FULL, ckpts["full"][0], src, flag, "--no-verify") == 0
    index_name = "model.safetensors.index.json" if safe else "pytorch_model.bin.index.json"
    assert (src / ("model.safetensors" if safe else "pytorch_model.bin")).is_file()
    assert convert("split", src, dst) == 0
    index = json.loads((dst / index_name).read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) == len(index["weight_map"]) > 10
    for shard in shards[:3]:
        tensors = load_file(str(dst / shard)) if safe else torch.load(dst / shard)
        assert len(tensors) == 1
    assert (dst / "tokenizer.json").is_file() and (dst / "xtuner_config.py").is_file()
    before = logits_of(AutoModelForCausalLM.from_pretrained(str(src)))
    after = logits_of(AutoModelForCausalLM.from_pretrained(str(dst)))
    torch.testing.assert_close(after, before, atol=0, rtol=0)


# -- failures -----------------------------------------------------------------------------------
def test_tampered_weights_fail_the_parity_check(ckpts, tmp_path, capsys, monkeypatch):
    from xtuner.model.sft import SupervisedFinetune

    to_hf = SupervisedFinetune.to_hf

    def tampering_to_hf(self, cfg, save_dir, *args, **kwargs):
        to_hf(self, cfg, save_dir, *args, **kwargs)
        weights = Path(save_dir) / "model.safetensors"
        state = load_file(str(weights))
        state["lm_head.weight"][0] += 1.0  # one row of the output head
        save_file(state, str(weights), metadata={"format": "pt"})

    monkeypatch.setattr(SupervisedFinetune, "to_hf", tampering_to_hf)
    assert convert("pth_to_hf", FULL, ckpts["full"][0], tmp_path / "hf") == 2
    line = one_line_error(capsys, "convert pth_to_hf")
    assert "parity check failed" in line and "differ from the source by up to" in line
    no_leftovers(tmp_path, "hf")


def test_the_trained_model_is_freed_before_the_written_one_loads(ckpts, tmp_path, monkeypatch):
    """The parity check loads the written model only once nothing keeps the trained one."""
    import transformers

    from tests.trained_model_watch import watch_trained_model_at_load

    alive_at_load = watch_trained_model_at_load(monkeypatch, transformers.AutoModelForCausalLM)
    assert convert("pth_to_hf", FULL, ckpts["full"][0], tmp_path / "hf") == 0
    assert alive_at_load == [False]


def test_bad_inputs_one_line_exit_2_nothing_written(ckpts, tmp_path, capsys):
    out = tmp_path / "out"
    # A LoRA checkpoint with the full fine-tuning config.
    assert convert("pth_to_hf", FULL, ckpts["lora"][0], out) == 2
    line = one_line_error(capsys, "convert pth_to_hf")
    assert "does not match the full fine-tuning model" in line and "unexpected" in line
    no_leftovers(tmp_path, "out")
    # Not a checkpoint at all; and no checkpoint.
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    assert convert("pth_to_hf", FULL, garbage, out) == 2
    assert "is not a" in one_line_error(capsys, "convert pth_to_hf")
    assert convert("pth_to_hf", FULL, tmp_path / "missing.pth", out) == 2
    assert "checkpoint not found" in one_line_error(capsys, "convert pth_to_hf")
    # A directory that is not a DeepSpeed checkpoint.
    (tmp_path / "iter_9.pth").mkdir()
    assert convert("pth_to_hf", FULL, tmp_path / "iter_9.pth", out) == 2
    assert "_model_states.pt" in one_line_error(capsys, "convert pth_to_hf")
    no_leftovers(tmp_path, "out")

    # merge: no adapter_config.json; unknown device.
    not_adapter = tmp_path / "not_adapter"
    not_adapter.mkdir()
    assert convert("merge", TINY_LLM_PATH, not_adapter, out) == 2
    assert "no adapter_config.json" in one_line_error(capsys, "convert merge")
    assert convert("merge", TINY_LLM_PATH, not_adapter, out, "--device", "tpu") == 2
    assert "invalid choice: 'tpu'" in one_line_error(capsys, "convert merge")
    # split: no weights.
    assert convert("split", not_adapter, out) == 2
    assert "holds no model weights" in one_line_error(capsys, "convert split")
    no_leftovers(tmp_path, "out")


def test_existing_save_dir_needs_overwrite(ckpts, tmp_path, capsys):
    out = tmp_path / "hf"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    pth = ckpts["lora"][0]
    assert convert("pth_to_hf", LORA, pth, out, "--no-verify") == 2
    assert "already exists and is not empty" in one_line_error(capsys, "convert pth_to_hf")
    assert (out / "keep.txt").is_file()
    assert convert("pth_to_hf", LORA, pth, out, "--no-verify", "--overwrite") == 0
    assert not (out / "keep.txt").exists() and (out / "adapter_config.json").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".hf.")]


def test_pickled_objects_need_trust_checkpoint(ckpts, tmp_path, capsys):
    """A checkpoint holding arbitrary pickled objects (e.g. stock mmengine's HistoryBuffer) is
    refused by torch.load(weights_only=True) unless the user vouches for it."""
    import argparse

    pth = tmp_path / "iter_2.pth"
    ckpt = torch.load(ckpts["lora"][0], weights_only=True)
    ckpt["message_hub"] = argparse.Namespace(iter=2)
    torch.save(ckpt, pth)
    assert convert("pth_to_hf", LORA, pth, tmp_path / "a", "--no-verify") == 2
    assert "--trust-checkpoint" in one_line_error(capsys, "convert pth_to_hf")
    no_leftovers(tmp_path, "a")
    assert convert("pth_to_hf", LORA, pth, tmp_path / "a", "--no-verify",
                   "--trust-checkpoint") == 0
