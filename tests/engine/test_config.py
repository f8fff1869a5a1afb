"""Loading, overriding (``--cfg-options``) and flattening configs."""
from __future__ import annotations

import re
import textwrap

import pytest
from mmengine.config import Config

from xtuner.engine.config import (
    flatten_config,
    inline_config,
    load_config,
    merge_cfg_options,
)
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


def test_runner_dict_without_type_takes_its_builders_arguments():
    """``log_processor`` has no ``type``: mmengine builds it with ``LogProcessor``, so that
    class's arguments may be added, and anything else is refused naming it."""
    cfg = _small_cfg()
    cfg.log_processor = dict(by_epoch=False)
    assert merge_cfg_options(cfg, {"log_processor.window_size": 1}) == []
    assert cfg.log_processor.window_size == 1
    with pytest.raises(ConfigError, match="LogProcessor takes no argument 'window_sise' "
                                          r"\(did you mean 'window_size'\?\)"):
        merge_cfg_options(cfg, {"log_processor.window_sise": 1})


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


def test_settings_copied_from_a_base_are_an_error_naming_the_nested_keys():
    cfg = _small_cfg()
    with pytest.raises(ConfigError) as info:
        merge_cfg_options(cfg, {"lr": 1e-5})
    assert str(info.value) == (
        "--cfg-options lr: 'lr' was copied into the dicts when the config was read, so it "
        "would not reach the run; override optim_wrapper.optimizer.lr instead (or `xtuner "
        "copy-cfg` the config and edit it)")
    assert cfg.lr == 1e-3  # nothing changed


def test_settings_of_the_inheriting_demo_are_an_error():
    cfg = load_config(resolve_config("demo_tiny_lora_colorist_e40"))
    with pytest.raises(ConfigError, match=r"^--cfg-options max_epochs: 'max_epochs' of "
                       r"demo_tiny_lora_colorist_e40.py is set in a base config .* override "
                       r"param_scheduler.1.end, train_cfg.max_epochs instead"):
        merge_cfg_options(cfg, {"max_epochs": 1})


def test_settings_of_a_self_contained_config_reach_every_dict():
    cfg = load_config(resolve_config("demo_tiny_full_colorist_e40"))
    notes = merge_cfg_options(cfg, {"max_length": 128, "max_epochs": 4, "data_path": "d.jsonl"})
    assert notes == [
        "max_length=128 reaches train_dataset.max_length, train_dataloader.dataset.max_length",
        ("max_epochs=4 reaches param_scheduler.0.end, param_scheduler.1.begin, "
         "param_scheduler.1.end, train_cfg.max_epochs"),
        ("data_path='d.jsonl' reaches train_dataset.dataset.data_files.train, "
         "train_dataloader.dataset.dataset.data_files.train"),
    ]
    # Item access: attribute access would build (import) the config's lazy objects.
    raw = cfg._cfg_dict
    assert raw["train_dataloader"]["dataset"]["max_length"] == 128
    assert raw["train_cfg"]["max_epochs"] == 4 and raw["param_scheduler"][1]["end"] == 4
    assert raw["param_scheduler"][0]["end"] == pytest.approx(0.12)
    assert cfg.filename == str(resolve_config("demo_tiny_full_colorist_e40"))


def test_settings_of_a_catalog_leaf_are_rendered_again():
    cfg = load_config(resolve_config("qwen3_8b_qlora_alpaca_e3"))
    notes = merge_cfg_options(cfg, {"lr": 1e-5, "train_dataloader.batch_size": 2})
    assert notes == ["lr=1e-05 reaches optim_wrapper.optimizer.lr"]
    raw = cfg._cfg_dict
    assert raw["optim_wrapper"]["optimizer"]["lr"] == 1e-5
    assert raw["train_dataloader"]["batch_size"] == 2


def test_a_setting_no_dict_uses_is_an_error(tmp_path):
    path = _write(tmp_path / "c.py", """\
        lr = 1e-3
        unused = 3
        optim_wrapper = dict(optimizer=dict(lr=lr))
        """)
    cfg = load_config(path)
    with pytest.raises(ConfigError, match=r"^--cfg-options unused: no dict of c.py uses "
                       r"'unused', so it would not reach the run; no other key"):
        merge_cfg_options(cfg, {"unused": 4})


def test_runner_keys_are_merged_directly():
    cfg = load_config(resolve_config("demo_tiny_full_colorist_e40"))
    assert merge_cfg_options(cfg, {"load_from": "x.pth", "log_level": "DEBUG"}) == []
    assert cfg.load_from == "x.pth" and cfg.log_level == "DEBUG"


