"""``xtuner list-cfg`` and name lookup in the shipped catalog (configs and DeepSpeed JSONs)."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

import xtuner.utils.paths as paths
from xtuner.entry_point import main
from xtuner.utils.errors import ConfigError
from xtuner.utils.paths import (
    config_catalog,
    configs_dir,
    resolve_config,
    resolve_deepspeed_config,
)

DEMO = "demo_tiny_full_colorist_e40"
DEEPSPEED_STAGES = {
    "deepspeed_zero1": 1, "deepspeed_zero2": 2, "deepspeed_zero2_offload": 2,
    "deepspeed_zero3": 3, "deepspeed_zero3_offload": 3,
}  # fmt: skip


def _shipped_files() -> list[Path]:
    """Catalog entries found by walking the folder (independently of ``config_catalog``)."""
    root = configs_dir()
    return [p for p in root.rglob("*") if p.is_file() and p.suffix in (".py", ".json")
            and not any(part.startswith(("_", ".")) for part in p.relative_to(root).parts)]


# --------------------------------------------------------------------------- list-cfg


def test_list_cfg_pattern_lists_matching_names_sorted(capsys):
    assert main(["list-cfg", "-p", "demo"]) == 0
    lines = capsys.readouterr().out.splitlines()
    expected = sorted(p.stem for p in _shipped_files() if "demo" in p.stem)
    assert DEMO in lines
    assert lines == expected


def test_list_cfg_pattern_is_case_insensitive(capsys):
    assert main(["list-cfg", "--pattern", "DEMO_TINY_FULL"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        p for p in sorted(config_catalog()) if "demo_tiny_full" in p
    ]


def test_list_cfg_without_pattern_lists_everything(capsys):
    assert main(["list-cfg"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == sorted(p.stem for p in _shipped_files())
    assert set(DEEPSPEED_STAGES) <= set(lines)
    assert not any(name.startswith("_") for name in lines)


def test_list_cfg_no_match_exits_1(capsys):
    assert main(["list-cfg", "-p", "no_such_model_xyz"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "no config matches 'no_such_model_xyz'\n"


# --------------------------------------------------------------------------- the catalog


def test_catalog_names_are_unique():
    counts = Counter(p.stem for p in _shipped_files())
    assert [name for name, n in counts.items() if n > 1] == []
    assert set(config_catalog()) == set(counts)


def test_catalog_rejects_duplicate_names(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "_base_").mkdir()
    (tmp_path / "a" / "same.py").write_text("x = 1\n")
    (tmp_path / "b" / "same.py").write_text("x = 2\n")
    (tmp_path / "_base_" / "same.py").write_text("x = 3\n")  # not a catalog entry
    config_catalog.cache_clear()
    try:
        with monkeypatch.context() as m:
            m.setattr(paths, "configs_dir", lambda: tmp_path)
            with pytest.raises(ConfigError) as info:
                config_catalog()
        assert str(info.value) == (f"two catalog entries are named 'same': "
                                   f"{tmp_path / 'a' / 'same.py'} and {tmp_path / 'b' / 'same.py'}")
    finally:
        config_catalog.cache_clear()


def test_catalog_skips_base_and_private_files(tmp_path, monkeypatch):
    (tmp_path / "_base_").mkdir()
    (tmp_path / "m").mkdir()
    (tmp_path / "_base_" / "base.py").write_text("x = 1\n")
    (tmp_path / "m" / "_helper.py").write_text("x = 1\n")
    (tmp_path / "m" / "leaf.py").write_text("x = 1\n")
    (tmp_path / "m" / "notes.md").write_text("text\n")
    config_catalog.cache_clear()
    try:
        with monkeypatch.context() as m:
            m.setattr(paths, "configs_dir", lambda: tmp_path)
            assert config_catalog() == {"leaf": tmp_path / "m" / "leaf.py"}
    finally:
        config_catalog.cache_clear()


# --------------------------------------------------------------------------- resolve_config


def test_resolve_config_by_name():
    path = resolve_config(DEMO)
    assert path == configs_dir() / "demo" / f"{DEMO}.py"
    assert path.is_file()


def test_resolve_config_by_path(tmp_path, monkeypatch):
    cfg = tmp_path / "mine.py"
    cfg.write_text("lr = 1e-3\n")
    assert resolve_config(str(cfg)) == cfg.resolve()
    monkeypatch.chdir(tmp_path)
    assert resolve_config("mine.py") == cfg.resolve()  # relative to the cwd


def test_resolve_config_file_wins_over_catalog_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / DEMO).write_text("lr = 1\n")  # a file without suffix, named like the config
    assert resolve_config(DEMO) == (tmp_path / DEMO).resolve()


def test_resolve_config_missing_name_suggests_close_match():
    with pytest.raises(ConfigError) as info:
        resolve_config("demo_tiny_full_colorist_e41")
    message = str(info.value)
    assert message.startswith("no config file or catalog config named "
                              "'demo_tiny_full_colorist_e41' (did you mean "
                              f"'{DEMO}'")
    assert message.endswith("; see `xtuner list-cfg`")


def test_resolve_config_missing_path():
    with pytest.raises(ConfigError, match=r"^config file not found: nowhere/x\.py$"):
        resolve_config("nowhere/x.py")


def test_resolve_config_does_not_return_deepspeed_json():
    with pytest.raises(ConfigError, match="no config file or catalog config named "
                                          "'deepspeed_zero2'"):
        resolve_config("deepspeed_zero2")


# --------------------------------------------------------------------------- DeepSpeed configs


@pytest.mark.parametrize("name, stage", sorted(DEEPSPEED_STAGES.items()))
def test_resolve_deepspeed_config_shipped(name, stage):
    path = resolve_deepspeed_config(name)
    assert path.name == f"{name}.json"
    ds = json.loads(path.read_text())
    assert ds["zero_optimization"]["stage"] == stage
    offloaded = "offload_optimizer" in ds["zero_optimization"]
    assert offloaded == name.endswith("_offload")
    if offloaded:
        assert ds["zero_optimization"]["offload_optimizer"]["device"] == "cpu"


def test_resolve_deepspeed_config_by_path(tmp_path):
    ds = tmp_path / "my_ds.json"
    ds.write_text('{"zero_optimization": {"stage": 1}}')
    assert resolve_deepspeed_config(str(ds)) == ds.resolve()


def test_resolve_deepspeed_config_unknown_lists_choices():
    with pytest.raises(ConfigError) as info:
        resolve_deepspeed_config("deepspeed_zero4")
    message = str(info.value)
    assert message.startswith("unknown DeepSpeed config 'deepspeed_zero4' (did you mean ")
    shipped = sorted(p.stem for p in _shipped_files() if p.suffix == ".json")
    assert set(DEEPSPEED_STAGES) <= set(shipped)
    assert message.endswith("; give a JSON file or one of: " + ", ".join(shipped))


def test_resolve_deepspeed_config_rejects_python_config_name():
    with pytest.raises(ConfigError, match=f"unknown DeepSpeed config '{DEMO}'"):
        resolve_deepspeed_config(DEMO)
