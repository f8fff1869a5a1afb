"""A user's mistake with ``xtuner train`` and the tools sharing its config loading is one line
naming the file, key or value and the fix, with exit status 2: never a traceback, never a
run that silently does something else.

Everything runs in-process on the offline tiny demo (``demo_tiny_*_colorist_e40``).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from xtuner.entry_point import main as xtuner_main

FULL = "demo_tiny_full_colorist_e40"
LORA = "demo_tiny_lora_colorist_e40"


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("XTUNER_DEBUG", raising=False)


def _error(capsys, *argv: str) -> str:
    """Run ``xtuner ARGV``, check it failed with exit status 2 and one error line; return it."""
    code = xtuner_main(list(argv))
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if ": error: " in line]
    assert code == 2 and len(lines) == 1, (code, err)
    return lines[0]


# -------------------------------------------------------------------------- A: --cfg-options
@pytest.mark.parametrize("mode", ["train", "check-custom-dataset"])
def test_cfg_option_without_equals_sign(capsys, mode):
    line = _error(capsys, mode, FULL, "--cfg-options", "max_epochs=1", "lr")
    assert "--cfg-options 'lr': expected KEY=VALUE" in line


# ------------------------------------------------------------------------------ B: --work-dir
def test_work_dir_that_is_a_file(capsys, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    line = _error(capsys, "train", FULL, "--work-dir", str(afile), "--print-config")
    assert f"work dir '{afile}' exists and is not a folder" in line
    line = _error(capsys, "train", FULL, "--work-dir", str(afile / "sub"), "--print-config")
    assert f"{afile} is a file" in line
    assert afile.read_text() == "keep me"


# ------------------------------------------------------------------------ C: loading configs
@pytest.fixture
def copied(tmp_path, capsys) -> Path:
    assert xtuner_main(["copy-cfg", FULL, str(tmp_path)]) == 0
    capsys.readouterr()
    return tmp_path / f"{FULL}_copy.py"


def test_config_of_an_unknown_type(capsys, tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("hello\n")
    import torch

    torch.save({}, tmp_path / "x.pth")  # pth_to_hf checks its checkpoint first
    for argv in (["train", str(plain)], ["check-custom-dataset", str(plain)],
                 ["convert", "pth_to_hf", str(plain), str(tmp_path / "x.pth"),
                  str(tmp_path / "hf")]):
        assert f"{plain} is not a config file" in _error(capsys, *argv)


def test_yaml_syntax_error_names_the_line(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1,\nb: 2\n")
    assert f"cannot load config {bad}:3: YAML syntax error" in _error(capsys, "train", str(bad))


def test_misspelled_module_in_an_import(capsys, copied):
    text = copied.read_text()
    line_no = text[:text.index("from xtuner.model import")].count("\n") + 1
    copied.write_text(text.replace("from xtuner.model import", "from xtuner.modle import"))
    line = _error(capsys, "train", str(copied), "--print-config")
    assert f"{copied}:{line_no}: no module named 'xtuner.modle'" in line
    assert "'xtuner.model'" in line  # did you mean


def test_misspelled_name_in_an_import_points_at_the_import(capsys, copied):
    text = copied.read_text()
    line_no = text[:text.index("from xtuner.model import")].count("\n") + 1
    copied.write_text(text.replace("from xtuner.model import SupervisedFinetune",
                                   "from xtuner.model import SupervisedFineTune"))
    line = _error(capsys, "train", str(copied), "--print-config")
    assert (f"{copied}:{line_no}: xtuner.model has no 'SupervisedFineTune' "
            "(did you mean 'SupervisedFinetune'?)") in line


# ------------------------------------------------------------------------------ D: model path
@pytest.mark.parametrize("path", ["./nomodel", "/data/no/models/qwen"])
@pytest.mark.parametrize("mode", ["train", "check-custom-dataset"])
def test_model_folder_that_does_not_exist(capsys, tmp_path, monkeypatch, mode, path):
    monkeypatch.chdir(tmp_path)
    line = _error(capsys, mode, FULL, "--cfg-options", f"pretrained_model_name_or_path={path}")
    assert f"model folder '{path}' does not exist" in line
    assert "Repo id" not in line


def test_adapter_folder_instead_of_a_model(capsys, tmp_path):
    adapter = tmp_path / "hf"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "x"}))
    line = _error(capsys, "train", FULL, "--print-config", "--cfg-options",
                  f"pretrained_model_name_or_path={adapter}")
    assert f"{adapter} is a LoRA adapter, not a model" in line


def test_hub_model_not_cached_while_offline(capsys):
    name = "xtuner-tests/no-such-model"
    line = _error(capsys, "train", FULL, "--print-config", "--cfg-options",
                  f"pretrained_model_name_or_path={name}")
    assert (f"'{name}' is not in the Hugging Face cache and the hub cannot be reached "
            "(offline)") in line


def test_other_load_errors_are_not_hidden():
    """Only the hub's "cannot provide the files" errors become a line; others stay bugs."""
    from xtuner.model.utils import pretrained_errors

    def from_pretrained(**_):
        raise OSError("disk on fire")

    with pytest.raises(OSError, match="disk on fire"):
        with pretrained_errors(dict(type=from_pretrained, pretrained_model_name_or_path="a/b")):
            from_pretrained()