@pytest.mark.parametrize("key, value, expected", [
    ("train_cfg.max_epochs", "1x", "expected a number (the config has 40)"),
    ("train_dataloader.batch_size", 1.5, "expected a whole number (the config has 2)"),
    ("optim_wrapper.optimizer.lr", "fast", "expected a number (the config has 0.003)"),
    ("pack_to_max_length", 1, "expected True or False (the config has True)"),
    ("SYSTEM", 3, "expected a string (the config has '')"),
])
def test_a_value_of_the_wrong_kind_is_one_error(key, value, expected):
    cfg = load_config(resolve_config("demo_tiny_full_colorist_e40"))
    with pytest.raises(ConfigError, match=r"^--cfg-options " + re.escape(
            f"{key}={value!r}: {expected}")):
        merge_cfg_options(cfg, {key: value})


def test_auto_switches_take_true_or_false_and_back():
    """``use_activation_checkpointing``/``use_liger_kernel`` take True, False or 'auto'."""
    cfg = load_config(resolve_config("benchmark_w2_llama3_8b_qlora_2k"))
    assert cfg.model.use_activation_checkpointing == "auto"
    merge_cfg_options(cfg, {"model.use_activation_checkpointing": True})
    assert cfg.model.use_activation_checkpointing is True
    merge_cfg_options(cfg, {"model.use_activation_checkpointing": "auto"})
    assert cfg.model.use_activation_checkpointing == "auto"
    with pytest.raises(ConfigError, match="expected a string"):
        merge_cfg_options(cfg, {"model.use_activation_checkpointing": 3})


def test_fractional_epochs_are_allowed():
    cfg = load_config(resolve_config("demo_tiny_full_colorist_e40"))
    merge_cfg_options(cfg, {"train_cfg.max_epochs": 0.5})
    assert cfg.train_cfg.max_epochs == 0.5 and cfg.param_scheduler[1].end == 0.5


def test_a_float_may_replace_an_int_setting():
    cfg = _small_cfg()
    merge_cfg_options(cfg, {"optim_wrapper.optimizer.lr": 1, "param_scheduler.1.eta_min": 1})
    assert cfg.optim_wrapper.optimizer.lr == 1


def test_changing_max_epochs_stretches_the_lr_schedule():
    cfg = load_config(resolve_config("qwen3_8b_qlora_alpaca_e3"))
    notes = merge_cfg_options(cfg, {"train_cfg.max_epochs": 1})
    assert notes == [("train_cfg.max_epochs 3->1: param_scheduler stretched to match (LinearLR "
                     "end 0.09->0.03; CosineAnnealingLR begin 0.09->0.03, end 3->1)")]
    assert [(s.begin, s.end) for s in cfg.param_scheduler] == [(0, 0.03), (0.03, 1)]


def test_changing_max_iters_stretches_an_iteration_schedule():
    cfg = Config(dict(train_cfg=dict(type="TrainLoop", max_iters=100),
                      param_scheduler=[dict(type="LinearLR", by_epoch=False, begin=0, end=10),
                                       dict(type="CosineAnnealingLR", by_epoch=False, begin=10,
                                            end=100)]))
    notes = merge_cfg_options(cfg, {"train_cfg.max_iters": 50})
    assert notes == [("train_cfg.max_iters 100->50: param_scheduler stretched to match (LinearLR "
                     "end 10->5; CosineAnnealingLR begin 10->5, end 100->50)")]


def test_an_explicit_schedule_is_left_alone():
    cfg = load_config(resolve_config("qwen3_8b_qlora_alpaca_e3"))
    assert merge_cfg_options(cfg, {"train_cfg.max_epochs": 1,
                                   "param_scheduler.1.end": 2}) == []
    assert cfg.param_scheduler[1].end == 2 and cfg.param_scheduler[0].end == pytest.approx(0.09)


def test_max_iters_on_an_epoch_schedule_says_it_was_left_alone():
    cfg = load_config(resolve_config("qwen3_8b_qlora_alpaca_e3"))
    notes = merge_cfg_options(cfg, {"train_cfg.max_iters": 5})
    assert notes == ["train_cfg.max_iters=5 replaces the config's train_cfg.max_epochs=3",
                     ("param_scheduler was left as it is: it counts epochs (up to 3) while "
                      "train_cfg now sets max_iters=5")]
    assert cfg.train_cfg.max_iters == 5 and "max_epochs" not in cfg.train_cfg


def test_max_epochs_replaces_the_configs_max_iters():
    """The loop takes one length: the one given replaces the config's other one."""
    cfg = Config(dict(train_cfg=dict(type="xtuner.engine.runner.TrainLoop", max_iters=100)))
    notes = merge_cfg_options(cfg, {"train_cfg.max_epochs": 2})
    assert notes == ["train_cfg.max_epochs=2 replaces the config's train_cfg.max_iters=100"]
    assert dict(cfg.train_cfg) == dict(type="xtuner.engine.runner.TrainLoop", max_epochs=2)


