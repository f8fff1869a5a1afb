"""``xtuner train CONFIG``: fine-tune a model as a config describes.

Without ``--deepspeed`` it runs mmengine's ``Runner`` (DDP when launched with several
processes); with ``--deepspeed NAME|PATH`` mmengine's ``FlexibleRunner`` with xtuner's
DeepSpeed strategy. ``NPROC_PER_NODE=N xtuner train ...`` starts N processes via torchrun.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mmengine.config import DictAction

from xtuner.utils.cli import ArgumentParser, run_main


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
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, metavar="KEY=VALUE",
                        help="override config keys, e.g. train_dataloader.batch_size=2 "
                        "optim_wrapper.optimizer.lr=1e-5")
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"],
                        default="none", help="job launcher (set by xtuner itself for "
                        "NPROC_PER_NODE>1; use slurm under srun)")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved config and exit")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=0,
                        help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # Cheap checks first: a typo in a name or key is reported before torch is imported.
    from xtuner.engine.config import load_config, merge_cfg_options
    from xtuner.utils.paths import resolve_config

    cfg = load_config(resolve_config(args.config))
    notes = merge_cfg_options(cfg, args.cfg_options)

    from mmengine import print_log

    from xtuner.engine.train_setup import prepare_train_config

    for note in notes:
        print_log(f"note: {note}", logger="current")
    prepare_train_config(cfg, work_dir=args.work_dir, launcher=args.launcher, seed=args.seed,
                         resume=args.resume, deepspeed=args.deepspeed)
    if args.print_config:
        print(cfg.pretty_text)
        return 0
    from xtuner.engine.runner.build import build_runner

    runner = build_runner(cfg)
    runner.train()
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, prog="xtuner train"))
