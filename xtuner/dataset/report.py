"""The printed report of ``xtuner check-custom-dataset``: problems, summary, one sample."""
from __future__ import annotations

from collections import Counter

from .checker import DatasetReport
from .sources import callable_name
from .specs import DatasetSpec

__all__ = ["format_report"]


def _percentile(sorted_values: list[int], q: float) -> int:
    """Nearest-rank percentile."""
    import math

    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def _describe_format(spec: DatasetSpec) -> str:
    if spec.preference is not None:
        kind = "reward" if spec.preference["is_reward"] else "DPO/ORPO"
        how = f", dataset_map_fn={callable_name(spec.map_fn)}" if spec.map_fn else ""
        return f"preference pairs for {kind} (prompt/chosen/rejected messages{how})"
    if spec.media is not None:
        fn = spec.media
        return (f"chat records with {fn.media_type} parts and {fn.placeholder} placeholders "
                f"({type(fn).__name__}, media_root {fn.media_root})")
    fmt = spec.fmt
    if spec.map_fn is None:
        return "XTuner conversation format (dataset_map_fn=None)"
    return f"'{fmt.name}' format (dataset_map_fn={callable_name(spec.map_fn)})"


def format_report(report: DatasetReport, max_shown: int = 20) -> str:
    """The problems, summary and a decoded sample of one dataset, as printed by the tool."""
    from .render import render_trained_spans

    spec = report.spec
    files = ", ".join(s.path for s in spec.sources)
    if spec.media is not None:
        template = "the tokenizer's chat template"
        limits = f"max_length {spec.max_length}"
    elif spec.preference is not None:
        template = "the tokenizer's chat template"
        limits = f"max_length {spec.max_length} per sequence"
        if spec.pack:
            limits += f", max_packed_length {spec.preference['max_packed_length']}"
    else:
        template = f"template {spec.template_name or 'none'}"
        limits = f"max_length {spec.max_length}"
        if spec.image_tokens:
            limits += f", image_tokens {spec.image_tokens}"
    lines = [f"== {spec.name}: {files}", f"   {_describe_format(spec)}, {template}, {limits}"]
    if report.notes:
        lines.append("")
        lines += [f"{spec.name}: {p}" for p in report.notes]
    if report.shown:
        lines.append("")
        lines += [f"{loc}: {p}" for _, loc, p in report.shown]
        by_kind = Counter()
        for (_, kind), n in report.counts.items():
            by_kind[kind] += n
        for kind, n in by_kind.items():
            if n > max_shown:
                lines.append(f"... and {n - max_shown} more '{kind}' problems")
    lines.append("")
    dropped = sum(report.dropped.values())
    reasons = ", ".join(f"{kind} {n}" for kind, n in report.dropped.most_common())
    lines += [
        "Summary",
        f"  records read     {report.read}",
        f"  kept             {report.kept}",
        f"  dropped          {dropped}" + (f" ({reasons})" if reasons else ""),
    ]
    if report.lengths:
        values = sorted(report.lengths)
        median = values[(len(values) - 1) // 2]
        lines.append(f"  token lengths    min {values[0]}, median {median}, "
                     f"p95 {_percentile(values, 95)}, max {values[-1]}")
        # A pair holds two sequences, each cut to max_length already.
        cap = None if spec.preference is not None else spec.max_length
        total = sum(min(n, cap or n) for n in values)
        lines.append(f"  trained tokens   {report.trained} of {total} "
                     f"({report.trained / max(total, 1):.1%})")
    if spec.max_length is not None:
        lines.append(f"  truncated        {report.truncated} (max_length {spec.max_length})")
    if report.packed_rows is not None:
        row = (spec.max_length if spec.preference is None
               else spec.preference["max_packed_length"])
        total = sum(min(n, row) for n in report.lengths)
        efficiency = total / (report.packed_rows * row)
        lines.append(f"  packed rows      {report.packed_rows} (packing efficiency "
                     f"{efficiency:.1%})")
    if spec.max_dataset_length is not None:
        lines.append(f"  note             max_dataset_length={spec.max_dataset_length}: "
                     "training uses a random subset of the kept records")
    if report.sample is not None:
        loc, ids, labels = report.sample
        lines += ["", f"Sample from {loc}, trained tokens between [[ and ]]:",
                  render_trained_spans(spec.tokenizer, ids, labels)]
    return "\n".join(lines)