def test_settings_note_with_demo_list_path():
    cfg = load_config(resolve_config("demo_tiny_full_colorist_e40"))
    assert merge_cfg_options(cfg, {"custom_hooks.1.max_new_tokens": 2}) == []
    assert cfg._cfg_dict["custom_hooks"][1]["max_new_tokens"] == 2


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


def test_flatten_config_resolves_base_files(tmp_path, monkeypatch):
    root = tmp_path / "configs"
    (root / "_base_").mkdir(parents=True)
    _write(root / "_base_" / "base.py", """\
        lr = 1e-3
        max_length = 64
        optim_wrapper = dict(type='OptimWrapper', optimizer=dict(lr=lr))
        """)
    _write(root / "leaf.py", """\
        _base_ = ['./_base_/base.py']
        lr = 5e-4
        """)
    (tmp_path / "out").mkdir()
    target = flatten_config(root / "leaf.py", tmp_path / "out" / "leaf_copy.py")
    assert target == tmp_path / "out" / "leaf_copy.py"
    text = target.read_text()
    assert "_base_" not in text
    assert text.startswith("# leaf.py with its bases resolved: each value sits in the dict")
    # The base folder is gone, and the copy is read from elsewhere: it must stand alone.
    (root / "_base_" / "base.py").unlink()
    monkeypatch.chdir(tmp_path / "out")
    copy = Config.fromfile(str(target))
    # No stale Settings: `lr = 5e-4` would suggest a value the optimizer never gets.
    assert "lr" not in copy and "max_length" not in copy
    assert copy.optim_wrapper.optimizer.lr == 1e-3  # the value the base computed


def test_inline_config_keeps_the_settings_that_drive_the_dicts(tmp_path):
    root = tmp_path / "configs"
    root.mkdir()
    _write(root / "base.py", """\
        from torch.optim import AdamW

        lr = 1e-3
        optim_wrapper = dict(optimizer=dict(type=AdamW, lr=lr))
        """)
    _write(root / "leaf.py", """\
        # My leaf.
        from mmengine.config import read_base
        from torch.optim import SGD

        with read_base():
            from .base import *

        # Plain SGD.
        optim_wrapper.optimizer.update(type=SGD)
        """)
    text = inline_config(root / "leaf.py")
    assert text.splitlines()[:2] == ["# My leaf.",
                                     "# It is base (below) with the changes marked '# leaf:'."]
    assert "from torch.optim import SGD, AdamW" in text
    assert text.rstrip().endswith("# leaf:\n# Plain SGD.\noptim_wrapper['optimizer']."
                                  "update(type=SGD)")
    copy = tmp_path / "copy.py"
    copy.write_text(text.replace("lr = 1e-3", "lr = 0.5"))
    cfg = load_config(copy)
    assert cfg.optim_wrapper.optimizer.lr == 0.5
    assert cfg.optim_wrapper.optimizer.type.__name__ == "SGD"


# --------------------------------------------------------------------------- xtuner train CLI
@pytest.mark.parametrize("option, message", [
    ("max_epochs=1", ("--cfg-options max_epochs: 'max_epochs' of demo_tiny_lora_colorist_e40.py "
                      "is set in a base config and was copied into the dicts when the config "
                      "was read, so it would not reach the run; override param_scheduler.1.end, "
                      "train_cfg.max_epochs instead (or `xtuner copy-cfg` the config and edit "
                      "it)")),
    ("train_cfg.max_epochs=1x", ("--cfg-options train_cfg.max_epochs='1x': expected a number "
                                 "(the config has 40)")),
])
def test_train_refuses_an_option_that_would_not_reach_the_run(option, message, tmp_path,
                                                               capsys):
    from xtuner.entry_point import main

    code = main(["train", "demo_tiny_lora_colorist_e40", "--work-dir", str(tmp_path / "w"),
                 "--cfg-options", option])
    assert code == 2
    assert capsys.readouterr().err.splitlines() == [f"xtuner train: error: {message}"]
    assert not (tmp_path / "w").exists()


def test_inline_config_keeps_a_rebound_setting_as_ineffective_as_it_was(tmp_path):
    root = tmp_path / "configs"
    root.mkdir()
    _write(root / "base.py", """\
        lr = 1e-3
        optim_wrapper = dict(optimizer=dict(lr=lr))
        """)
    _write(root / "leaf.py", """\
        from mmengine.config import read_base

        with read_base():
            from .base import *

        lr = 5e-4
        """)
    text = inline_config(root / "leaf.py")
    assert text.rstrip().endswith("# leaf (set after the dicts were built, so it changes only "
                                  "this name):\nlr = 5e-4")
    copy = tmp_path / "copy.py"
    copy.write_text(text)
    original, copied = load_config(root / "leaf.py"), load_config(copy)
    assert (copied.lr, copied.optim_wrapper.optimizer.lr) == (5e-4, 1e-3)
    assert (original.lr, original.optim_wrapper.optimizer.lr) == (5e-4, 1e-3)
