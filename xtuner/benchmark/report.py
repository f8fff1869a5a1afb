"""Benchmark results: tokens/s, model FLOPs, MFU and memory, as a table or JSON."""
from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field

import torch

from xtuner.engine.hooks.throughput_hook import estimate_flops_per_token
from xtuner.parallel.sequence import get_sequence_parallel_world_size

from .meter import StepMeter
from .sequence_parallel import activation_bytes_per_token, longest_packed_row

__all__ = ["RunResult", "summarize", "format_table", "write_json", "peak_tflops",
           "FLOPS_FORMULA", "estimate_longest_rows"]

FLOPS_FORMULA = ("model FLOPs per token = (4 + 2*f)*N + 6*layers*heads*head_dim*L: N = weights "
                 "used by the matmuls (embeddings excluded, output head included), f = trainable "
                 "fraction (1 for full fine-tuning, so 6*N), L = real length of the token's "
                 "sample (causal, no cross-sample attention); recomputation by activation "
                 "checkpointing is not counted")

# Dense bf16/fp16 tensor-core peak, TFLOP/s, by a substring of torch.cuda.get_device_name().
_PEAK_TFLOPS = (
    ("H200", 989.4), ("H100 PCIe", 756.0), ("H100 NVL", 835.5), ("H100", 989.4), ("H800", 989.4),
    ("GH200", 989.4), ("B200", 2250.0), ("A100", 312.0), ("A800", 312.0), ("L40S", 362.1),
    ("L40", 181.0), ("A10G", 125.0), ("A10", 125.0), ("RTX 4090", 165.2), ("L4", 121.0),
)


def peak_tflops(device_name: str | None = None) -> float | None:
    """The GPU's dense bf16 peak in TFLOP/s (None on the CPU or for an unknown GPU)."""
    if device_name is None:
        if not torch.cuda.is_available():
            return None
        device_name = torch.cuda.get_device_name()
    for key, value in _PEAK_TFLOPS:
        if key in device_name:
            return value
    return None


@dataclass
class RunResult:
    """One measured run (``xtuner`` or the plain Hugging Face ``baseline``)."""

    name: str
    device: str
    steps: int
    tokens_per_step: float
    tokens_per_sec: float
    model_tflops: float
    mfu: float | None
    peak_allocated_gib: float | None
    peak_reserved_gib: float | None
    data_ms: float
    compute_ms: float
    optimizer_ms: float
    step_ms: float
    settings: dict = field(default_factory=dict)
    # estimated longest packed row per GPU, by sequence_parallel_size (str keys, for JSON)
    longest_row_tokens: dict = field(default_factory=dict)
    activation_kib_per_token: float | None = None
    memory_budget_gib: float | None = None


def estimate_longest_rows(peak_bytes: float, static_bytes: float, row_tokens: float,
                          budget_bytes: float, measured_sp_size: int = 1,
                          sizes=(1, 2)) -> tuple[dict, float]:
    """``({str(N): longest packed row}, activation bytes per token)`` for each
    ``sequence_parallel_size`` in ``sizes`` (see :mod:`xtuner.benchmark.sequence_parallel`)."""
    per_token = activation_bytes_per_token(peak_bytes, static_bytes, row_tokens,
                                           measured_sp_size)
    rows = {str(n): longest_packed_row(budget_bytes, static_bytes, per_token, n)
            for n in sizes}
    return rows, per_token


def _row_estimate(meter: StepMeter, tokens_per_step: float, budget_bytes: float | None):
    if not torch.cuda.is_available() or not meter.static_allocated:
        return {}, None, None
    if budget_bytes is None:  # the default budget of activation checkpointing 'auto'
        budget_bytes = 0.9 * torch.cuda.get_device_properties(0).total_memory
    try:
        rows, per_token = estimate_longest_rows(
            meter.peak_allocated, meter.static_allocated, tokens_per_step, budget_bytes,
            get_sequence_parallel_world_size())
    except ValueError:
        return {}, None, None
    return rows, per_token / 1024, budget_bytes / 2**30


def _mean(values) -> float:
    return statistics.fmean(values) if values else 0.0


