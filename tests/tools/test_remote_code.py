"""No model folder's own Python code runs unless the user passes ``--trust-remote-code``.

The model folder here is the shipped tiny demo model with an ``auto_map`` naming a
``configuration_marker.py`` whose import writes a marker file: the marker tells whether the
folder's code ran.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from mmengine.config import Config

from xtuner.demo import TINY_LLM_PATH
from xtuner.entry_point import main as xtuner_main
from xtuner.utils.remote_code import (
    RemoteCodeError,
    remote_code_errors,
    set_trust_remote_code,
)

CONFIGURATION = '''
import pathlib
pathlib.Path({marker!r}).write_text("ran")
from transformers import LlamaConfig


class MarkerConfig(LlamaConfig):
    model_type = "xtuner_marker_llama"
'''

MODELING = '''
from transformers import LlamaForCausalLM

from .configuration_marker import MarkerConfig


class MarkerForCausalLM(LlamaForCausalLM):
    config_class = MarkerConfig
'''


def make_remote_code_model(root: Path) -> tuple[Path, Path]:
    """A model folder that needs its own code; returns ``(folder, marker file)``."""
    folder, marker = root / "remote_model", root / "MARKER"
    shutil.copytree(TINY_LLM_PATH, folder)
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "xtuner_marker_llama"
    config["auto_map"] = {"AutoConfig": "configuration_marker.MarkerConfig",
                          "AutoModelForCausalLM": "modeling_marker.MarkerForCausalLM"}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "configuration_marker.py").write_text(CONFIGURATION.format(marker=str(marker)))
    (folder / "modeling_marker.py").write_text(MODELING)
    return folder, marker


@pytest.fixture
def remote_model(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("XTUNER_DEBUG", raising=False)
    return make_remote_code_model(tmp_path)


def _error_lines(capsys, prog: str) -> list[str]:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.startswith(f"xtuner {prog}: error:")]


def test_chat_refuses_the_folders_code_in_one_line(remote_model, capsys):
    folder, marker = remote_model
    assert xtuner_main(["chat", str(folder), "--prompt", "hi", "--max-new-tokens", "2"]) == 2
    assert not marker.exists()
    lines = _error_lines(capsys, "chat")
    assert lines == [(f"xtuner chat: error: model '{folder}' ships its own Python code (an "
                     "'auto_map' in its config), which runs only when allowed: pass "
                     "--trust-remote-code if you trust it")]


def test_chat_runs_the_folders_code_when_allowed(remote_model, capsys):
    folder, marker = remote_model
    assert xtuner_main(["chat", str(folder), "--prompt", "hi", "--max-new-tokens", "2",
                        "--temperature", "0", "--trust-remote-code"]) == 0
    assert marker.read_text() == "ran"


def test_merge_refuses_the_base_models_code(remote_model, tmp_path, capsys):
    folder, marker = remote_model
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    code = xtuner_main(["convert", "merge", str(folder), str(adapter), str(tmp_path / "out")])
    assert code == 2
    assert not marker.exists()
    assert not (tmp_path / "out").exists()
    [line] = _error_lines(capsys, "convert merge")
    assert f"base model {folder} ships its own Python code" in line
    assert line.endswith("pass --trust-remote-code if you trust it")


def test_train_refuses_the_models_code_and_logs_why(remote_model, tmp_path, capsys):
    folder, marker = remote_model
    work_dir = tmp_path / "work"
    code = xtuner_main([
        "train", "demo_tiny_full_colorist_e40", "--work-dir", str(work_dir), "--cfg-options",
        f"model.llm.pretrained_model_name_or_path={folder}"])
    assert code == 2
    assert not marker.exists()
    [line] = _error_lines(capsys, "train")
    assert "ships its own Python code" in line and "--trust-remote-code" in line
    # The run's own log file ends with the same line.
    [log] = work_dir.glob("*/*.log")
    assert log.read_text().rstrip().splitlines()[-1].endswith(line)


def test_config_flags_are_kept_or_made_explicit():
    cfg = Config(dict(
        tokenizer=dict(type="AutoTokenizer.from_pretrained", pretrained_model_name_or_path="a"),
        model=dict(llm=dict(type="AutoModelForCausalLM.from_pretrained",
                            pretrained_model_name_or_path="a", trust_remote_code=True)),
        other=dict(type="something", pretrained_model_name_or_path="a")))
    assert set_trust_remote_code(cfg, allow=False) == 2
    # Unset becomes an explicit False (no terminal prompt); the config's own True stays.
    assert cfg.tokenizer.trust_remote_code is False
    assert cfg.model.llm.trust_remote_code is True
    assert "trust_remote_code" not in cfg.other  # not a from_pretrained call
    set_trust_remote_code(cfg, allow=True)
    assert cfg.tokenizer.trust_remote_code is True


def test_other_value_errors_pass_through():
    with pytest.raises(ValueError, match="unrelated"), remote_code_errors("m"):
        raise ValueError("unrelated")
    with pytest.raises(RemoteCodeError, match="^m ships its own Python code"):
        with remote_code_errors("m"):
            raise ValueError("... Please pass the argument `trust_remote_code=True` ...")


def test_pth_to_hf_refuses_the_models_code(remote_model, tmp_path, capsys):
    import torch

    folder, marker = remote_model
    pth = tmp_path / "iter_1.pth"
    torch.save({"meta": {}, "state_dict": {"llm.lm_head.weight": torch.zeros(1)}}, pth)
    code = xtuner_main(["convert", "pth_to_hf", "demo_tiny_full_colorist_e40", str(pth),
                        str(tmp_path / "hf"), "--cfg-options",
                        f"model.llm.pretrained_model_name_or_path={folder}"])
    assert code == 2
    assert not marker.exists()
    assert not (tmp_path / "hf").exists()
    [line] = _error_lines(capsys, "convert pth_to_hf")
    assert "demo_tiny_full_colorist_e40.py ships its own Python code" in line
    assert "--trust-remote-code" in line