def test_peft_loaders_take_an_adapter_folder(tmp_path):
    """An adapter folder is refused where a model is built, not where peft loads one."""
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoModelForCausalLM

    from xtuner.model.utils import pretrained_errors
    from xtuner.utils.errors import ConfigError

    adapter = tmp_path / "hf"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "x"}))
    with pretrained_errors(dict(type=AutoPeftModelForCausalLM.from_pretrained,
                                pretrained_model_name_or_path=str(adapter))):
        pass
    with pytest.raises(ConfigError, match="is a LoRA adapter, not a model"):
        with pretrained_errors(dict(type=AutoModelForCausalLM.from_pretrained,
                                    pretrained_model_name_or_path=str(adapter))):
            pass


# ------------------------------------------------------------------------ E: template names
def test_chat_hook_takes_a_template_name():
    from transformers import AutoTokenizer

    from xtuner.demo import TINY_LLM_PATH
    from xtuner.engine.hooks.evaluate_chat_hook import EvaluateChatHook
    from xtuner.utils.templates import PROMPT_TEMPLATE

    hook = EvaluateChatHook(
        tokenizer=dict(type=AutoTokenizer.from_pretrained,
                       pretrained_model_name_or_path=TINY_LLM_PATH),
        evaluation_inputs="hi", prompt_template="qwen_chat")
    assert hook.prompt_template == PROMPT_TEMPLATE.qwen_chat
    assert set(PROMPT_TEMPLATE.qwen_chat["STOP_WORDS"]) <= set(hook.stop_words)


@pytest.mark.parametrize("mode", ["train", "check-custom-dataset"])
def test_misspelled_template_name(capsys, mode):
    line = _error(capsys, mode, FULL, "--cfg-options", "prompt_template=qwen_chatt")
    assert "unknown prompt template 'qwen_chatt' (did you mean 'qwen_chat'?)" in line


# ------------------------------------------------------------------------------ F: run length
@pytest.mark.parametrize("option", ["max_epochs=0", "max_epochs=-1", "train_cfg.max_epochs=0",
                                    "train_cfg.max_iters=0"])
def test_run_of_no_length_is_refused(capsys, tmp_path, option):
    line = _error(capsys, "train", FULL, "--work-dir", str(tmp_path / "wd"), "--print-config",
                  "--cfg-options", option)
    key = option.split("=")[0].rsplit(".", 1)[-1]
    assert f"train_cfg.{key}=" in line and "longer than 0" in line


def test_fraction_of_an_epoch_is_allowed(capsys, tmp_path):
    assert xtuner_main(["train", FULL, "--work-dir", str(tmp_path / "wd"), "--print-config",
                        "--cfg-options", "train_cfg.max_epochs=0.1"]) == 0


# ---------------------------------------------------------------------------------- G: resume
ONE_STEP = ["--cfg-options", "train_cfg.max_iters=1", "default_hooks.checkpoint.interval=1"]


@pytest.fixture(scope="module")
def work_dirs(tmp_path_factory) -> dict[str, Path]:
    """One-iteration runs of the full and the LoRA demo (a checkpoint each)."""
    root = tmp_path_factory.mktemp("runs")
    dirs = {}
    for name, demo in (("full", FULL), ("lora", LORA)):
        dirs[name] = root / name
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("HF_HUB_OFFLINE", "1")
            assert xtuner_main(["train", demo, "--work-dir", str(dirs[name]), *ONE_STEP]) == 0
        assert (dirs[name] / "iter_1.pth").is_file()
    return dirs


