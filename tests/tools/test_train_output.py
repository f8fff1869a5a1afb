"""``xtuner train`` on the terminal: quiet by default, one summary line, one-line failures
(also the last line of the run's log file), and the backends one switch away."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from xtuner.engine.run_report import interrupted_line, summary_line
from xtuner.entry_point import main as xtuner_main
from xtuner.utils.cli import quiet_dependency_chatter

DEMO = "demo_tiny_full_colorist_e40"
XTUNER_BIN = Path(sys.executable).parent / "xtuner"
# 19 packed rows, batch 2: one epoch is 10 iterations.
SHORT = ["--cfg-options", "train_cfg.max_epochs=1"]


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("XTUNER_DEBUG", "NPROC_PER_NODE")}
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    return env


def _cli(cwd: Path, *args: str, bash: str | None = None) -> subprocess.CompletedProcess:
    if not XTUNER_BIN.exists():
        pytest.skip(f"console script not installed at {XTUNER_BIN}")
    command = ["bash", "-c", bash] if bash is not None else [str(XTUNER_BIN), *args]
    return subprocess.run(command, cwd=cwd, env=_env(), capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("quiet")
    proc = _cli(cwd, "train", DEMO, "--work-dir", "wd", "--tensorboard", *SHORT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, cwd / "wd"


def test_startup_dumps_go_to_the_log_file_only(short_run):
    proc, work_dir = short_run
    [log] = work_dir.glob("*/*.log")
    text = log.read_text()
    for dump in ("System environment:", "Config:\n", "Hooks will be executed in the following"):
        assert dump in text
        assert dump not in proc.stdout
    assert len(proc.stdout.splitlines()) < 100, len(proc.stdout.splitlines())
    # Dependency chatter is gone, without hiding the run's own warnings.
    assert "gemm_4bit_forward" not in proc.stdout + proc.stderr
    if not torch.cuda.is_available():
        assert "AmpOptimWrapper replaced by OptimWrapper" in proc.stdout


def test_run_ends_with_a_summary_line(short_run):
    proc, work_dir = short_run
    last = proc.stdout.strip().splitlines()[-1]
    ckpt = work_dir.resolve() / "iter_10.pth"
    assert "Finished 10 iterations (last iteration's loss " in last
    assert f"last checkpoint {ckpt}" in last
    assert f"xtuner convert pth_to_hf {DEMO} {ckpt} ./hf" in last
    [log] = work_dir.glob("*/*.log")
    assert f"log {log.resolve()}" in last or f"log {log}" in last
    assert log.read_text().rstrip().splitlines()[-1].endswith(last.split(" - INFO - ")[-1])


def test_tensorboard_switch_writes_event_files(short_run):
    _, work_dir = short_run
    assert list(work_dir.glob("*/vis_data/events.out.tfevents.*"))


def test_verbose_prints_the_config(tmp_path):
    proc = _cli(tmp_path, "train", DEMO, "--work-dir", "wd", "--verbose", *SHORT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Config:\n" in proc.stdout and "System environment:" in proc.stdout


# --------------------------------------------------------------------------- one-line failures


def _one_line(capsys, prog: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith(f"xtuner {prog}: error:")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("XTUNER_DEBUG", raising=False)


@pytest.mark.parametrize("mode", ["train", "preprocess"])
def test_missing_data_file_names_the_key_that_fixes_it(offline, tmp_path, capsys, mode):
    key = "train_dataloader.dataset.dataset.data_files.train"
    missing = tmp_path / "nope.jsonl"
    out = ["--work-dir", str(tmp_path / "wd")] if mode == "train" else [
        "--save-dir", str(tmp_path / "pp")]
    assert xtuner_main([mode, DEMO, *out, "--cfg-options", f"{key}={missing}"]) == 2
    line = _one_line(capsys, mode)
    assert f"data file '{missing}' does not exist" in line
    # The key it names is the one --cfg-options took.
    assert f"--cfg-options {key}=PATH" in line
    assert not (tmp_path / "pp").exists()


def test_xtuner_debug_shows_the_traceback(offline, tmp_path, monkeypatch):
    from xtuner.utils.errors import DataError

    monkeypatch.setenv("XTUNER_DEBUG", "1")
    with pytest.raises(DataError, match="does not exist"):
        xtuner_main(["train", DEMO, "--work-dir", str(tmp_path / "wd"), "--cfg-options",
                     f"train_dataloader.dataset.dataset.data_files.train={tmp_path / 'x'}"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without a GPU")
def test_deepspeed_without_a_gpu_is_one_line(offline, tmp_path, capsys):
    code = xtuner_main(["train", DEMO, "--work-dir", str(tmp_path / "wd"),
                        "--deepspeed", "deepspeed_zero2"])
    assert code == 2
    assert "--deepspeed needs a CUDA GPU" in _one_line(capsys, "train")
    assert not (tmp_path / "wd").exists()


@pytest.mark.parametrize("flag,module,install", [
    ("--tensorboard", "torch.utils.tensorboard", "pip install 'xtuner[tensorboard]'"),
    ("--wandb", "wandb", "pip install 'xtuner[wandb]'"),
])
def test_missing_visualizer_backend_is_one_line(offline, tmp_path, capsys, monkeypatch, flag,
                                                module, install):
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    code = xtuner_main(["train", DEMO, "--work-dir", str(tmp_path / "wd"), flag])
    assert code == 2
    line = _one_line(capsys, "train")
    assert install in line and "visualizer.vis_backends[1]" in line


def test_broken_pipe_is_one_line(tmp_path):
    # `true` exits without reading: every write of list-cfg meets a closed pipe, as the
    # writes after the first lines do under `| head`.
    proc = _cli(tmp_path, bash=f"'{XTUNER_BIN}' list-cfg | true; exit ${{PIPESTATUS[0]}}")
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        ("xtuner list-cfg: error: the output was closed before everything was written (e.g. by "
        "`| head`)")]


# --------------------------------------------------------------------------- pieces


def test_dependency_chatter_is_dropped_and_other_warnings_kept(caplog):
    quiet_dependency_chatter()
    logger = logging.getLogger("bitsandbytes.backends.cpu.ops")
    with caplog.at_level(logging.WARNING):
        logger.warning("Failed to load CPU gemm_4bit_forward from kernels-community: %s", "x")
        logger.warning("a real warning")
    assert [r.getMessage() for r in caplog.records] == ["a real warning"]


class _Runner:
    def __init__(self, work_dir, iteration):
        self.work_dir, self.iter = str(work_dir), iteration


def test_interrupt_says_how_to_resume(tmp_path):
    assert interrupted_line(_Runner(tmp_path, 3), "cfg.py", str(tmp_path)) == (
        f"Interrupted at iteration 3, before any checkpoint was saved in {tmp_path}; "
        f"`xtuner train cfg.py --work-dir {tmp_path}` starts again")
    ckpt = tmp_path / "iter_5.pth"
    ckpt.write_bytes(b"")
    (tmp_path / "last_checkpoint").write_text(str(ckpt))
    assert interrupted_line(_Runner(tmp_path, 7), "cfg.py", str(tmp_path), True) == (
        f"Interrupted at iteration 7; resume from {ckpt} with `xtuner train cfg.py --work-dir "
        f"{tmp_path} --resume auto` (and the same --cfg-options)")


def test_summary_without_checkpoint(tmp_path):
    line = summary_line(_Runner(tmp_path, 4), "cfg.py")
    assert line == f"Finished 4 iterations; no checkpoint was saved in {tmp_path}"
