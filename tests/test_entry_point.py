"""The ``xtuner`` dispatcher: usage, mode lookup, error reporting and the torchrun launch."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from xtuner import entry_point
from xtuner.entry_point import MODES, Mode, build_launch_command, main
from xtuner.utils.errors import UsageError
from xtuner.utils.paths import tools_dir
from xtuner.version import __version__

# Every mode (and sub-mode) v0 had, as a user types it, plus `benchmark`.
ALL_MODES = [
    "list-cfg", "copy-cfg", "train", "test", "convert pth_to_hf", "convert merge",
    "convert split", "benchmark", "chat", "check-custom-dataset", "preprocess", "mmbench",
    "eval_refcoco", "log-dataset", "list-dataset-format", "version",
]  # fmt: skip

XTUNER_BIN = Path(sys.executable).parent / "xtuner"


def _leaf_modes() -> list[tuple[str, Mode]]:
    out = []
    for name, mode in MODES.items():
        if isinstance(mode, dict):
            out.extend((f"{name} {sub}", m) for sub, m in mode.items())
        else:
            out.append((name, mode))
    return out


def _err_lines(capsys) -> list[str]:
    return capsys.readouterr().err.strip().splitlines()


# --------------------------------------------------------------------------- usage / version


@pytest.mark.parametrize("argv", [[], ["help"], ["-h"], ["--help"]])
def test_usage_names_every_mode_and_exits_0(argv, capsys):
    assert main(argv) == 0
    out = capsys.readouterr()
    assert out.out.startswith("usage: xtuner MODE [MODE_ARGS] [ARGS]\n")
    assert out.err == ""
    listed = [line.split()[:2] for line in out.out.splitlines() if line.startswith("  ")]
    for mode in ALL_MODES:
        words = mode.split()
        assert any(entry[: len(words)] == words for entry in listed), mode
    # The summary of each mode is shown next to it.
    for name, mode in _leaf_modes():
        assert any(line.split()[: len(name.split())] == name.split()
                   and line.rstrip().endswith(mode.summary)
                   for line in out.out.splitlines()), name


def test_modes_table_matches_v0_mode_names():
    assert [name for name, _ in _leaf_modes()] == ALL_MODES


@pytest.mark.parametrize("argv", [["version"], ["-v"], ["--version"]])
def test_version_prints_the_version(argv, capsys):
    assert main(argv) == 0
    assert capsys.readouterr().out == f"{__version__}\n"


# --------------------------------------------------------------------------- bad modes


def test_unknown_mode_is_one_line_with_suggestion(capsys):
    assert main(["trian", "cfg"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "xtuner: error: unknown mode 'trian' (did you mean 'train'?); run `xtuner help`\n"
    )


def test_unknown_mode_without_close_match(capsys):
    assert main(["zzzz"]) == 2
    assert _err_lines(capsys) == ["xtuner: error: unknown mode 'zzzz'; run `xtuner help`"]


def test_convert_without_sub_mode_exits_2(capsys):
    assert main(["convert"]) == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        "xtuner: error: `xtuner convert` needs one of: pth_to_hf, merge, split"
    ]
    assert "xtuner convert pth_to_hf" in captured.out


def test_convert_help_lists_sub_modes(capsys):
    assert main(["convert", "-h"]) == 0
    out = capsys.readouterr().out
    for sub in ("pth_to_hf", "merge", "split"):
        assert f"xtuner convert {sub}" in out


def test_unknown_convert_sub_mode(capsys):
    assert main(["convert", "mergee"]) == 2
    assert _err_lines(capsys) == [
        ("xtuner: error: unknown convert mode 'mergee' (did you mean 'merge'?); "
         "choose one of: pth_to_hf, merge, split")
    ]


def test_mode_without_tool_script_says_not_implemented(capsys):
    missing = [name for name, mode in _leaf_modes()
               if mode.script and not (tools_dir() / mode.script).is_file()]
    if not missing:
        pytest.skip("every mode has its tool script")
    name = missing[0]
    assert main(name.split() + ["x"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"xtuner {name}: not implemented yet\n"


# --------------------------------------------------------------------------- train errors


def test_train_help_lists_its_options(capsys):
    assert main(["train", "-h"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: xtuner train ")
    for flag in ("--deepspeed", "--resume", "--cfg-options", "--work-dir", "--seed",
                 "--launcher", "--print-config"):
        assert flag in out, flag


def test_train_missing_config_is_one_line(capsys):
    assert main(["train", "demo_tiny_full_colorist_e4"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1
    # Other shipped configs may be close matches too; the closest one comes first.
    assert lines[0].startswith(
        "xtuner train: error: no config file or catalog config named "
        "'demo_tiny_full_colorist_e4' (did you mean 'demo_tiny_full_colorist_e40'"
    )
    assert lines[0].endswith("?); see `xtuner list-cfg`")
    assert "Traceback" not in captured.out + captured.err


def test_train_missing_config_file_path(tmp_path, capsys):
    missing = tmp_path / "nope.py"
    assert main(["train", str(missing)]) == 2
    assert _err_lines(capsys) == [f"xtuner train: error: config file not found: {missing}"]


def test_train_bad_cfg_options_key_names_it(capsys):
    argv = ["train", "demo_tiny_full_colorist_e40",
            "--cfg-options", "train_dataloader.batch_sise=4"]
    assert main(argv) == 2
    assert _err_lines(capsys) == [
        ("xtuner train: error: --cfg-options key 'train_dataloader.batch_sise' does not exist "
         "in the config (did you mean 'batch_size'?)")
    ]


def test_train_unknown_flag_is_one_line(capsys):
    assert main(["train", "demo_tiny_full_colorist_e40", "--no-such-flag"]) == 2
    assert _err_lines(capsys) == [
        "xtuner train: error: unrecognized arguments: --no-such-flag (see `xtuner train -h`)"
    ]


def test_debug_env_raises_the_error_instead(monkeypatch):
    from xtuner.utils.errors import ConfigError

    monkeypatch.setenv("XTUNER_DEBUG", "1")
    with pytest.raises(ConfigError, match="no config file or catalog config named 'nope_cfg'"):
        main(["train", "nope_cfg"])


# --------------------------------------------------------------------------- console script


def _run_cli(*args, env_extra=None, cwd=None):
    if not XTUNER_BIN.exists():
        pytest.skip(f"console script not installed at {XTUNER_BIN}")
    env = {k: v for k, v in os.environ.items() if k != "XTUNER_DEBUG"}
    env.update(env_extra or {})
    return subprocess.run([str(XTUNER_BIN), *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=120)


def test_console_script_usage_and_bad_config(tmp_path):
    proc = _run_cli(cwd=tmp_path)
    assert proc.returncode == 0
    assert "check-custom-dataset" in proc.stdout and "list-dataset-format" in proc.stdout

    proc = _run_cli("train", "no_such_config_abc", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        ("xtuner train: error: no config file or catalog config named 'no_such_config_abc'; "
         "see `xtuner list-cfg`")
    ]


def test_console_script_debug_shows_traceback(tmp_path):
    proc = _run_cli("train", "no_such_config_abc", env_extra={"XTUNER_DEBUG": "1"},
                    cwd=tmp_path)
    assert proc.returncode == 1
    assert "Traceback (most recent call last)" in proc.stderr
    assert proc.stderr.rstrip().splitlines()[-1] == (
        "xtuner.utils.errors.ConfigError: no config file or catalog config named "
        "'no_such_config_abc'; see `xtuner list-cfg`"
    )


# --------------------------------------------------------------------------- torchrun launch

SCRIPT = Path("/opt/tools/train.py")


@pytest.mark.parametrize("env", [{}, {"NPROC_PER_NODE": "1"}, {"NPROC_PER_NODE": "1",
                                                                 "NNODES": "1"}])
def test_launch_command_is_none_for_one_process(env):
    assert build_launch_command(SCRIPT, ["cfg"], env) is None


def test_launch_command_multi_node_exact():
    env = {"NPROC_PER_NODE": "8", "NNODES": "2", "NODE_RANK": "1", "PORT": "29511",
           "ADDR": "10.1.2.3"}
    assert build_launch_command(SCRIPT, ["cfg.py", "--deepspeed", "deepspeed_zero2"], env) == [
        sys.executable, "-m", "xtuner.utils.launch",
        "--nnodes=2", "--node_rank=1", "--nproc_per_node=8",
        "--master_addr=10.1.2.3", "--master_port=29511",
        "/opt/tools/train.py", "cfg.py", "--deepspeed", "deepspeed_zero2",
        "--launcher", "pytorch",
    ]  # fmt: skip


def test_launch_command_single_node_defaults():
    command = build_launch_command(SCRIPT, ["cfg"], {"NPROC_PER_NODE": "8", "PORT": "23456"})
    assert command == [
        sys.executable, "-m", "xtuner.utils.launch",
        "--nnodes=1", "--node_rank=0", "--nproc_per_node=8",
        "--master_addr=127.0.0.1", "--master_port=23456",
        "/opt/tools/train.py", "cfg", "--launcher", "pytorch",
    ]  # fmt: skip


def test_launch_command_random_port_when_unset():
    ports = set()
    for _ in range(50):
        command = build_launch_command(SCRIPT, [], {"NPROC_PER_NODE": "2"})
        port_args = [a for a in command if a.startswith("--master_port=")]
        assert len(port_args) == 1
        port = int(port_args[0].split("=", 1)[1])
        assert 20000 <= port <= 29999
        ports.add(port)
    assert len(ports) > 1  # really random, not one fixed fallback


@pytest.mark.parametrize("env, message", [
    ({"NPROC_PER_NODE": "8", "NNODES": "2"}, "needs the same PORT"),
    ({"NNODES": "2", "NODE_RANK": "2", "PORT": "29500"}, "NODE_RANK=2 must be below NNODES=2"),
    ({"NPROC_PER_NODE": "eight"}, "NPROC_PER_NODE='eight' is not an integer"),
    ({"NPROC_PER_NODE": "2", "NNODES": "x"}, "NNODES='x' is not an integer"),
    ({"NPROC_PER_NODE": "0"}, "NPROC_PER_NODE='0' is out of range"),
    ({"NNODES": "2", "NODE_RANK": "-1", "PORT": "1"}, "NODE_RANK='-1' is out of range"),
])  # fmt: skip
def test_launch_command_rejects_bad_env(env, message):
    with pytest.raises(UsageError, match=message):
        build_launch_command(SCRIPT, [], env)


@pytest.mark.parametrize("args", [["cfg", "--launcher", "slurm"], ["cfg", "--launcher=slurm"]])
def test_launch_command_none_when_launcher_given(args):
    assert build_launch_command(SCRIPT, args, {"NPROC_PER_NODE": "8", "PORT": "1"}) is None


def test_train_with_nproc_runs_torchrun_and_returns_its_code(monkeypatch):
    calls = []

    def fake_call(command):
        calls.append(command)
        return 7

    monkeypatch.setattr(entry_point.subprocess, "call", fake_call)
    monkeypatch.setenv("NPROC_PER_NODE", "2")
    monkeypatch.setenv("PORT", "24680")
    monkeypatch.delenv("NNODES", raising=False)
    monkeypatch.delenv("NODE_RANK", raising=False)
    monkeypatch.delenv("ADDR", raising=False)
    assert main(["train", "some_cfg", "--seed", "3"]) == 7
    assert calls == [[
        sys.executable, "-m", "xtuner.utils.launch",
        "--nnodes=1", "--node_rank=0", "--nproc_per_node=2",
        "--master_addr=127.0.0.1", "--master_port=24680",
        str(tools_dir() / "train.py"), "some_cfg", "--seed", "3", "--launcher", "pytorch",
    ]]  # fmt: skip


def test_train_with_nproc_warns_about_random_port(monkeypatch):
    monkeypatch.setattr(entry_point.subprocess, "call", lambda command: 0)
    monkeypatch.setenv("NPROC_PER_NODE", "2")
    monkeypatch.delenv("PORT", raising=False)
    monkeypatch.delenv("NNODES", raising=False)
    with pytest.warns(UserWarning, match=r"PORT is not set; using 2\d{4}"):
        assert main(["train", "some_cfg"]) == 0


def test_train_help_with_nproc_does_not_launch(monkeypatch, capsys):
    def no_call(command):
        raise AssertionError(f"launched {command}")

    monkeypatch.setattr(entry_point.subprocess, "call", no_call)
    monkeypatch.setenv("NPROC_PER_NODE", "2")
    assert main(["train", "-h"]) == 0
    assert "--deepspeed" in capsys.readouterr().out


def test_bad_launch_env_is_a_one_line_error(monkeypatch, capsys):
    monkeypatch.setattr(entry_point.subprocess, "call", lambda command: 0)
    monkeypatch.setenv("NPROC_PER_NODE", "many")
    assert main(["train", "some_cfg"]) == 2
    assert _err_lines(capsys) == [
        "xtuner: error: environment variable NPROC_PER_NODE='many' is not an integer"
    ]


def test_python_dash_m_xtuner_is_the_same_command(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "xtuner", "version"], capture_output=True,
                          text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"{__version__}\n"
    proc = subprocess.run([sys.executable, "-m", "xtuner", "trian"], capture_output=True,
                          text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "xtuner: error: unknown mode 'trian' (did you mean 'train'?); run `xtuner help`"
    ]


def _launch_workers(tmp_path, body: str, *args: str) -> subprocess.CompletedProcess:
    """The torchrun the launch command runs, over two workers running ``body``."""
    from tests.ports import free_port

    worker = tmp_path / "worker.py"
    worker.write_text("import os, sys\n" + body)
    env = {**os.environ, "NPROC_PER_NODE": "2", "PORT": str(free_port()), "OMP_NUM_THREADS": "1"}
    env.pop("NNODES", None)
    env.pop("XTUNER_ERROR_DIR", None)
    command = build_launch_command(worker, list(args), env)[:-2]  # no --launcher
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("exit_status", [0, 2])
def test_a_failed_worker_is_one_line_and_its_exit_status(tmp_path, exit_status):
    """A worker that prints its own message and fails: no torchrun traceback or failure
    table, one line naming the rank, and its exit status is the run's."""
    proc = _launch_workers(tmp_path, "if os.environ['RANK'] == '1' and int(sys.argv[1]):\n"
                           "    print('Segmentation fault', file=sys.stderr)\n"
                           "    sys.exit(int(sys.argv[1]))\n", str(exit_status))
    assert proc.returncode == exit_status, proc.stderr[-2000:]
    if exit_status:
        assert "Traceback" not in proc.stderr and "ChildFailedError" not in proc.stderr
        assert "Segmentation fault" in proc.stderr
        assert "xtuner: worker rank 1 failed with exit status 2; see its messages above" \
            in proc.stderr.splitlines()


