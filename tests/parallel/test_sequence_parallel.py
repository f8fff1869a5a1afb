"""Sequence parallelism (Ulysses) on CPU processes (gloo).

The oracle is always the run without it: one process holding the whole global batch.
``sp_worker.py`` runs each multi-process case under ``torch.distributed.run``; the CLI test
trains the shipped tiny demo with ``NPROC_PER_NODE=2`` and ``sequence_parallel_size = 2``
and compares its per-iteration losses with one process's.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.ports import free_port
from xtuner.parallel import sequence as sp
from xtuner.utils.errors import ConfigError

WORKER = Path(__file__).with_name("sp_worker.py")
TWO_PROCESS_CASES = [
    "all_to_all_round_trip",
    "v0_helpers",
    "packed_rows_token_loss",
    "padded_rows_token_loss",
    "packed_rows_one_kv_head_sample_loss",
    "padded_rows_v0_loss",
    "heads_that_do_not_split_are_a_config_error",
    "dpo_padded_pairs",
    "dpo_packed_pairs_ipo",
    "orpo_packed_pairs",
    "llava_packed_rows",
    "llava_padded_rows",
    "image_text_qwen2_vl_packed_rows",
    "encoder_llm_time_series",
]
# two data-parallel groups of two ranks each
FOUR_PROCESS_CASES = ["packed_rows_token_loss", "padded_rows_v0_loss", "dpo_packed_pairs_ipo"]


def _env() -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("XTUNER_DEBUG", "NPROC_PER_NODE", "NNODES", "WORLD_SIZE", "RANK")}
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1",
               MKL_NUM_THREADS="1")
    return env


def _run_worker(tmp_path: Path, nproc: int, cases: list[str], **env_vars: str) -> dict:
    results = tmp_path / "results.json"
    env = dict(_env(), SP_RESULTS=str(results), **env_vars)
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
         "--standalone", str(WORKER), *cases],
        env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and results.exists(), (proc.stdout + proc.stderr)[-4000:]
    return json.loads(results.read_text())


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    from xtuner.testing import tiny_llm_and_tokenizer
    from xtuner.testing.tiny_image_text import build_tiny_qwen2_vl, write_image_text_data

    root = tmp_path_factory.mktemp("sp2")
    build_tiny_qwen2_vl(root / "image_text" / "model")
    write_image_text_data(root / "image_text" / "data")
    llm, _ = tiny_llm_and_tokenizer(root / "encoder_llm")
    return _run_worker(root, 2, TWO_PROCESS_CASES,
                       SP_IMAGE_TEXT_ASSETS=str(root / "image_text"), SP_ENCODER_LLM=llm)


@pytest.fixture(scope="module")
def four_processes(tmp_path_factory):
    return _run_worker(tmp_path_factory.mktemp("sp4"), 4, FOUR_PROCESS_CASES)


@pytest.mark.parametrize("case", TWO_PROCESS_CASES)
def test_two_ranks_one_sequence_parallel_group(two_processes, case):
    """N = 2 on 2 processes: the all-to-all round trip is the identity; loss and gradients
    equal one process's on the same batch (packed and padded rows, every loss reduction,
    GQA with key/value heads repeated, activation checkpointing, DPO, ORPO, LLaVA with a trained
    vision tower, a Qwen2-VL image-text model with 3-D positions, an encoder + LLM model)."""
    assert two_processes[case] == "ok", two_processes[case]


@pytest.mark.parametrize("case", FOUR_PROCESS_CASES)
def test_four_ranks_two_data_parallel_groups(four_processes, case):
    assert four_processes[case] == "ok", four_processes[case]


# -- one process ---------------------------------------------------------------------------
def test_size_one_creates_nothing_and_a_size_that_does_not_divide_is_a_config_error():
    sp.init_sequence_parallel(1)
    assert sp.get_sequence_parallel_world_size() == 1
    assert sp.get_sequence_parallel_group() is None
    assert sp.get_data_parallel_world_size() == 1 and sp.get_data_parallel_rank() == 0
    with pytest.raises(ConfigError, match="needs a multiple of 2 processes, got 1"):
        sp.init_sequence_parallel(2)
    with pytest.raises(ConfigError, match="positive integer"):
        sp.init_sequence_parallel(0)


def test_key_value_heads_are_repeated_only_as_much_as_needed():
    assert sp.kv_repeats_for_sequence_parallel(8, 8, 4) == 1
    assert sp.kv_repeats_for_sequence_parallel(8, 2, 2) == 1
    assert sp.kv_repeats_for_sequence_parallel(8, 2, 4) == 2  # 4 key/value heads
    assert sp.kv_repeats_for_sequence_parallel(8, 1, 4) == 4
    assert sp.kv_repeats_for_sequence_parallel(12, 3, 4) == 4  # 12 heads, one per query head


def test_padding_to_a_multiple_of_n_is_a_sample_of_its_own():
    ids = torch.arange(7)[None]
    assert sp.pad_for_sequence_parallel(ids, 0, dim=1, sp_size=4).tolist() == \
        [[0, 1, 2, 3, 4, 5, 6, 0]]
    assert sp.pad_for_sequence_parallel(ids, 0, dim=1, sp_size=7) is ids


def test_every_name_v0_exported_still_imports():
    """v0's ``xtuner.parallel.sequence.__all__`` (XTuner 0.2.0)."""
    v0_names = [
        "sequence_parallel_wrapper", "pre_process_for_sequence_parallel_attn",
        "post_process_for_sequence_parallel_attn", "pad_for_sequence_parallel",
        "split_for_sequence_parallel", "SequenceParallelSampler", "init_sequence_parallel",
        "get_sequence_parallel_group", "get_sequence_parallel_world_size",
        "get_sequence_parallel_rank", "get_data_parallel_group",
        "get_data_parallel_world_size", "get_data_parallel_rank",
        "reduce_sequence_parallel_loss", "init_dist", "all_to_all",
        "gather_for_sequence_parallel", "split_forward_gather_backward",
        "gather_forward_split_backward", "get_inner_sequence_parallel_group",
        "get_inner_sequence_parallel_rank", "get_inner_sequence_parallel_world_size",
        "init_inner_sequence_parallel", "is_inner_sequence_parallel_initialized",
        "pad_cumulative_len_for_sequence_parallel",
    ]
    assert [name for name in v0_names if not hasattr(sp, name)] == []
    with pytest.raises(ConfigError, match="divides the model's attention heads"):
        sp.init_inner_sequence_parallel(2)