def test_resume_from_a_truncated_checkpoint(capsys, tmp_path, work_dirs):
    truncated = tmp_path / "iter_1.pth"
    truncated.write_bytes((work_dirs["full"] / "iter_1.pth").read_bytes()[:5000])
    line = _error(capsys, "train", FULL, "--work-dir", str(tmp_path / "wd"), "--resume",
                  str(truncated))
    assert f"cannot read checkpoint {truncated}" in line and "truncated" in line


def test_resume_from_a_checkpoint_of_another_config(capsys, tmp_path, work_dirs):
    other = work_dirs["lora"] / "iter_1.pth"
    line = _error(capsys, "train", FULL, "--work-dir", str(tmp_path / "wd"), "--resume",
                  str(other))
    assert f"{other} was saved by a run of another model or config" in line


def test_resume_from_hugging_face_weights(capsys, tmp_path, work_dirs):
    import torch
    from safetensors.torch import save_file

    weights = tmp_path / "model.safetensors"
    save_file({"a": torch.zeros(2)}, str(weights))
    line = _error(capsys, "train", FULL, "--work-dir", str(tmp_path / "wd"), "--resume",
                  str(weights))
    assert f"{weights} is not a checkpoint written by xtuner train" in line


def test_resume_from_a_folder_that_is_no_checkpoint(capsys, tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    line = _error(capsys, "train", FULL, "--work-dir", str(tmp_path / "wd"), "--resume",
                  str(folder))
    assert f"--resume: {folder} is a folder but neither a work dir" in line


def test_resume_from_a_work_dir_takes_its_last_checkpoint(capsys, tmp_path, work_dirs):
    import shutil

    work_dir = tmp_path / "wd"
    shutil.copytree(work_dirs["lora"], work_dir)
    code = xtuner_main(["train", LORA, "--work-dir", str(work_dir), "--resume", str(work_dir),
                        "--cfg-options", "train_cfg.max_iters=2",
                        "default_hooks.checkpoint.interval=1"])
    assert code == 0, capsys.readouterr().err[-3000:]
    log = sorted(work_dir.glob("2*/*.log"))[-1]  # the resumed run's (the newest)
    assert "resumed epoch: 0, iter: 1" in log.read_text()
    assert (work_dir / "iter_2.pth").is_file()


# ------------------------------------------------------------------- H: one run per work dir
def test_new_run_into_a_work_dir_with_checkpoints_is_refused(capsys, tmp_path, work_dirs):
    import shutil

    work_dir = tmp_path / "wd"
    shutil.copytree(work_dirs["full"], work_dir)
    before = {p.name: p.stat().st_mtime_ns for p in work_dir.iterdir()}
    line = _error(capsys, "train", FULL, "--work-dir", str(work_dir), *ONE_STEP)
    assert (f"work dir {work_dir} already holds checkpoints of a run (iter_1.pth): continue it "
            "with --resume auto, or give another --work-dir") in line
    assert {p.name: p.stat().st_mtime_ns for p in work_dir.iterdir()} == before
    # Printing the config writes nothing, so it is allowed.
    assert xtuner_main(["train", FULL, "--work-dir", str(work_dir), "--print-config"]) == 0


# ------------------------------------------------------------------ J: the model's arguments
@pytest.mark.parametrize("demo, right, wrong, owner", [
    (FULL, "use_varlen_attn=", "use_varlen_atn=", "SupervisedFinetune"),
    (LORA, "lora_alpha=", "lora_alpah=", "LoraConfig"),
])
def test_misspelled_argument_of_the_model_is_named(capsys, tmp_path, demo, right, wrong,
                                                    owner):
    assert xtuner_main(["copy-cfg", demo, str(tmp_path)]) == 0
    config = tmp_path / f"{demo}_copy.py"
    text = config.read_text()
    assert right in text
    config.write_text(text.replace(right, wrong, 1))
    line = _error(capsys, "train", str(config), "--print-config")
    key = wrong.rstrip("=")
    assert f"{key} in {config}: {owner} takes no argument '{key}'" in line
    assert f"(did you mean '{right.rstrip('=')}'" in line


def test_optimizer_without_the_arguments_the_config_gives_it(capsys):
    """v0 configs set ``optim_type`` beside AdamW's ``betas``: SGD takes no betas."""
    line = _error(capsys, "train", FULL, "--print-config", "--cfg-options", "optim_type=SGD")
    assert "optim_wrapper.optimizer.betas in " in line
    assert "SGD takes no argument 'betas'" in line


def test_every_shipped_config_passes_the_argument_check():
    """The check refuses only what building would refuse: no shipped config trips it."""
    from xtuner.engine.config import load_config
    from xtuner.engine.train_setup import check_model_arguments
    from xtuner.utils.paths import config_catalog

    configs = [p for p in config_catalog().values() if p.suffix == ".py"]
    assert len(configs) > 900
    for path in configs:
        check_model_arguments(load_config(path))


def test_misspelled_deepspeed_name_comes_before_the_machine_check(capsys):
    line = _error(capsys, "train", FULL, "--deepspeed", "deepspeed_zero4", "--print-config")
    assert "unknown DeepSpeed config 'deepspeed_zero4'" in line


# ------------------------------------------------------------------------------- I: smaller
def _data_option(path: Path) -> list[str]:
    return ["--cfg-options", f"train_dataloader.dataset.dataset.data_files.train={path}"]


def test_empty_data_file_is_named_as_such(capsys, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert xtuner_main(["check-custom-dataset", FULL, "--no-progress",
                        *_data_option(empty)]) == 1
    assert capsys.readouterr().out.rstrip().endswith("the file has no records")
    line = _error(capsys, "train", FULL, "--work-dir", str(tmp_path / "wd"),
                  *_data_option(empty))
    assert f"no usable training sample: {empty} has no records" in line


@pytest.mark.parametrize("value, expected", [("-3", "expected 0 or more, got -3"),
                                             ("x", "expected a whole number, got 'x'")])
def test_problems_shown_must_be_a_count(capsys, value, expected):
    assert expected in _error(capsys, "check-custom-dataset", FULL, "-n", value)


def test_no_problem_lines_shown_still_counts_them(capsys, tmp_path):
    from xtuner.demo import COLORIST_DATA_PATH

    data = tmp_path / "d.jsonl"
    lines = Path(COLORIST_DATA_PATH).read_text().splitlines()[:6]
    lines[3] = '{"conversation": []}'
    data.write_text("\n".join(lines) + "\n")
    assert xtuner_main(["check-custom-dataset", FULL, "--no-progress", "-n", "0",
                        *_data_option(data)]) == 1
    out = capsys.readouterr().out
    assert f"{data}:4:" not in out
    assert "FAILED: 1 error" in out


@pytest.mark.parametrize("value", ["0", "-2"])
def test_batch_size_must_be_a_count(capsys, value):
    line = _error(capsys, "train", FULL, "--print-config", "--cfg-options",
                  f"train_dataloader.batch_size={value}")
    assert f"train_dataloader.batch_size={value}" in line and "1 or more" in line


def test_benchmark_json_path_is_checked_before_the_run(capsys, tmp_path):
    line = _error(capsys, "benchmark", FULL, "--json", str(tmp_path))
    assert f"--json {tmp_path} is a folder" in line
    line = _error(capsys, "benchmark", FULL, "--json", str(tmp_path / "no" / "r.json"))
    assert f"has no folder {tmp_path / 'no'}" in line


def test_copy_cfg_where_no_folder_can_be_made(capsys, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    line = _error(capsys, "copy-cfg", FULL, str(afile / "sub"))
    assert f"cannot write {afile / 'sub'}" in line and "pick another save_dir" in line
    assert afile.read_text() == "keep me"


def test_folder_given_as_config(capsys, tmp_path):
    model = tmp_path / "hf_full"
    model.mkdir()
    (model / "config.json").write_text("{}")
    line = _error(capsys, "train", str(model))
    assert f"'{model}' is a folder, not a config file; it holds a Hugging Face model" in line


def test_help_of_a_mode(capsys):
    assert xtuner_main(["help", "train"]) == 0
    assert capsys.readouterr().out.startswith("usage: xtuner train")