# torchrun stops the other workers as soon as one fails: a worker that fails on purpose
# first waits (up to a minute) for rank 1's report, which a slow machine may still be
# importing its way to.
_WAIT_FOR_RANK_1 = (
    "import time\n"
    "def wait_for_rank_1():\n"
    "    path = os.path.join(os.environ['XTUNER_ERROR_DIR'], 'rank1')\n"
    "    for _ in range(600):\n"
    "        if os.path.exists(path) and os.path.getsize(path):\n"
    "            return\n"
    "        time.sleep(0.1)\n")


def test_a_users_mistake_is_printed_once_for_all_ranks(tmp_path):
    """Every rank reads the same config and fails with the same one-line error: the launcher
    prints it once; a line only one rank reports is printed too."""
    body = (_WAIT_FOR_RANK_1 +
            "from xtuner.utils.cli import run_main\n"
            "from xtuner.utils.errors import ConfigError\n"
            "def main(argv):\n"
            "    if sys.argv[1:]:  # let rank 1 report before torchrun stops it\n"
            "        wait_for_rank_1()\n"
            "    raise ConfigError('cfg.py:3: the config is wrong')\n"
            "def other(argv):\n"
            "    raise ConfigError('only rank 1 sees this')\n"
            "sys.exit(run_main(other if os.environ['RANK'] == '1' and sys.argv[1:] else main,\n"
            "                  prog='xtuner train'))\n")
    proc = _launch_workers(tmp_path, body)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.splitlines()
    assert lines.count("xtuner train: error: cfg.py:3: the config is wrong") == 1, lines
    # nor torchrun's own "failed (exitcode: 2) local_rank: 0 ..." log line
    assert not [line for line in lines
                if "worker rank" in line or "Traceback" in line or "exitcode" in line]
    proc = _launch_workers(tmp_path, body, "differ")
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.splitlines()
    assert lines.count("xtuner train: error: cfg.py:3: the config is wrong") == 1, lines
    assert lines.count("xtuner train: error: only rank 1 sees this") == 1, lines


def test_a_worker_killed_by_a_signal_is_named_after_the_lines_other_workers_left(tmp_path):
    """Rank 0 dies of SIGKILL (as of the host's out-of-memory killer) while rank 1 has
    reported a user error: both lines are printed, and the exit status is 128 + 9."""
    body = (_WAIT_FOR_RANK_1 +
            "import signal\n"
            "from xtuner.utils.launch import report_error\n"
            "if os.environ['RANK'] == '1':\n"
            "    report_error('xtuner train: error: rank 1 saw this first')\n"
            "    time.sleep(30)\n"
            "else:\n"
            "    wait_for_rank_1()\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n")
    proc = _launch_workers(tmp_path, body)
    assert proc.returncode == 128 + 9, proc.stderr[-2000:]
    lines = proc.stderr.splitlines()
    assert lines.count("xtuner train: error: rank 1 saw this first") == 1, lines
    assert "xtuner: worker rank 0 was killed by signal 9; see the messages above" in lines
