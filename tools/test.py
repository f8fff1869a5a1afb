"""``xtuner test CONFIG --checkpoint PTH``: evaluate a training checkpoint on a config's test set.

Builds the config's model, loads the checkpoint's weights (an ``iter_N.pth`` file or a
DeepSpeed checkpoint folder, as ``xtuner train`` saved them; weights the checkpoint does not
hold, such as a LoRA run's frozen base, come from the config), and runs mmengine's test loop
on the config's ``test_dataloader`` with ``test_evaluator`` and ``test_cfg``, as XTuner v0's
``xtuner test`` did. The metrics are printed and written to WORK_DIR/test_metrics.json (the
run's log is in WORK_DIR/<timestamp>/).

For LLaVA models, ``xtuner.evaluation.mmbench_test`` has an MMBench dataset, metric and a test
loop that generates answers (see its docstring for the config lines). Without --checkpoint the
model is tested as the config builds it.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from xtuner.utils.cfg_options import CfgOptionsAction
from xtuner.utils.cli import ArgumentParser, run_main
from xtuner.utils.remote_code import CONFIG_HINT, add_trust_remote_code_argument

TEST_KEYS = ("test_dataloader", "test_evaluator", "test_cfg")


def parse_args(argv: Sequence[str] | None):
    parser = ArgumentParser(prog="xtuner test", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="config file or catalog name (see `xtuner list-cfg`)")
    parser.add_argument("--checkpoint", metavar="PTH",
                        help="iter_N.pth (file, or DeepSpeed folder) saved by `xtuner train`")
    parser.add_argument("--work-dir", help="where metrics and logs go (default: the config's "
                        "work_dir, else ./work_dirs/<config name>)")
    parser.add_argument("--cfg-options", nargs="+", action=CfgOptionsAction, metavar="KEY=VALUE",
                        help="override config keys, e.g. test_dataloader.batch_size=1")
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"],
                        default="none", help="job launcher")
    add_trust_remote_code_argument(parser, "the config's model folder's", config=True)
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="unpickle any object in PTH (torch.load weights_only=False); "
                        "needed only for checkpoints not written by xtuner")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=0,
                        help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from xtuner.engine.config import load_config, merge_cfg_options
    from xtuner.utils.errors import ConfigError
    from xtuner.utils.paths import resolve_config

    path = resolve_config(args.config)
    cfg = load_config(path)
    notes = merge_cfg_options(cfg, args.cfg_options)
    missing = [k for k in TEST_KEYS if cfg.get(k) is None]
    if missing:
        raise ConfigError(f"{args.config} has no {', '.join(missing)}; `xtuner test` runs a "
                          "config's test section: add it (xtuner/evaluation/mmbench_test.py "
                          "shows one for MMBench)")
    if args.checkpoint is not None and not Path(args.checkpoint).exists():
        from xtuner.utils.errors import CheckpointError

        raise CheckpointError(f"checkpoint not found: {args.checkpoint}")
    from mmengine import print_log

    for note in notes:
        print_log(f"note: {note}", logger="current")
    cfg.launcher = args.launcher
    cfg.work_dir = args.work_dir or cfg.get("work_dir") or str(
        Path("work_dirs") / Path(str(path)).stem)
    # The checkpoint is loaded below with xtuner's checks; the config's own load_from/resume
    # would load something else over it.
    cfg.load_from, cfg.resume = None, False
    # Testing needs no DeepSpeed engine: mmengine's Runner (DDP with several processes) runs it.
    for key in ("strategy", "runner_type"):
        cfg.pop(key, None)
    from xtuner.utils.remote_code import remote_code_errors, set_trust_remote_code

    set_trust_remote_code(cfg, args.trust_remote_code)
    with remote_code_errors(f"the model of {args.config}", CONFIG_HINT):
        metrics = _test(cfg, args)
    metrics = {k: (v.item() if hasattr(v, "item") else v) for k, v in (metrics or {}).items()}
    from mmengine.dist import is_main_process

    if not is_main_process():  # every rank has the gathered metrics; one reports them
        return 0
    out = Path(cfg.work_dir) / "test_metrics.json"
    out.write_text(json.dumps({"config": str(path), "checkpoint": args.checkpoint,
                               "metrics": metrics}, indent=2, default=str), encoding="utf-8")
    print("\n".join(f"{k}: {v}" for k, v in metrics.items()))
    print(f"Metrics written to {out}")
    return 0


def _test(cfg, args) -> dict:
    from mmengine import print_log

    from xtuner.engine.runner.build import build_runner
    from xtuner.model.export import load_into_model, load_training_checkpoint

    runner = build_runner(cfg)
    if args.checkpoint is not None:
        state = load_training_checkpoint(args.checkpoint, trust=args.trust_checkpoint)
        model = getattr(runner.model, "module", runner.model)
        load_into_model(model, state, source=args.checkpoint, config=str(args.config))
        print_log(f"Load checkpoint from {args.checkpoint}", logger="current")
    return runner.test()


if __name__ == "__main__":
    sys.exit(run_main(main, prog="xtuner test"))
