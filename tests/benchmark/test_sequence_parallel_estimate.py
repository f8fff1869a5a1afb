"""``xtuner benchmark``'s estimate of the longest packed row per GPU at
``sequence_parallel_size`` 1 and 2 (the arithmetic; the GPU run measures its inputs)."""
from __future__ import annotations

import pytest

from xtuner.benchmark.report import RunResult, estimate_longest_rows, format_table
from xtuner.benchmark.sequence_parallel import activation_bytes_per_token, longest_packed_row

GIB = 2**30


def test_activation_memory_per_token_is_the_peak_above_the_static_memory():
    # 6 GiB of activations for an 8192-token row: 768 KiB a token
    assert activation_bytes_per_token(10 * GIB, 4 * GIB, 8192) == 768 * 1024
    # a run with sequence parallelism of 2 ran half the row on each GPU
    assert activation_bytes_per_token(10 * GIB, 4 * GIB, 8192, measured_sp_size=2) == \
        2 * 768 * 1024
    with pytest.raises(ValueError, match="no activation memory"):
        activation_bytes_per_token(4 * GIB, 4 * GIB, 8192)


def test_two_ranks_fit_a_row_twice_as_long_in_the_memory_left_by_the_static_part():
    per_token = 768 * 1024
    # 16 GiB free: 21845 tokens (rounded down), twice that split over two GPUs
    assert longest_packed_row(20 * GIB, 4 * GIB, per_token) == 21845
    assert longest_packed_row(20 * GIB, 4 * GIB, per_token, sp_size=2) == 43690
    assert longest_packed_row(20 * GIB, 4 * GIB, per_token, sp_size=4) % 4 == 0
    assert longest_packed_row(3 * GIB, 4 * GIB, per_token, sp_size=2) == 0


def test_the_report_lists_the_estimate_for_both_sizes():
    rows, per_token = estimate_longest_rows(10 * GIB, 4 * GIB, 8192, 20 * GIB)
    assert rows == {"1": 21845, "2": 43690} and per_token == 768 * 1024
    result = RunResult(name="xtuner", device="NVIDIA H200", steps=5, tokens_per_step=8192,
                       tokens_per_sec=1.0, model_tflops=1.0, mfu=None, peak_allocated_gib=10,
                       peak_reserved_gib=11, data_ms=0, compute_ms=1, optimizer_ms=1,
                       step_ms=2, longest_row_tokens=rows, activation_kib_per_token=768.0,
                       memory_budget_gib=20.0)
    table = format_table([result])
    assert "longest packed row, sequence_parallel_size=1 (est.)  21,845" in table
    assert "longest packed row, sequence_parallel_size=2 (est.)  43,690" in table
    assert "budget 20.0 GiB" in table and "768.0 KiB of activations per token" in table
    # no estimate on the CPU: no such rows
    cpu = RunResult(**{**result.__dict__, "longest_row_tokens": {}})
    assert "longest packed row" not in format_table([cpu])
