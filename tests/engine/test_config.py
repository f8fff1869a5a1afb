"""Loading, overriding (``--cfg-options``) and flattening configs."""
from __future__ import annotations

import textwrap

import pytest
from mmengine.config import Config

from xtuner.engine.config import flatten_config, load_config, merge_cfg_options
from xtuner.utils.errors import ConfigError
from xtuner.utils.paths import resolve_config


def _small_cfg() -> Config:
    return Config(dict(
        lr=1e-3,
        batch_size=2,
        save_total_limit=2,
        optim_wrapper=dict(type="OptimWrapper", optimizer=dict(type="AdamW", lr=1e-3)),
        train_dataloader=dict(batch_size=2, num_workers=0,
                              dataset=dict(type="Dataset", max_length=64)),
        param_scheduler=[dict(type="LinearLR", begin=0, end=3),
                         dict(type="CosineAnnealingLR", begin=3, end=30, eta_min=0.0)],
        default_hooks=dict(checkpoint=dict(type="CheckpointHook", interval=100,
                                           max_keep_ckpts=2)),
    ))  # fmt: skip


# --------------------------------------------------------------------------- merge_cfg_options


def test_nested_key_is_applied():
    cfg = _small_cfg()
    assert merge_cfg_options(cfg, {"train_dataloader.dataset.max_length": 128}) == []
    assert cfg.train_dataloader.dataset.max_length == 128
    assert cfg.train_dataloader.batch_size == 2


def test_none_or_empty_options_change_nothing():
    cfg = _small_cfg()
    before = cfg.to_dict()
    assert merge_cfg_options(cfg, None) == []
    assert merge_cfg_options(cfg, {}) == []
    assert cfg.to_dict() == before


def test_new_argument_of_a_type_dict_is_allowed():
    cfg = _small_cfg()
    assert merge_cfg_options(cfg, {"optim_wrapper.optimizer.weight_decay": 0.1}) == []
    assert cfg.optim_wrapper.optimizer.weight_decay == 0.1
    assert cfg.optim_wrapper.optimizer.lr == 1e-3


def test_unknown_key_is_rejected_with_suggestion():
    cfg = _small_cfg()
    with pytest.raises(ConfigError) as info:
        merge_cfg_options(cfg, {"train_dataloader.batch_sise": 4})
    assert str(info.value) == ("--cfg-options key 'train_dataloader.batch_sise' does not exist "
                               "in the config (did you mean 'batch_size'?)")


def test_unknown_top_level_key_is_rejected():
    cfg = _small_cfg()
    with pytest.raises(ConfigError, match="key 'lrr' does not exist in the config "
                                          r"\(did you mean 'lr'\?\)"):
        merge_cfg_options(cfg, {"lrr": 1.0})


def test_new_key_in_a_plain_dict_is_rejected():
    cfg = _small_cfg()
    with pytest.raises(ConfigError, match="'train_dataloader.shufle' does not exist"):
        merge_cfg_options(cfg, {"train_dataloader.shufle": True})


def test_a_bad_key_leaves_the_config_untouched():
    cfg = _small_cfg()
    with pytest.raises(ConfigError):
        merge_cfg_options(cfg, {"train_dataloader.batch_size": 8, "nope.x": 1})
    assert cfg.train_dataloader.batch_size == 2


def test_key_below_a_scalar_is_rejected():
    cfg = _small_cfg()
    with pytest.raises(ConfigError, match="'train_dataloader.batch_size' is not a dict"):
        merge_cfg_options(cfg, {"train_dataloader.batch_size.x": 1})


def test_list_index_path():
    cfg = _small_cfg()
    assert merge_cfg_options(cfg, {"param_scheduler.1.eta_min": 1e-5}) == []
    assert cfg.param_scheduler[1].eta_min == 1e-5
    assert cfg.param_scheduler[0].end == 3
    assert cfg.param_scheduler[1].end == 30


@pytest.mark.parametrize("key", ["param_scheduler.2.end", "param_scheduler.first.end"])
def test_bad_list_index_is_rejected(key):
    cfg = _small_cfg()
    with pytest.raises(ConfigError) as info:
        merge_cfg_options(cfg, {key: 1})
    assert str(info.value) == (f"--cfg-options key '{key}': 'param_scheduler' is a list "
                               "of 2 items")


