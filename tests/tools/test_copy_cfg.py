"""``xtuner copy-cfg``: a copy that loads anywhere and keeps every setting.

A config that inherits (the LoRA demo) is flattened; a self-contained one is copied as is.
"""
from __future__ import annotations

import contextlib
import importlib
import io
from pathlib import Path

import pytest
from mmengine.config import Config
from mmengine.config.lazy import LazyAttr, LazyObject

from xtuner.demo import COLORIST_DATA_PATH, TINY_LLM_PATH
from xtuner.entry_point import main
from xtuner.utils import PROMPT_TEMPLATE
from xtuner.utils.paths import resolve_config

DEMO = "demo_tiny_lora_colorist_e40"  # inherits from the full demo through read_base
SELF_CONTAINED = "demo_tiny_full_colorist_e40"
PLAIN = (str, int, float, bool, type(None))


@pytest.fixture(scope="module")
def copied(tmp_path_factory):
    """Run ``xtuner copy-cfg`` once; return (exit code, stdout, stderr, copy path)."""
    save_dir = tmp_path_factory.mktemp("copy") / "nested" / "dir"  # created by the tool
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["copy-cfg", DEMO, str(save_dir)])
    return code, out.getvalue(), err.getvalue(), save_dir / f"{DEMO}_copy.py"


@pytest.fixture
def copy_cfg(copied, tmp_path, monkeypatch):
    """The copy, loaded from an unrelated working directory."""
    monkeypatch.chdir(tmp_path)
    return Config.fromfile(str(copied[3]))


def _plain_leaves(node, prefix=""):
    """(dotted path, value) of every literal leaf of a raw (unbuilt) config dict."""
    if isinstance(node, (LazyObject, LazyAttr)):
        return
    if isinstance(node, dict):
        for key, value in dict.items(node):
            yield from _plain_leaves(value, f"{prefix}{key}.")
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from _plain_leaves(value, f"{prefix}{i}.")
    elif isinstance(node, PLAIN):
        yield prefix[:-1], node


def _get(node, dotted):
    for part in dotted.split("."):
        node = node[int(part)] if isinstance(node, (list, tuple)) else dict.__getitem__(node,
                                                                                        part)
    return node


def _types(node):
    if isinstance(node, dict):
        for key, value in dict.items(node):
            if key == "type":
                yield value
            yield from _types(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            yield from _types(value)


def _import_dotted(dotted: str):
    parts = dotted.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


def test_copy_cfg_reports_the_file(copied):
    code, out, err, target = copied
    assert code == 0
    # DeepSpeed, when installed, may log a line to stdout on import; ours is the last one.
    assert out.splitlines()[-1] == f"Copied {DEMO} to {target}"
    assert "Traceback" not in err
    assert target.is_file()
    assert sorted(p.name for p in target.parent.iterdir()) == [f"{DEMO}_copy.py"]


def test_copy_is_self_contained(copied):
    text = copied[3].read_text()
    assert "import" not in text  # flattened: no imports, no read_base
    assert "TINY_LLM_PATH" not in text and "PROMPT_TEMPLATE" not in text


def test_self_contained_config_is_copied_verbatim(tmp_path):
    assert main(["copy-cfg", SELF_CONTAINED, str(tmp_path)]) == 0
    copy = tmp_path / f"{SELF_CONTAINED}_copy.py"
    assert copy.read_bytes() == resolve_config(SELF_CONTAINED).read_bytes()


def test_copy_keeps_every_literal_setting(copy_cfg):
    original = Config.fromfile(str(resolve_config(DEMO)))
    leaves = list(_plain_leaves(original._cfg_dict))
    assert len(leaves) > 40
    for dotted, value in leaves:
        assert _get(copy_cfg._cfg_dict, dotted) == value, dotted


def test_copy_has_the_demo_settings(copy_cfg):
    raw = copy_cfg._cfg_dict
    assert raw["max_length"] == 256
    assert raw["lr"] == 3e-3
    assert raw["optim_wrapper"]["optimizer"]["lr"] == 3e-3
    assert tuple(raw["optim_wrapper"]["optimizer"]["betas"]) == (0.9, 0.98)
    assert raw["train_dataloader"]["batch_size"] == 2
    assert raw["train_dataloader"]["dataset"]["max_length"] == 256
    assert raw["train_cfg"]["max_epochs"] == 40
    assert raw["param_scheduler"][1]["end"] == 40
    assert raw["default_hooks"]["checkpoint"]["interval"] == 100


def test_copy_has_imported_constants_as_values(copy_cfg):
    raw = copy_cfg._cfg_dict
    qwen = dict(PROMPT_TEMPLATE.qwen_chat)
    assert dict(raw["prompt_template"]) == qwen
    assert raw["prompt_template"]["INSTRUCTION"] == (
        "<|im_start|>user\n{input}<|im_end|>\n<|im_start|>assistant\n")
    assert dict(raw["custom_hooks"][1]["prompt_template"]) == qwen
    template_fn = raw["train_dataloader"]["dataset"]["template_map_fn"]
    assert dict(template_fn["template"]) == qwen
    assert raw["pretrained_model_name_or_path"] == TINY_LLM_PATH
    assert raw["model"]["llm"]["pretrained_model_name_or_path"] == TINY_LLM_PATH
    assert Path(raw["model"]["llm"]["pretrained_model_name_or_path"], "config.json").is_file()
    data_file = raw["train_dataloader"]["dataset"]["dataset"]["data_files"]["train"]
    assert data_file == COLORIST_DATA_PATH
    assert Path(data_file).is_file()


def test_copy_types_are_importable_dotted_paths(copy_cfg):
    types = list(_types(copy_cfg._cfg_dict))
    assert "xtuner.model.SupervisedFinetune" in types
    assert "transformers.AutoModelForCausalLM.from_pretrained" in types
    for dotted in types:
        assert isinstance(dotted, str), dotted
        assert callable(_import_dotted(dotted)), dotted


def test_copy_cfg_into_a_file_path_is_a_usage_error(tmp_path, capsys):
    target = tmp_path / "a_file"
    target.write_text("")
    assert main(["copy-cfg", DEMO, str(target)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"xtuner copy-cfg: error: save_dir '{target}' exists and is not a folder"
    ]


def test_copy_cfg_unknown_name(tmp_path, capsys):
    assert main(["copy-cfg", "no_such_cfg_xyz", str(tmp_path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [("xtuner copy-cfg: error: no config file or catalog config named "
                    "'no_such_cfg_xyz'; see `xtuner list-cfg`")]
    assert list(tmp_path.iterdir()) == []