@pytest.mark.parametrize("use_varlen_attn", [True, False])
def test_size_one_runs_nothing_new(monkeypatch, use_varlen_attn):
    """N = 1 keeps the model's own attention backend and calls no collective and no shard
    code in the training step."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from xtuner.dataset.collate_fns import default_collate_fn
    from xtuner.model import SupervisedFinetune, sft

    sp.init_sequence_parallel(1)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48,
                         num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2,
                         attn_implementation="sdpa")
    model = SupervisedFinetune(LlamaForCausalLM(config), use_varlen_attn=use_varlen_attn,
                               use_activation_checkpointing=False).train()
    assert model.llm.config._attn_implementation == ("xtuner_varlen" if use_varlen_attn
                                                     else "sdpa")

    def forbidden(*args, **kwargs):
        raise AssertionError("called with sequence_parallel_size = 1")

    for name in ("all_reduce", "all_to_all_single", "all_gather"):
        monkeypatch.setattr(torch.distributed, name, forbidden)
    monkeypatch.setattr(sft, "shard_for_sequence_parallel", forbidden)
    rows = [{"input_ids": list(range(3, 12)), "labels": list(range(3, 12))},
            {"input_ids": list(range(5, 10)), "labels": list(range(5, 10))}]
    batch = default_collate_fn(rows, use_varlen_attn=use_varlen_attn)["data"]
    model.compute_loss(dict(batch, loss_scale=1 / 12, num_targets=12))["loss"].backward()


def test_reward_models_refuse_sequence_parallelism(monkeypatch):
    from xtuner.model import RewardModel

    monkeypatch.setattr(sp, "get_sequence_parallel_world_size", lambda: 2)
    with pytest.raises(ConfigError, match="reward models do not support "
                                          "sequence_parallel_size=2"):
        RewardModel(llm=dict(type="unused"))


def test_the_sampler_is_the_default_sampler_without_sequence_parallelism():
    from mmengine.dataset import DefaultSampler

    sp.init_sequence_parallel(1)
    data = list(range(10))
    ours = list(sp.SequenceParallelSampler(data, shuffle=True, seed=3))
    assert ours == list(DefaultSampler(data, shuffle=True, seed=3))
    with pytest.raises(ConfigError, match="top-level sequence_parallel_size"):
        sp.SequenceParallelSampler(data, sequence_parallel_size=2)


def test_the_train_loop_refuses_a_sampler_that_splits_a_group(monkeypatch):
    from mmengine.dataset import DefaultSampler

    from xtuner.engine.runner import loops

    loader = torch.utils.data.DataLoader(list(range(4)),
                                         sampler=DefaultSampler(list(range(4)), seed=0))
    loops._check_sequence_parallel_sampler(loader)  # N = 1: anything goes
    monkeypatch.setattr(sp, "get_sequence_parallel_world_size", lambda: 2)
    with pytest.raises(ConfigError, match="SequenceParallelSampler"):
        loops._check_sequence_parallel_sampler(loader)


def test_the_deepspeed_strategy_sets_up_the_groups(tmp_path):
    """v0 configs give the size to the DeepSpeed strategy: it creates the groups with the
    distributed environment (one process cannot hold a group of 2)."""
    pytest.importorskip("deepspeed")
    from xtuner.engine._strategy import DeepSpeedStrategy

    with pytest.raises(ConfigError, match="needs a multiple of 2 processes"):
        DeepSpeedStrategy(sequence_parallel_size=2, work_dir=str(tmp_path / "a"))
    DeepSpeedStrategy(sequence_parallel_size=1, work_dir=str(tmp_path / "b"))
    assert sp.get_sequence_parallel_world_size() == 1


def test_a_deepspeed_strategy_without_the_configs_size_is_refused(tmp_path):
    """A config's top-level size that its hand-written strategy lacks would otherwise train
    without sequence parallelism."""
    pytest.importorskip("deepspeed")
    from xtuner.engine._strategy import DeepSpeedStrategy
    from xtuner.engine.runner.runner import FlexibleRunner

    with pytest.raises(ConfigError, match="give the strategy sequence_parallel_size=2"):
        FlexibleRunner(model=torch.nn.Linear(2, 2), work_dir=str(tmp_path),
                       strategy=dict(type=DeepSpeedStrategy),
                       cfg=dict(sequence_parallel_size=2))


# -- end to end ----------------------------------------------------------------------------
XTUNER_BIN = Path(sys.executable).parent / "xtuner"
DEMO = "demo_tiny_full_colorist_e40"


def _sequence_parallel_config(tmp_path: Path) -> Path:
    """The shipped demo with v0's two edits: the size at the top, the sampler."""
    from xtuner.utils.paths import resolve_config

    text = resolve_config(DEMO).read_text()
    text = text.replace("sampler=dict(type=DefaultSampler, shuffle=True)",
                        "sampler=dict(type=SequenceParallelSampler, shuffle=True)")
    text = text.replace("use_varlen_attn = True\n",
                        "use_varlen_attn = True\nsequence_parallel_size = 2\n")
    text = "from xtuner.parallel.sequence import SequenceParallelSampler\n" + text
    path = tmp_path / "demo_tiny_full_colorist_sp2.py"
    path.write_text(text)
    return path