def summarize(name: str, meter: StepMeter, config, trainable_fraction: float,
              settings: dict | None = None, peak: float | None = None,
              memory_budget_bytes: float | None = None) -> RunResult:
    """Turn a finished meter into per-GPU numbers; on a GPU also the longest packed row that
    fits in ``memory_budget_bytes`` (default 90% of the GPU) without and with sequence
    parallelism."""
    times = meter.finish()
    steps = len(times.total)
    lengths = [n for row in meter.sample_lengths for n in row]
    tokens = sum(lengths)
    wall = meter.wall_seconds or sum(times.total)
    # per GPU: with sequence parallelism the N ranks of a group share each row's tokens
    tokens_per_sec = tokens / get_sequence_parallel_world_size() / wall if wall else 0.0
    flops = estimate_flops_per_token(config, lengths, trainable_fraction) if lengths else 0.0
    tflops = flops * tokens_per_sec / 1e12
    peak = peak_tflops() if peak is None else peak
    cuda = torch.cuda.is_available()
    rows, kib_per_token, budget_gib = _row_estimate(meter, tokens / max(1, steps),
                                                    memory_budget_bytes)
    return RunResult(
        name=name,
        device=torch.cuda.get_device_name() if cuda else "cpu",
        steps=steps,
        tokens_per_step=tokens / max(1, steps),
        tokens_per_sec=tokens_per_sec,
        model_tflops=tflops,
        mfu=tflops / peak if peak else None,
        peak_allocated_gib=meter.peak_allocated / 2**30 if cuda else None,
        peak_reserved_gib=meter.peak_reserved / 2**30 if cuda else None,
        data_ms=1000 * _mean(times.data),
        compute_ms=1000 * _mean(times.compute),
        optimizer_ms=1000 * _mean(times.optimizer),
        step_ms=1000 * wall / max(1, steps),
        settings=dict(settings or {}),
        longest_row_tokens=rows,
        activation_kib_per_token=kib_per_token,
        memory_budget_gib=budget_gib,
    )


def _cell(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_table(results: list[RunResult]) -> str:
    """A small fixed-width table, one column per run, plus the speed-up over the baseline."""
    rows = [
        ("tokens/s per GPU", lambda r: _cell(r.tokens_per_sec, ",.0f")),
        ("model TFLOP/s per GPU", lambda r: _cell(r.model_tflops, ".1f")),
        ("MFU", lambda r: "-" if r.mfu is None else f"{100 * r.mfu:.1f}%"),
        ("peak allocated (GiB)", lambda r: _cell(r.peak_allocated_gib, ".2f")),
        ("peak reserved (GiB)", lambda r: _cell(r.peak_reserved_gib, ".2f")),
        ("step (ms)", lambda r: _cell(r.step_ms, ".1f")),
        ("  data (ms)", lambda r: _cell(r.data_ms, ".1f")),
        ("  forward+backward (ms)", lambda r: _cell(r.compute_ms, ".1f")),
        ("  optimizer (ms)", lambda r: _cell(r.optimizer_ms, ".1f")),
        ("tokens per step", lambda r: _cell(r.tokens_per_step, ",.0f")),
        ("measured steps", lambda r: str(r.steps)),
    ]
    for size in sorted({n for r in results for n in r.longest_row_tokens}, key=int):
        rows.append((f"longest packed row, sequence_parallel_size={size} (est.)",
                     lambda r, n=size: _cell(r.longest_row_tokens.get(n), ",d")))
    header = [""] + [r.name for r in results]
    body = [[label] + [fmt(r) for r in results] for label, fmt in rows]
    widths = [max(len(row[i]) for row in [header] + body) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(widths[0]) if i == 0 else cell.rjust(widths[i])
                       for i, cell in enumerate(row)) for row in [header] + body]
    lines.insert(1, "-" * len(lines[0]))
    ours = next((r for r in results if r.name == "xtuner"), None)
    base = next((r for r in results if r.name == "hf-baseline"), None)
    if ours and base and base.tokens_per_sec:
        lines.append(f"speed-up over the plain Hugging Face loop: "
                     f"{ours.tokens_per_sec / base.tokens_per_sec:.2f}x")
    device = results[0].device if results else "cpu"
    lines.append(f"device: {device}; peak {_cell(peak_tflops(), '.1f')} TFLOP/s (bf16 dense)")
    for r in results:
        if r.settings:
            lines.append(f"{r.name}: " + ", ".join(f"{k}={v}" for k, v in r.settings.items()))
    for r in results:
        if r.longest_row_tokens:
            lines.append(f"{r.name}: longest packed row = (budget {r.memory_budget_gib:.1f} GiB "
                         f"- weights, gradients and optimizer states) / "
                         f"{r.activation_kib_per_token:.1f} KiB of activations per token, "
                         "times sequence_parallel_size (each GPU runs 1/N of the tokens)")
    lines.append(FLOPS_FORMULA)
    return "\n".join(lines)


def write_json(results: list[RunResult], path: str) -> None:
    """Write the results (and the FLOPs formula) for scripts."""
    payload = {"results": [asdict(r) for r in results], "flops_formula": FLOPS_FORMULA}
    if len(results) == 2 and results[1].tokens_per_sec:
        payload["speedup"] = results[0].tokens_per_sec / results[1].tokens_per_sec
    with open(path, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=2)
