"""``xtuner benchmark CONFIG``: training speed and memory of a config's model and method.

Runs ``--warmup`` + ``--steps`` training steps through the same runner, model, optimizer and
DeepSpeed setup as ``xtuner train``, on synthetic rows packed to the config's max_length (no
dataset needed), and prints tokens/s per GPU, model TFLOP/s and MFU, peak memory and the time
split. ``--baseline`` first runs the same steps as a plain Hugging Face loop (SDPA, standard
cross-entropy, torch AdamW) and prints the speed-up. ``--random-init`` builds the model from
its config.json with random weights, to size a job before downloading them.
"""
from __future__ import annotations

import argparse
import gc
import os
import os.path as osp
import sys
from collections.abc import Sequence

from xtuner.utils.cfg_options import CfgOptionsAction
from xtuner.utils.cli import ArgumentParser, run_main
from xtuner.utils.errors import UsageError
from xtuner.utils.remote_code import add_trust_remote_code_argument


def _sample_lengths(text: str) -> tuple[int, int]:
    try:
        low, high = (int(v) for v in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN:MAX token counts, got '{text}'") \
            from None
    if not 1 <= low <= high:
        raise argparse.ArgumentTypeError(f"expected 1 <= MIN <= MAX, got '{text}'")
    return low, high


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parse_args(argv: Sequence[str] | None):
    parser = ArgumentParser(prog="xtuner benchmark", description=__doc__)
    parser.add_argument("config", help="config file or catalog name (see `xtuner list-cfg`)")
    parser.add_argument("--steps", type=_positive, default=20, help="measured steps (20)")
    parser.add_argument("--warmup", type=_non_negative, default=5,
                        help="steps run before measuring (5; 'auto' checkpointing settles in 2)")
    parser.add_argument("--seq-len", type=_positive,
                        help="tokens per packed row (default: the config's max_length)")
    parser.add_argument("--sample-len", type=_sample_lengths, default=(128, 1024),
                        metavar="MIN:MAX", help="lengths of the samples packed into a row "
                        "(default 128:1024)")
    parser.add_argument("--baseline", action="store_true",
                        help="also run a plain Hugging Face training loop and print the ratio")
    parser.add_argument("--deepspeed", help="DeepSpeed JSON file or shipped name, as for "
                        "`xtuner train`")
    parser.add_argument("--random-init", action="store_true",
                        help="random weights built from the model's config.json")
    parser.add_argument("--memory-budget", metavar="SIZE",
                        help="plan the run to stay under this much GPU memory, as "
                        "`xtuner train --memory-budget` (e.g. 8GB)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    add_trust_remote_code_argument(parser, config=True)
    parser.add_argument("--profile", action="store_true",
                        help="after the measured steps, profile 3 more and print the kernels "
                        "that took the most time")
    parser.add_argument("--peak-tflops", type=float,
                        help="the GPU's peak TFLOP/s for MFU (default: known for "
                        "H100/H200/A100 and others)")
    parser.add_argument("--work-dir", help="logs and the --random-init model "
                        "(default: ./work_dirs/benchmark/<config name>)")
    parser.add_argument("--cfg-options", nargs="+", action=CfgOptionsAction, metavar="KEY=VALUE",
                        help="override config keys, e.g. model.use_activation_checkpointing=False")
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"],
                        default="none", help=argparse.SUPPRESS)
    parser.add_argument("--local_rank", "--local-rank", type=int, default=0,
                        help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _checkpointing_setting(model) -> str:
    plan = getattr(model, "checkpointing_plan", None)
    if plan is not None:
        return f"auto: {plan.checkpointed}/{len(plan.layers)} layers"
    return "all layers" if model.is_checkpointing_activations else "off"


def _run_xtuner(cfg, args, meter_steps):
    from xtuner.benchmark.meter import MeterHook, StepMeter
    from xtuner.benchmark.setup import describe
    from xtuner.engine.hooks.throughput_hook import trainable_fraction
    from xtuner.engine.runner.build import build_runner
    from xtuner.model.utils import unwrap_model

    meter = StepMeter(args.warmup, meter_steps)
    runner = build_runner(cfg)
    runner.register_hook(MeterHook(meter), priority="VERY_HIGH")
    if args.profile:
        import torch
        from mmengine.hooks import ProfilerHook

        cuda = torch.cuda.is_available()
        runner.register_hook(ProfilerHook(
            by_epoch=False, profile_times=cfg.train_cfg.max_iters, activity_with_cuda=cuda,
            schedule=dict(wait=args.warmup + meter_steps, warmup=1, active=3, repeat=1),
            on_trace_ready=dict(type="log_trace", row_limit=25, sort_by=(
                "self_device_time_total" if cuda else "self_cpu_time_total"))))
    runner.train()
    model = unwrap_model(runner.model)
    llm = model.llm
    settings = describe(cfg)
    settings["model"] = args.model_name
    settings.update(activation_checkpointing=_checkpointing_setting(model),
                    liger_kernels=bool(getattr(model, "use_liger_kernel", False)),
                    attention=str(getattr(llm.config, "_attn_implementation", "?")),
                    deepspeed=args.deepspeed or "none",
                    gpus=int(os.environ.get("WORLD_SIZE", "1")))
    return meter, llm.config, trainable_fraction(llm), settings


def _check_json_path(path: str | None) -> None:
    """``--json`` is written after the whole benchmark: refuse a path it cannot be written to
    now, not once the results are in."""
    from xtuner.utils.errors import UsageError

    if path is None:
        return
    parent = osp.dirname(osp.abspath(path))
    if osp.isdir(path) or not osp.isdir(parent):
        what = "is a folder" if osp.isdir(path) else f"has no folder {parent}"
        raise UsageError(f"--json {path} {what}; name a file, e.g. --json results.json")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    _check_json_path(args.json)
    from xtuner.engine.config import load_config, merge_cfg_options
    from xtuner.utils.paths import resolve_config
    from xtuner.utils.remote_code import CONFIG_HINT, remote_code_errors, set_trust_remote_code

    cfg = load_config(resolve_config(args.config))
    notes = merge_cfg_options(cfg, args.cfg_options)
    set_trust_remote_code(cfg, args.trust_remote_code)
    with remote_code_errors(f"the model of {args.config}", CONFIG_HINT):
        return _benchmark(cfg, args, notes)


def _benchmark(cfg, args, notes) -> int:
    from mmengine import print_log

    from xtuner.benchmark.report import format_table, summarize, write_json
    from xtuner.benchmark.setup import (
        benchmark_config,
        llm_path,
        make_random_init_model,
        vision_tower_path,
    )
    from xtuner.engine.train_setup import prepare_train_config

    for note in notes:
        print_log(f"note: {note}", logger="current")
    name = osp.splitext(osp.basename(cfg.filename))[0]
    work_dir = args.work_dir or osp.join("work_dirs", "benchmark", name)
    model_path = None
    args.model_name = osp.basename(llm_path(cfg).rstrip("/"))
    vision_path = None
    if args.random_init:
        model_path = make_random_init_model(
            llm_path(cfg), work_dir, trust_remote_code=cfg.model.llm.get("trust_remote_code"))
        if cfg.model.get("visual_encoder") is not None:
            vision_path = make_random_init_model(vision_tower_path(cfg), work_dir,
                                                 auto_class="AutoModel")
    if args.baseline and cfg.model.get("visual_encoder") is not None:
        raise UsageError("--baseline compares text models; drop it for a LLaVA config")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if args.baseline and (world > 1 or args.deepspeed):
        raise UsageError("--baseline runs on one GPU without DeepSpeed: drop --deepspeed and "
                         "NPROC_PER_NODE for it")
    extra = 4 if args.profile else 0
    bcfg = benchmark_config(cfg, steps=args.steps + extra, warmup=args.warmup,
                            seq_len=args.seq_len, sample_lengths=args.sample_len,
                            model_path=model_path, vision_path=vision_path)
    prepare_train_config(bcfg, work_dir=work_dir, launcher=args.launcher,
                         deepspeed=args.deepspeed, memory_budget=args.memory_budget)
    results = []
    if args.baseline:
        results.append(_baseline(bcfg, args))
    meter, config, fraction, settings = _run_xtuner(bcfg, args, args.steps)
    results.insert(0, summarize("xtuner", meter, config, fraction, settings,
                                peak=args.peak_tflops))
    if int(os.environ.get("RANK", "0")) == 0:
        print(format_table(results), flush=True)
        if args.json:
            write_json(results, args.json)
    return 0


def _baseline(cfg, args):
    import torch

    from xtuner.benchmark.baseline import run_baseline
    from xtuner.benchmark.report import summarize
    from xtuner.model.utils import build_from_cfg

    dataset = build_from_cfg(dict(cfg.train_dataloader.dataset))
    config, fraction, meter = run_baseline(cfg, dataset, args.warmup, args.steps)
    result = summarize("hf-baseline", meter, config, fraction,
                       {"attention": "sdpa (block-diagonal mask)", "loss": "logits + CE",
                        "optimizer": "torch AdamW (default)"}, peak=args.peak_tflops)
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return result


if __name__ == "__main__":
    sys.exit(run_main(main, prog="xtuner benchmark"))
