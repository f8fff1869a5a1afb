"""``xtuner convert`` and ``xtuner chat`` refuse, in one line and before any work, what would
lose the user's files or give a wrong model: a SAVE_DIR that would replace an input or the
current folder, an adapter that does not fit the base, a bad ``--max-shard-size``, ``--is-clip``
on a language model, a PTH that is no checkpoint.

Everything runs on the CPU with the shipped tiny demo model and bases built here with other
shapes (no downloads).
"""
from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.tools.test_convert import FULL, LORA, _train_like, convert, one_line_error
from xtuner.demo import TINY_LLM_PATH
from xtuner.entry_point import main as xtuner
from xtuner.testing.tiny_models import build_tiny_llm


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.delenv("XTUNER_DEBUG", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def full_pth(tmp_path_factory) -> Path:
    """A checkpoint of the full fine-tuning demo config, as training writes it."""
    path = tmp_path_factory.mktemp("ckpt") / "iter_400.pth"
    _train_like(FULL, path)
    return path


@pytest.fixture(scope="module")
def adapter(tmp_path_factory) -> Path:
    """A LoRA adapter (random B, so it changes the model) for the 4-layer demo model."""
    folder = tmp_path_factory.mktemp("adapter") / "hf"
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(TINY_LLM_PATH)
    config = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(base, config).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def other_bases(tmp_path_factory) -> dict[str, str]:
    """Bases the adapter does not fit: 1 layer instead of 4, and hidden size 64 instead of
    128 (same vocabulary)."""
    root = tmp_path_factory.mktemp("bases")
    tokenizer = AutoTokenizer.from_pretrained(TINY_LLM_PATH)
    shape = dict(hidden_size=128, intermediate_size=384, num_attention_heads=4,
                 num_key_value_heads=2)
    return {
        "fewer_layers": build_tiny_llm(root / "one_layer", tokenizer, num_hidden_layers=1,
                                       **shape),
        "narrower": build_tiny_llm(root / "narrow", tokenizer, num_hidden_layers=4,
                                   hidden_size=64),
    }


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


# -- SAVE_DIR must not replace the user's files ----------------------------------------------
@pytest.mark.parametrize("save_dir, expected", [
    ("", "SAVE_DIR is empty"),
    (".", "is the current folder or one above it"),
    ("..", "is the current folder or one above it"),
    ("work_dirs", "contains PTH"),
    ("work_dirs/x", "contains PTH"),
    ("work_dirs/x/iter_400.pth", "is PTH"),
])
def test_pth_to_hf_never_replaces_inputs_or_the_current_folder(
        full_pth, tmp_path, monkeypatch, capsys, save_dir, expected):
    scratch = tmp_path / "scratch"
    (scratch / "work_dirs/x").mkdir(parents=True)
    shutil.copy(full_pth, scratch / "work_dirs/x/iter_400.pth")
    (scratch / "thesis.txt").write_text("precious")
    before = _files(tmp_path)
    monkeypatch.chdir(scratch)
    assert convert("pth_to_hf", FULL, "work_dirs/x/iter_400.pth", save_dir, "--overwrite") == 2
    line = one_line_error(capsys, "convert pth_to_hf")
    assert expected in line
    assert _files(tmp_path) == before  # nothing lost, nothing written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scratch"]


def test_pth_to_hf_refuses_a_save_dir_holding_the_config(full_pth, tmp_path, capsys):
    config = tmp_path / "cfgs" / "my_config.py"
    config.parent.mkdir()
    from xtuner.utils.paths import resolve_config

    shutil.copy(resolve_config(FULL), config)
    assert convert("pth_to_hf", config, full_pth, tmp_path / "cfgs", "--overwrite") == 2
    assert "contains the config" in one_line_error(capsys, "convert pth_to_hf")
    assert config.is_file()


def test_merge_never_replaces_base_or_adapter(adapter, tmp_path, capsys):
    base = tmp_path / "mybase"
    shutil.copytree(TINY_LLM_PATH, base)
    hfa = tmp_path / "hfa"
    shutil.copytree(adapter, hfa)
    before = _files(tmp_path)
    assert convert("merge", base, hfa, base, "--overwrite") == 2
    assert "is BASE" in one_line_error(capsys, "convert merge")
    assert convert("merge", base, hfa, hfa, "--overwrite") == 2
    assert "is ADAPTER" in one_line_error(capsys, "convert merge")
    assert convert("merge", base, hfa, tmp_path, "--overwrite") == 2
    assert "contains BASE" in one_line_error(capsys, "convert merge")
    assert _files(tmp_path) == before


def test_split_refuses_src_or_a_folder_above_it(tmp_path, capsys):
    src = tmp_path / "model"
    shutil.copytree(TINY_LLM_PATH, src)
    before = _files(tmp_path)
    assert convert("split", src, src, "--overwrite") == 2
    assert "is SRC" in one_line_error(capsys, "convert split")
    assert convert("split", src, tmp_path, "--overwrite") == 2
    assert "contains SRC" in one_line_error(capsys, "convert split")
    assert _files(tmp_path) == before


# -- adapters that do not fit the base --------------------------------------------------------
@pytest.mark.parametrize("kind, expected", [
    # The adapters of layers 1-3 (2 modules x lora_A/lora_B each) have no layer to go to.
    ("fewer_layers", ("12 adapter weights have no place in it", ".layers.1.")),
    ("narrower", ("adapter weights the model needs are missing from it or of another shape",
                  "shape (4, 64)")),
])
def test_merge_refuses_an_adapter_that_does_not_fit(adapter, other_bases, tmp_path, capsys,
                                                    kind, expected):
    out = tmp_path / "merged"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert convert("merge", other_bases[kind], adapter, out, "--device", "cpu") == 2
    # peft's own warnings, one line per weight, are folded into the error line.
    assert not [w for w in caught if "adapter keys" in str(w.message)
                or "Some weights of" in str(w.message)]
    line = one_line_error(capsys, "convert merge")
    assert f"adapter {adapter} does not fit {other_bases[kind]}" in line
    assert all(part in line for part in expected), line
    assert f"it was trained on {TINY_LLM_PATH}" in line
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == []


def test_merge_into_its_own_base_still_works(adapter, tmp_path, capsys):
    assert convert("merge", TINY_LLM_PATH, adapter, tmp_path / "m", "--device", "cpu") == 0
    assert "Parity check passed" in capsys.readouterr().out


@pytest.mark.parametrize("kind", ["fewer_layers", "narrower"])
def test_chat_refuses_an_adapter_that_does_not_fit(adapter, other_bases, capsys, kind):
    assert xtuner(["chat", other_bases[kind], "--adapter", str(adapter), "--prompt", "hi",
                   "--max-new-tokens", "2"]) == 2
    line = one_line_error(capsys, "chat")  # below the loading progress bar
    assert "does not fit" in line and f"it was trained on {TINY_LLM_PATH}" in line


# -- --max-shard-size ------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["2XB", "abc", "0GB", "2GiB"])
def test_bad_max_shard_size_is_refused_before_any_work(full_pth, adapter, tmp_path, capsys,
                                                       value):
    out = tmp_path / "out"
    assert convert("pth_to_hf", FULL, full_pth, out, "--max-shard-size", value) == 2
    line = one_line_error(capsys, "convert pth_to_hf")
    assert f"--max-shard-size: '{value}' is not a size" in line
    assert convert("merge", TINY_LLM_PATH, adapter, out, "--max-shard-size", value) == 2
    assert f"--max-shard-size: '{value}' is not a size" in one_line_error(capsys,
                                                                          "convert merge")
    assert not out.exists()


def test_max_shard_size_of_an_adapter_export_is_not_silently_ignored(tmp_path, capsys):
    pth = tmp_path / "iter_2.pth"
    _train_like(LORA, pth)
    assert convert("pth_to_hf", LORA, pth, tmp_path / "a", "--max-shard-size", "1MB",
                   "--no-verify") == 0
    printed = capsys.readouterr().out
    assert "note: --max-shard-size does not apply to a PEFT adapter" in printed
    assert (tmp_path / "a" / "adapter_model.safetensors").is_file()
    # Not given: no note.
    assert convert("pth_to_hf", LORA, pth, tmp_path / "b", "--no-verify") == 0
    assert "--max-shard-size" not in capsys.readouterr().out


# -- --is-clip, PTH that is no checkpoint -----------------------------------------------------
def test_is_clip_on_a_language_model(adapter, tmp_path, capsys):
    assert convert("merge", TINY_LLM_PATH, adapter, tmp_path / "m", "--is-clip") == 2
    line = one_line_error(capsys, "convert merge")
    assert "is not a CLIP vision model" in line and "'llama'" in line
    assert not (tmp_path / "m").exists()


def test_a_python_file_is_not_a_checkpoint(tmp_path, capsys):
    from xtuner.utils.paths import resolve_config

    assert convert("pth_to_hf", FULL, resolve_config(FULL), tmp_path / "hf") == 2
    line = one_line_error(capsys, "convert pth_to_hf")
    assert "is not a PyTorch checkpoint" in line
    assert "weights_only" not in line and "Weights only" not in line
