"""End to end: ``xtuner train`` on the shipped tiny demo, then ``--resume auto``.

Two real CLI runs (about 20 s each on 2 CPU cores): an uninterrupted 12-iteration run, and a
run resumed from its iteration-8 checkpoint, whose logged losses must equal the first run's.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from safetensors.torch import load_file

from xtuner.demo import TINY_LLM_PATH

DEMO = "demo_tiny_full_colorist_e40"
XTUNER_BIN = Path(sys.executable).parent / "xtuner"
# 19 packed rows, batch 2 -> 10 iterations an epoch; 1.2 epochs -> 12 iterations, so the
# resumed part (iterations 9-12) crosses an epoch boundary. Checkpoints at 4, 8 and 12, of
# which 2 are kept. Log every iteration.
MAX_ITERS = 12
CFG_OPTIONS = [
    "train_cfg.max_epochs=1.2",
    "default_hooks.checkpoint.interval=4",
    "default_hooks.checkpoint.max_keep_ckpts=2",
    "default_hooks.logger.interval=1",
]
LOG_LINE = re.compile(r"Iter\(train\) \[\s*(\d+)/(\d+)\].*?\sloss: ([0-9.]+)")


def _train(cwd: Path, work_dir: str, *extra: str) -> subprocess.CompletedProcess:
    if not XTUNER_BIN.exists():
        pytest.skip(f"console script not installed at {XTUNER_BIN}")
    env = {k: v for k, v in os.environ.items()
           if k not in ("XTUNER_DEBUG", "NPROC_PER_NODE", "NNODES")}
    # One intra-op thread: the tiny model gains nothing from more, and on a busy 2-core
    # machine oversubscribed threads made each iteration 20x slower.
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1",
               MKL_NUM_THREADS="1")
    return subprocess.run(
        [str(XTUNER_BIN), "train", DEMO, "--work-dir", work_dir, *extra,
         "--cfg-options", *CFG_OPTIONS],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def _run_dir(work_dir: Path) -> Path:
    runs = [p for p in work_dir.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def _logged_losses(work_dir: Path) -> dict[int, str]:
    run = _run_dir(work_dir)
    losses = {}
    for line in (run / f"{run.name}.log").read_text().splitlines():
        match = LOG_LINE.search(line)
        if match:
            assert int(match.group(2)) == MAX_ITERS
            losses[int(match.group(1))] = match.group(3)
    return losses


def _scalars(work_dir: Path) -> dict[int, float]:
    import json

    run = _run_dir(work_dir)
    rows = [json.loads(line) for line in (run / "vis_data" / "scalars.json").read_text()
            .splitlines()]
    return {row["iter"]: row["loss"] for row in rows if "loss" in row}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The uninterrupted run and the resumed one, each as (process, work dir)."""
    cwd = tmp_path_factory.mktemp("train_e2e")
    full = _train(cwd, "full")
    assert full.returncode == 0, full.stderr[-3000:]
    # A run killed after its iteration-8 checkpoint: the work dir holds that checkpoint and
    # `last_checkpoint` naming it (iter_4 was already deleted: max_keep_ckpts=2).
    resumed_dir = cwd / "resumed"
    resumed_dir.mkdir()
    shutil.copy(cwd / "full" / "iter_8.pth", resumed_dir / "iter_8.pth")
    (resumed_dir / "last_checkpoint").write_text(str(resumed_dir / "iter_8.pth"))
    resumed = _train(cwd, "resumed", "--resume", "auto")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return (full, cwd / "full"), (resumed, resumed_dir)


def test_work_dir_layout(runs):
    (proc, work_dir) = runs[0]
    names = sorted(p.name for p in work_dir.iterdir())
    run = _run_dir(work_dir)
    assert re.fullmatch(r"\d{8}_\d{6}", run.name)
    assert names == sorted([f"{DEMO}.py", "iter_12.pth", "iter_8.pth", "last_checkpoint",
                            run.name])
    assert (run / f"{run.name}.log").stat().st_size > 0
    assert (run / "vis_data" / "scalars.json").is_file()
    last = Path((work_dir / "last_checkpoint").read_text().strip())
    assert last.resolve() == (work_dir / "iter_12.pth").resolve()
    assert not list(work_dir.rglob("*.tmp"))


def test_dumped_config_holds_the_overrides(runs):
    work_dir = runs[0][1]
    cfg = Config.fromfile(str(work_dir / f"{DEMO}.py"))
    raw = cfg._cfg_dict
    assert raw["train_cfg"]["max_epochs"] == 1.2
    assert raw["default_hooks"]["checkpoint"]["interval"] == 4
    assert raw["default_hooks"]["checkpoint"]["max_keep_ckpts"] == 2
    assert raw["work_dir"] == "full"
    # xtuner's crash-safe hook replaced mmengine's; fp32 optimizer wrapper on a CPU.
    assert raw["default_hooks"]["checkpoint"]["type"].endswith("checkpoint_hook.CheckpointHook")
    if not torch.cuda.is_available():
        assert raw["optim_wrapper"]["type"].endswith(".OptimWrapper")
        assert "Amp" not in raw["optim_wrapper"]["type"]