def _train(cfg: Path, work_dir: Path, nproc: int, *options: str) -> dict[int, float]:
    env = _env()
    if nproc > 1:
        env.update(NPROC_PER_NODE=str(nproc), PORT=str(free_port()))
    proc = subprocess.run(
        [str(XTUNER_BIN), "train", str(cfg), "--work-dir", str(work_dir), "--cfg-options",
         "train_cfg.max_epochs=0.4", "default_hooks.logger.interval=1",
         "default_hooks.checkpoint.interval=100", *options],
        env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    (run,) = [p for p in work_dir.iterdir() if p.is_dir()]
    rows = [json.loads(line) for line in (run / "vis_data" / "scalars.json").read_text()
            .splitlines()]
    log = (run / f"{run.name}.log").read_text()
    return {row["iter"]: row["loss"] for row in rows if "loss" in row}, log


def test_cli_two_processes_with_sequence_parallel_size_2_log_the_losses_of_one(tmp_path):
    if not XTUNER_BIN.exists():
        pytest.skip(f"console script not installed at {XTUNER_BIN}")
    cfg = _sequence_parallel_config(tmp_path)
    one, _ = _train(cfg, tmp_path / "one", 1, "sequence_parallel_size=1")
    two, log = _train(cfg, tmp_path / "two", 2)
    assert sorted(one) == [1, 2, 3, 4] and sorted(two) == sorted(one)
    for it in one:
        assert two[it] == pytest.approx(one[it], rel=1e-4), (it, one, two)
    assert ("Sequence parallel: each sequence split over 2 ranks (attention: xtuner_sp_varlen); "
            "data-parallel size 1") in log
