"""The ``xtuner`` command: dispatches ``xtuner MODE ARGS`` to one tool script per mode.

A single process runs the tool in-process (``main(argv)``). With ``NPROC_PER_NODE`` or
``NNODES`` above 1, modes that train re-run their script under torchrun
(``python -m xtuner.utils.launch ... --launcher pytorch``, which reports a failed worker in one
line) and return the failed worker's exit code.
``--launcher slurm`` runs the tool directly, as srun has already started one process per GPU.
"""
from __future__ import annotations

import importlib.util
import os
import random
import subprocess
import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .utils.cli import run_main
from .utils.errors import UsageError, did_you_mean
from .version import __version__

__all__ = ["cli", "main", "MODES", "build_launch_command"]


@dataclass(frozen=True)
class Mode:
    """One ``xtuner MODE``: its tool script (relative to the tools folder) and its summary."""

    script: str
    summary: str
    distributed: bool = False


MODES: dict[str, Mode | dict[str, Mode]] = {
    "list-cfg": Mode("list_cfg.py", "list the shipped configs (-p PATTERN to filter)"),
    "copy-cfg": Mode("copy_cfg.py", "copy a shipped config to DIR/NAME_copy.py"),
    "train": Mode("train.py", "fine-tune a model from a config", distributed=True),
    "test": Mode("test.py", "evaluate a training checkpoint on a config's test set",
                 distributed=True),
    "convert": {
        "pth_to_hf": Mode("model_converters/pth_to_hf.py",
                          "turn a training checkpoint into a Hugging Face model or adapter"),
        "merge": Mode("model_converters/merge.py", "merge an adapter into its base model"),
        "split": Mode("model_converters/split.py", "re-shard a model to one tensor per shard"),
    },
    "benchmark": Mode("benchmark.py", "measure training speed and memory of a config "
                      "(synthetic data)", distributed=True),
    "chat": Mode("chat.py", "chat with a model (and adapter) in the terminal"),
    "check-custom-dataset": Mode("check_custom_dataset.py",
                                 "validate the training data a config describes"),
    "preprocess": Mode("preprocess.py",
                       "tokenize and pack a config's training data into DIR; "
                       "also v0's `arxiv`/`refcoco` converters"),
    "mmbench": Mode("mmbench.py", "evaluate a LLaVA model on an MMBench TSV"),
    "eval_refcoco": Mode("eval_refcoco.py", "evaluate a LLaVA model's RefCOCO grounding "
                         "(IoU > 0.5 accuracy)"),
    "log-dataset": Mode("log_dataset.py", "show processed samples of a config's dataset"),
    "list-dataset-format": Mode("list_dataset_format.py", "list the supported data formats"),
    "version": Mode("", "print the version"),
}

USAGE = """\
usage: xtuner MODE [MODE_ARGS] [ARGS]

Modes:
{modes}

Examples:
  xtuner list-cfg -p qwen2_5
  xtuner copy-cfg qwen2_5_7b_instruct_qlora_alpaca_e3 .
  xtuner train CONFIG [--deepspeed deepspeed_zero2] [--work-dir DIR] [--resume auto]
  xtuner train CONFIG --tensorboard   (then: tensorboard --logdir work_dirs/CONFIG)
  NPROC_PER_NODE=8 xtuner train CONFIG --deepspeed deepspeed_zero3
  xtuner train CONFIG --memory-budget 8GB   (QLoRA of a 7-8B model on one 8 GB GPU)
  xtuner convert pth_to_hf CONFIG work_dirs/CONFIG/iter_500.pth ./hf
  xtuner convert merge BASE ./hf ./merged --max-shard-size 2GB
  xtuner chat ./merged --prompt-template qwen_chat
  xtuner check-custom-dataset CONFIG
  xtuner benchmark CONFIG --baseline [--random-init] [--deepspeed deepspeed_zero2]
  xtuner preprocess CONFIG --save-dir DIR
  xtuner preprocess arxiv SRC DST --start-date 2020-01-01 --categories cs.AI cs.CL
  xtuner preprocess refcoco --ann-path ANN --image-path IMAGES --save-path DIR
  xtuner test CONFIG --checkpoint work_dirs/CONFIG/iter_500.pth
  xtuner mmbench LLM --llava DIR --visual-encoder VIT --prompt-template vicuna --data-path TSV
  xtuner eval_refcoco LLM --llava DIR --visual-encoder VIT --prompt-template vicuna --data-path JSON

Multi-GPU: NPROC_PER_NODE=N (and NNODES, NODE_RANK, ADDR, PORT for several nodes) runs the
mode under torchrun; under Slurm use `srun ... xtuner train CONFIG --launcher slurm`.
Run `xtuner MODE -h` for a mode's options. XTUNER_DEBUG=1 shows tracebacks for errors.
A model folder's own Python code (an 'auto_map' in its config.json) runs only with
--trust-remote-code.
"""