def test_settings_override_returns_a_note():
    cfg = _small_cfg()
    notes = merge_cfg_options(cfg, {"lr": 1e-5})
    assert notes == [("'lr' is a Settings value copied into optim_wrapper.optimizer.lr when the "
                      "config was read; override those keys to change them")]
    assert cfg.lr == 1e-5
    assert cfg.optim_wrapper.optimizer.lr == 1e-3  # mmengine does not recompute it


def test_settings_note_on_the_demo_config():
    cfg = load_config(resolve_config("demo_tiny_full_colorist_e40"))
    notes = merge_cfg_options(cfg, {"max_length": 128, "train_cfg.max_epochs": 3})
    assert notes == [("'max_length' is a Settings value copied into train_dataset.max_length, "
                      "train_dataloader.dataset.max_length when the config was read; override "
                      "those keys to change them")]
    # Item access: attribute access would build (import) the config's lazy objects.
    raw = cfg._cfg_dict
    assert raw["max_length"] == 128
    assert raw["train_dataloader"]["dataset"]["max_length"] == 256
    assert raw["train_cfg"]["max_epochs"] == 3


def test_settings_note_with_demo_list_path():
    cfg = load_config(resolve_config("demo_tiny_full_colorist_e40"))
    assert merge_cfg_options(cfg, {"custom_hooks.1.max_new_tokens": 2}) == []
    assert cfg._cfg_dict["custom_hooks"][1]["max_new_tokens"] == 2


def test_settings_note_names_only_nested_copies():
    cfg = _small_cfg()
    notes = merge_cfg_options(cfg, {"batch_size": 4})
    assert len(notes) == 1
    assert "train_dataloader.batch_size" in notes[0]
    # `save_total_limit` is another top-level Settings value that happens to equal 2; a
    # top-level value is never a copy of another one.
    assert "save_total_limit" not in notes[0]


def test_typo_of_a_callable_argument_is_rejected():
    cfg = load_config(resolve_config("demo_tiny_full_colorist_e40"))
    with pytest.raises(ConfigError, match="'optim_wrapper.optimizer.lrr'"):
        merge_cfg_options(cfg, {"optim_wrapper.optimizer.lrr": 1e-5})


def test_dict_valued_top_level_key_gets_no_note():
    cfg = _small_cfg()
    assert merge_cfg_options(cfg, {"default_hooks": dict(checkpoint=None)}) == []


# --------------------------------------------------------------------------- load_config


def _write(path, text):
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_load_config_name_error_names_file_and_line(tmp_path):
    bad = _write(tmp_path / "bad_name.py", """\
        lr = 1e-3
        max_length = 64
        batch_size = undefined_setting
        """)
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert str(info.value) == (f"cannot load config {bad}:3: NameError: "
                               "name 'undefined_setting' is not defined")


def test_load_config_syntax_error_names_file_and_line(tmp_path):
    bad = _write(tmp_path / "bad_syntax.py", """\
        lr = 1e-3
        model = dict(type='x',
        batch_size = 2
        """)
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert str(info.value).startswith(f"cannot load config {bad}:2: SyntaxError")


def test_load_config_syntax_error_is_a_config_error(tmp_path):
    bad = _write(tmp_path / "bad_syntax.py", "lr = 1e-3\nmodel = dict(type='x',\n")
    with pytest.raises(ConfigError, match=r"^cannot load config .*:2: SyntaxError"):
        load_config(bad)


# --------------------------------------------------------------------------- flatten_config


def test_flatten_config_inlines_base_files(tmp_path, monkeypatch):
    root = tmp_path / "configs"
    (root / "_base_").mkdir(parents=True)
    _write(root / "_base_" / "base.py", """\
        lr = 1e-3
        max_length = 64
        optim_wrapper = dict(optimizer=dict(lr=lr))
        """)
    _write(root / "leaf.py", """\
        from mmengine.config import read_base

        with read_base():
            from ._base_.base import *

        lr = 5e-4
        """)
    (tmp_path / "out").mkdir()
    target = flatten_config(root / "leaf.py", tmp_path / "out" / "leaf_copy.py")
    assert target == tmp_path / "out" / "leaf_copy.py"
    text = target.read_text()
    assert "read_base" not in text and "_base_" not in text
    # The base folder is gone, and the copy is read from elsewhere: it must stand alone.
    (root / "_base_" / "base.py").unlink()
    monkeypatch.chdir(tmp_path / "out")
    copy = Config.fromfile(str(target))
    assert copy.lr == 5e-4
    assert copy.max_length == 64
    assert copy.optim_wrapper.optimizer.lr == 1e-3  # the value the base computed