def test_every_iteration_logged_and_loss_goes_down(runs):
    losses = _logged_losses(runs[0][1])
    assert sorted(losses) == list(range(1, MAX_ITERS + 1))
    first, last = float(losses[1]), float(losses[MAX_ITERS])
    assert last < first - 1.0, (first, last)
    scalars = _scalars(runs[0][1])
    assert sorted(scalars) == list(range(1, MAX_ITERS + 1))
    assert f"{scalars[MAX_ITERS]:.4f}" == losses[MAX_ITERS]


def test_checkpoint_loads_with_weights_only(runs):
    ckpt = torch.load(runs[0][1] / "iter_12.pth", weights_only=True, map_location="cpu")
    assert sorted(ckpt) == ["message_hub", "meta", "optimizer", "param_schedulers",
                            "state_dict", "xtuner_resume"]
    assert ckpt["xtuner_resume"]["grads"] == {}  # saved at the end of an optimizer step
    assert ckpt["meta"]["iter"] == MAX_ITERS
    weight = ckpt["state_dict"]["llm.model.embed_tokens.weight"]
    initial = load_file(os.path.join(TINY_LLM_PATH, "model.safetensors"))
    assert weight.shape == initial["model.embed_tokens.weight"].shape
    assert not torch.equal(weight, initial["model.embed_tokens.weight"])  # it trained
    loss_history = ckpt["message_hub"]["log_scalars"]["train/loss"]
    assert isinstance(loss_history, dict)
    assert len(loss_history["log_history"]) == MAX_ITERS
    assert ckpt["message_hub"]["runtime_info"]["keep_ckpt_ids"] == [8, 12]


def test_resume_auto_repeats_the_uninterrupted_losses(runs):
    (full_proc, full_dir), (resumed_proc, resumed_dir) = runs
    assert "Auto resumed from the latest checkpoint" in resumed_proc.stdout + resumed_proc.stderr
    full, resumed = _logged_losses(full_dir), _logged_losses(resumed_dir)
    assert sorted(resumed) == list(range(9, MAX_ITERS + 1))  # really continued from 8
    assert resumed == {i: full[i] for i in resumed}
    # The logged value is a running mean over 10 iterations, so it also checks the restored
    # history of iterations 1-8.
    full_scalars, resumed_scalars = _scalars(full_dir), _scalars(resumed_dir)
    for i in resumed_scalars:
        assert resumed_scalars[i] == pytest.approx(full_scalars[i], rel=1e-6, abs=0), i


def test_resumed_run_rotates_its_own_checkpoints(runs):
    resumed_dir = runs[1][1]
    assert sorted(p.name for p in resumed_dir.glob("*.pth")) == ["iter_12.pth", "iter_8.pth"]
    last = Path((resumed_dir / "last_checkpoint").read_text().strip())
    assert last.resolve() == (resumed_dir / "iter_12.pth").resolve()
    a = torch.load(resumed_dir / "iter_12.pth", weights_only=True)["state_dict"]
    b = torch.load(runs[0][1] / "iter_12.pth", weights_only=True)["state_dict"]
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)


# --------------------------------------------------------------------------- broken configs


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    if not XTUNER_BIN.exists():
        pytest.skip(f"console script not installed at {XTUNER_BIN}")
    env = {k: v for k, v in os.environ.items() if k != "XTUNER_DEBUG"}
    return subprocess.run([str(XTUNER_BIN), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


BROKEN = "lr = 1e-3\nmax_length = 64\nmodel = dict(type='x',\nbatch_size = 2\n"


def test_broken_config_exits_2_with_one_line(tmp_path):
    (tmp_path / "broken.py").write_text(BROKEN)
    proc = _cli(tmp_path, "train", "broken.py")
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("xtuner train: error: cannot load config ")
    assert "SyntaxError" in lines[0]
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not (tmp_path / "work_dirs").exists()


def test_broken_config_error_names_file_and_line(tmp_path):
    (tmp_path / "broken.py").write_text(BROKEN)
    proc = _cli(tmp_path, "train", "broken.py")
    assert f"{tmp_path / 'broken.py'}:3" in proc.stderr


def test_config_name_error_names_file_and_line(tmp_path):
    (tmp_path / "typo.py").write_text("lr = 1e-3\nbatch_size = batch_sise\n")
    proc = _cli(tmp_path, "train", "typo.py")
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        (f"xtuner train: error: cannot load config {tmp_path / 'typo.py'}:2: NameError: "
         "name 'batch_sise' is not defined")
    ]
