"""``xtuner train CONFIG``: fine-tune a model as a config describes.

Without ``--deepspeed`` it runs mmengine's ``Runner`` (DDP when launched with several
processes); with ``--deepspeed NAME|PATH`` mmengine's ``FlexibleRunner`` with xtuner's
DeepSpeed strategy. ``NPROC_PER_NODE=N xtuner train ...`` starts N processes via torchrun.

The environment, the full config and the hook order go to the run's log file
(``--verbose`` prints them too); the run ends with a one-line summary, and a failure's one-line
message is also the last line of the log file.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence

from xtuner.utils.cfg_options import CfgOptionsAction
from xtuner.utils.cli import ArgumentParser, run_main
from xtuner.utils.remote_code import CONFIG_HINT, add_trust_remote_code_argument


def parse_args(argv: Sequence[str] | None):
    parser = ArgumentParser(prog="xtuner train", description=__doc__)
    parser.add_argument("config", help="config file or catalog name (see `xtuner list-cfg`)")
    parser.add_argument("--work-dir", help="where logs and checkpoints go "
                        "(default: ./work_dirs/<config name>)")
    parser.add_argument("--deepspeed", help="DeepSpeed JSON file or shipped name: "
                        "deepspeed_zero1, deepspeed_zero2, deepspeed_zero2_offload, "
                        "deepspeed_zero3, deepspeed_zero3_offload")
    parser.add_argument("--resume", metavar="PATH|auto", help="resume from a checkpoint, or "
                        "'auto' for the latest one in the work dir")
    parser.add_argument("--seed", type=int, help="random seed (a resumed run keeps its own)")
    parser.add_argument("--cfg-options", nargs="+", action=CfgOptionsAction, metavar="KEY=VALUE",
                        help="override config keys, e.g. train_dataloader.batch_size=2 "
                        "optim_wrapper.optimizer.lr=1e-5")
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"],
                        default="none", help="job launcher (set by xtuner itself for "
                        "NPROC_PER_NODE>1; use slurm under srun)")
    parser.add_argument("--memory-budget", metavar="SIZE",
                        help="plan the run to stay under this much GPU memory, e.g. 8GB "
                             "(config key memory_budget; see the README)")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved config and exit")
    parser.add_argument("--tensorboard", action="store_true",
                        help="also log to TensorBoard, in WORK_DIR/<timestamp>/vis_data "
                        "(pip install 'xtuner[tensorboard]'; then tensorboard --logdir "
                        "WORK_DIR)")
    parser.add_argument("--wandb", action="store_true",
                        help="also log to Weights & Biases (pip install 'xtuner[wandb]'; "
                        "`wandb login` first)")
    parser.add_argument("--verbose", action="store_true",
                        help="also print the environment, the full config and the hook order "
                        "on the terminal (they are always in the run's log file)")
    add_trust_remote_code_argument(parser, config=True)
    parser.add_argument("--local_rank", "--local-rank", type=int, default=0,
                        help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # Cheap checks first: a typo in a name or key is reported before torch is imported.
    from xtuner.engine.config import load_config, merge_cfg_options
    from xtuner.utils.paths import resolve_config

    path = resolve_config(args.config)
    from xtuner.train.script import defines_trainer

    # A Python-API script (`trainer = TrainerConfig(...)`) becomes the same dict config.
    defaults = dict(resume=None, deepspeed=None, vis_backends=[])
    if defines_trainer(path):
        from xtuner.train import Trainer
        from xtuner.train.script import trainer_from_script

        trainer = Trainer.from_config(trainer_from_script(path))
        cfg, defaults = trainer.build_config(str(path)), trainer.prepare_defaults()
    else:
        cfg = load_config(path)
    notes = merge_cfg_options(cfg, args.cfg_options)

    from mmengine import print_log

    from xtuner.engine.train_setup import prepare_train_config
    from xtuner.utils.remote_code import remote_code_errors, set_trust_remote_code

    for note in notes:
        print_log(f"note: {note}", logger="current")
    set_trust_remote_code(cfg, args.trust_remote_code)
    with remote_code_errors(f"the model of {args.config}", CONFIG_HINT):
        prepare_train_config(cfg, work_dir=args.work_dir, launcher=args.launcher,
                             seed=args.seed, resume=args.resume or defaults["resume"],
                             deepspeed=args.deepspeed or defaults["deepspeed"],
                             vis_backends=[n for n in ("tensorboard", "wandb")
                                           if getattr(args, n)] + defaults["vis_backends"],
                             memory_budget=args.memory_budget,
                             check_work_dir=not args.print_config)
    if args.print_config:
        print(cfg.pretty_text)
        return 0
    return _run(cfg, args)


def _run(cfg, args) -> int:
    """Build and train; every way out leaves one line on the terminal and in the log file."""
    from mmengine import print_log

    from xtuner.engine.run_report import (
        interrupted_line,
        log_to_file,
        quiet_console,
        summary_line,
    )
    from xtuner.engine.runner.build import build_runner
    from xtuner.utils.errors import XTunerError
    from xtuner.utils.remote_code import remote_code_errors

    runner = None
    start = time.monotonic()
    try:
        with remote_code_errors(f"the model of {args.config}", CONFIG_HINT):
            with quiet_console(args.verbose):
                runner = build_runner(cfg)
            runner.train()
    except KeyboardInterrupt:
        print_log(interrupted_line(runner, args.config, cfg.work_dir,
                                   with_options=bool(args.cfg_options)), logger="current",
                  level=logging.WARNING)
        return 130
    except XTunerError as exc:
        # The terminal gets this line from run_main; the log file gets the same line.
        log_to_file(f"xtuner train: error: {exc}")
        raise
    except Exception as exc:
        log_to_file(f"xtuner train: crashed with {type(exc).__name__}: {exc} (this is a bug in "
                    "xtuner; the traceback is on the terminal)")
        raise
    print_log(summary_line(runner, args.config, time.monotonic() - start), logger="current")
    return 0

if __name__ == "__main__":
    sys.exit(run_main(main, prog="xtuner train"))
