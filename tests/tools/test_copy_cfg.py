"""``xtuner copy-cfg``: one self-contained file in v0's five sections whose Settings drive what
runs (catalog leaves rendered, ``read_base`` demos inlined), ``--keep-bases``, and no
overwriting without ``--force``."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from xtuner.demo import COLORIST_DATA_PATH
from xtuner.engine.config import config_data, load_config
from xtuner.entry_point import main
from xtuner.utils.paths import resolve_config

LEAF = "qwen2_5_0_5b_instruct_full_custom_sft_e1"  # local data: data_path can point at a file
DEMO = "demo_tiny_lora_colorist_e40"  # inherits from the full demo through read_base
DEMO_QLORA = "demo_tiny_qlora_colorist_e40"  # two levels of read_base
SELF_CONTAINED = "demo_tiny_full_colorist_e40"
SECTIONS = ["PART 1  Settings", "PART 2  Model & Tokenizer", "PART 3  Dataset & Dataloader",
            "PART 4  Scheduler & Optimizer", "PART 5  Runtime"]


def _effective(path) -> str:
    raw = config_data(load_config(path)._cfg_dict)
    raw.pop("read_base", None)  # mmengine keeps the inheriting file's import of it
    return json.dumps(raw, sort_keys=True)


def _copy(name, save_dir, *flags) -> Path:
    assert main(["copy-cfg", name, str(save_dir), *flags]) == 0
    return Path(save_dir) / f"{name}_copy.py"


def _set(text: str, key: str, value) -> str:
    """Edit the one Settings line ``key = ...`` of a copied config."""
    new, count = re.subn(rf"^{key} = .*$", f"{key} = {value!r}", text, flags=re.M)
    assert count == 1, key
    return new


@pytest.mark.parametrize("name", [LEAF, "gemma2_9b_it_qlora_custom_pretrain_e1",
                                  "internlm2_5_chat_7b_lora_alpaca_e3", DEMO, DEMO_QLORA])
def test_copy_is_one_file_that_runs_as_the_original(name, tmp_path, monkeypatch, capsys):
    copy = _copy(name, tmp_path / "nested" / "dir")  # the folder is created
    assert capsys.readouterr().out.splitlines()[-1] == f"Copied {name} to {copy}"
    assert sorted(p.name for p in copy.parent.iterdir()) == [copy.name]
    text = copy.read_text()
    assert "read_base" not in text and "_base_" not in text
    assert [s for s in SECTIONS if s in text] == SECTIONS
    assert f"catalog entry '{name}'" in text[:text.index("\nimport") if "\nimport" in text
                                                 else text.index("\nfrom")]
    expected = _effective(resolve_config(name))
    monkeypatch.chdir(tmp_path)  # the copy stands alone, read from anywhere
    assert _effective(copy) == expected


def test_catalog_copy_header_names_the_entry(tmp_path):
    text = _copy(LEAF, tmp_path).read_text()
    header = text[:text.index("\nimport")]
    assert f"Rendered from the catalog entry '{LEAF}'" in header
    assert f"configs/qwen/qwen2_5_0_5b_instruct/{LEAF}.py" in header
    assert f"#     NPROC_PER_NODE=8 xtuner train {LEAF} --deepspeed deepspeed_zero3" in header


def test_editing_settings_in_a_copy_changes_the_built_runner(tmp_path, monkeypatch):
    from xtuner.engine.runner.build import build_runner
    from xtuner.engine.train_setup import prepare_train_config
    from xtuner.testing import tiny_llm_and_tokenizer

    model_dir, _ = tiny_llm_and_tokenizer(tmp_path, arch="qwen2")
    data = tmp_path / "mine.jsonl"
    rows = [{"messages": [{"role": "user", "content": f"Question {i}: what is {i} + {i}?"},
                          {"role": "assistant", "content": f"{2 * i}, of course."}]}
            for i in range(8)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    copy = _copy(LEAF, tmp_path / "cfg")
    text = copy.read_text()
    for key, value in (("pretrained_model_name_or_path", model_dir), ("data_path", str(data)),
                       ("max_length", 64), ("max_epochs", 2), ("lr", 1e-3)):
        text = _set(text, key, value)
    copy.write_text(text)

    monkeypatch.chdir(tmp_path)
    cfg = load_config(copy)
    prepare_train_config(cfg, work_dir=str(tmp_path / "work"))
    runner = build_runner(cfg)
    loop = runner.train_loop
    assert loop.max_iters == 2 * len(loop.dataloader)  # two epochs
    dataset = loop.dataloader.dataset
    assert len(dataset) >= 1 and all(len(r["input_ids"]) <= 64 for r in dataset)
    tokenizer = cfg.tokenizer.type(**{k: v for k, v in cfg.tokenizer.items() if k != "type"})
    assert "Question 3" in "".join(tokenizer.decode(r["input_ids"]) for r in dataset)
    optim_wrapper = runner.build_optim_wrapper(runner.optim_wrapper)
    assert optim_wrapper.optimizer.param_groups[0]["lr"] == 1e-3
    assert [s.end for s in cfg.param_scheduler] == [pytest.approx(0.06), 2]
    assert runner.model.llm.config.hidden_size < 1000  # the tiny model, not Qwen's


def test_editing_settings_in_a_demo_copy_changes_what_runs(tmp_path):
    copy = _copy(DEMO, tmp_path)
    data = tmp_path / "d.jsonl"
    text = _set(_set(copy.read_text(), "data_path", str(data)), "max_epochs", 2)
    copy.write_text(text)
    cfg = load_config(copy)
    assert cfg.train_dataloader.dataset.dataset.data_files.train == str(data)
    assert cfg.train_cfg.max_epochs == 2 and cfg.param_scheduler[1].end == 2
    assert cfg.model.lora.r == 128  # the LoRA change of the demo is kept
    original = load_config(resolve_config(DEMO))
    assert original.train_dataloader.dataset.dataset.data_files.train == COLORIST_DATA_PATH


def test_demo_changes_go_into_their_sections(tmp_path):
    text = _copy(DEMO_QLORA, tmp_path).read_text()
    part2, part3 = text.index(SECTIONS[1]), text.index(SECTIONS[2])
    lora = text.index(f"# {DEMO}:\nmodel.update(")
    quant = text.index(f"# {DEMO_QLORA}:\nmodel['llm'].update(")
    assert part2 < lora < quant < part3
    assert "from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig" \
        in text


def test_self_contained_config_is_copied_verbatim_below_a_header(tmp_path):
    copy = _copy(SELF_CONTAINED, tmp_path)
    first, second, text = copy.read_text().split("\n", 2)
    assert [first, second] == [
        f"# Copy of the catalog entry '{SELF_CONTAINED}', made by `xtuner copy-cfg` from:",
        f"#     configs/demo/{SELF_CONTAINED}.py"]
    assert text == resolve_config(SELF_CONTAINED).read_text()


@pytest.mark.parametrize("name, leaf, count", [
    (LEAF, f"qwen/qwen2_5_0_5b_instruct/{LEAF}_copy.py", 9),
    (DEMO_QLORA, f"{DEMO_QLORA}_copy.py", 3),
])
def test_keep_bases_copies_the_config_and_its_bases(name, leaf, count, tmp_path, monkeypatch,
                                                    capsys):
    assert main(["copy-cfg", name, str(tmp_path), "--keep-bases"]) == 0
    out = capsys.readouterr().out.splitlines()[-1]
    assert out == f"Copied {name} with {count - 1} base files to {tmp_path / leaf}"
    assert len([p for p in tmp_path.rglob("*.py")]) == count
    expected = _effective(resolve_config(name))
    monkeypatch.chdir(tmp_path)
    assert _effective(tmp_path / leaf) == expected
    # A second leaf sharing the bases goes next to the first.
    other = "qwen2_5_0_5b_instruct_lora_custom_sft_e1" if name == LEAF else DEMO
    assert main(["copy-cfg", other, str(tmp_path), "--keep-bases"]) == 0


def test_an_edited_copy_is_not_replaced_without_force(tmp_path, capsys):
    copy = _copy(LEAF, tmp_path)
    copy.write_text(copy.read_text() + "# my edit\n")
    capsys.readouterr()
    assert main(["copy-cfg", LEAF, str(tmp_path)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"xtuner copy-cfg: error: {copy} exists; pass --force to replace it"]
    assert copy.read_text().endswith("# my edit\n")
    assert main(["copy-cfg", LEAF, str(tmp_path), "--force"]) == 0
    assert not copy.read_text().endswith("# my edit\n")


def test_keep_bases_does_not_replace_an_edited_base(tmp_path, capsys):
    assert main(["copy-cfg", LEAF, str(tmp_path), "--keep-bases"]) == 0
    base = tmp_path / "_base_" / "default_runtime.py"
    base.write_text(base.read_text().replace("save_steps = 500", "save_steps = 50"))
    capsys.readouterr()
    assert main(["copy-cfg", "qwen3_8b_full_alpaca_e3", str(tmp_path), "--keep-bases"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"xtuner copy-cfg: error: {base} exists; pass --force to replace it"]


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