def usage() -> str:
    """The top-level help text, listing every mode."""
    lines = []
    for name, mode in MODES.items():
        if isinstance(mode, dict):
            subs = ", ".join(mode)
            lines.append(f"  {name:<22} {{{subs}}}")
            lines.extend(f"    {name} {sub:<15} {m.summary}" for sub, m in mode.items())
        else:
            lines.append(f"  {name:<22} {mode.summary}")
    return USAGE.format(modes="\n".join(lines))


def _int_env(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name, "")
    if value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise UsageError(f"environment variable {name}={value!r} is not an integer") from None
    if number < 0 or (name != "NODE_RANK" and number < 1):
        raise UsageError(f"environment variable {name}={value!r} is out of range")
    return number


def build_launch_command(script: Path, args: Sequence[str],
                         env: Mapping[str, str] | None = None) -> list[str] | None:
    """The ``torchrun`` command line for a multi-process run, or ``None`` for one process.

    Reads ``NPROC_PER_NODE``, ``NNODES``, ``NODE_RANK``, ``ADDR`` and ``PORT`` as XTuner v0
    did. A missing ``PORT`` gets a random one in [20000, 29999] (all nodes of a multi-node job
    must then set it).
    """
    env = os.environ if env is None else env
    args = list(args)
    if _launcher_given(args):
        return None
    nproc = _int_env(env, "NPROC_PER_NODE", 1)
    nnodes = _int_env(env, "NNODES", 1)
    if nproc == 1 and nnodes == 1:
        return None
    node_rank = _int_env(env, "NODE_RANK", 0)
    if node_rank >= nnodes:
        raise UsageError(f"NODE_RANK={node_rank} must be below NNODES={nnodes}")
    port = env.get("PORT") or ""
    if not port:
        if nnodes > 1:
            raise UsageError("a multi-node run needs the same PORT set on every node")
        port = str(random.randint(20000, 29999))
    return [
        sys.executable, "-m", "xtuner.utils.launch",
        f"--nnodes={nnodes}",
        f"--node_rank={node_rank}",
        f"--nproc_per_node={nproc}",
        f"--master_addr={env.get('ADDR') or '127.0.0.1'}",
        f"--master_port={port}",
        str(script), *args, "--launcher", "pytorch",
    ]


def _launcher_given(args: Sequence[str]) -> bool:
    return any(a == "--launcher" or a.startswith("--launcher=") for a in args)


def _load_tool(script: Path):
    spec = importlib.util.spec_from_file_location(
        "xtuner_tool_" + script.stem, script, submodule_search_locations=None)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _resolve_mode(argv: list[str]) -> tuple[str, Mode, list[str]]:
    name, rest = argv[0], argv[1:]
    mode = MODES.get(name)
    if mode is None:
        raise UsageError(f"unknown mode '{name}'{did_you_mean(name, MODES)}; run `xtuner help`")
    if isinstance(mode, dict):
        if not rest or rest[0] in ("-h", "--help"):
            subs = "\n".join(f"  xtuner {name} {s:<12} {m.summary}" for s, m in mode.items())
            print(f"usage: xtuner {name} {{{','.join(mode)}}} ...\n\n{subs}")
            if not rest:
                raise UsageError(f"`xtuner {name}` needs one of: {', '.join(mode)}")
            return name, Mode("", ""), []
        sub = rest[0]
        if sub not in mode:
            raise UsageError(f"unknown {name} mode '{sub}'{did_you_mean(sub, mode)}; "
                             f"choose one of: {', '.join(mode)}")
        return f"{name} {sub}", mode[sub], rest[1:]
    return name, mode, rest


def _dispatch(argv: list[str]) -> int:
    if argv and argv[0] == "help" and argv[1:]:  # `xtuner help train`: that mode's help
        return _dispatch([*argv[1:], "-h"])
    if not argv or argv[0] in ("help", "-h", "--help"):
        print(usage())
        return 0
    if argv[0] in ("version", "-v", "--version"):
        print(__version__)
        return 0
    prog, mode, args = _resolve_mode(argv)
    if not mode.script:  # `xtuner convert -h`
        return 0
    from .utils.paths import tools_dir

    script = tools_dir() / mode.script
    if not script.is_file():
        print(f"xtuner {prog}: not implemented yet", file=sys.stderr)
        return 2
    if mode.distributed and "-h" not in args and "--help" not in args:
        command = build_launch_command(script, args)
        if command is not None:
            if "PORT" not in os.environ:
                warnings.warn(f"PORT is not set; using {command[7].split('=')[1]}", stacklevel=1)
            return subprocess.call(command)
    tool = _load_tool(script)
    return run_main(tool.main, args, prog=f"xtuner {prog}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``xtuner`` with ``argv`` (default ``sys.argv[1:]``) and return the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return run_main(lambda _: _dispatch(argv), None, prog="xtuner")


def cli() -> None:
    """Console-script entry: exit with :func:`main`'s status."""
    sys.exit(main())


if __name__ == "__main__":
    cli()
