"""The Python training API (seed 001): typed configs, ``fit()``, torchrun, ``xtuner train``.

The example script (``example_sft.py``, seed 001's example rewritten for this project) trains
the tiny demo LLM on CPU. The oracle of the two-process run is the one-process run on the
same global batch: DDP over 2 ranks x 2 accumulated rows must log rank 0's row losses and the
gradient norms of 1 rank x 4 accumulated rows.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from xtuner.train import (
    CELossConfig,
    DataloaderConfig,
    DatasetConfig,
    LLMConfig,
    LRConfig,
    TokenizeFnConfig,
    Trainer,
    TrainerConfig,
)
from xtuner.utils.errors import ConfigError

EXAMPLE = Path(__file__).with_name("example_sft.py")
XTUNER_BIN = Path(sys.executable).parent / "xtuner"
LOG_LINE = re.compile(r"Iter\(train\) \[\s*(\d+)/(\d+)\].*?\sloss: ([0-9.]+)(?:.*grad_norm: "
                      r"([0-9.]+))?")


def _env(work_dir: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("XTUNER_DEBUG", "NPROC_PER_NODE", "WORLD_SIZE", "RANK")}
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1",
               MKL_NUM_THREADS="1", EXAMPLE_WORK_DIR=str(work_dir), **extra)
    return env


def _run(cmd: list[str], env: dict, cwd: Path) -> None:
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]


def _log(work_dir: Path) -> dict[int, tuple[float, float | None]]:
    """iteration -> (loss, grad_norm) from the run's log file."""
    (run,) = [p for p in work_dir.iterdir() if p.is_dir() and p.name[:8].isdigit()]
    out = {}
    for m in map(LOG_LINE.search, (run / f"{run.name}.log").read_text().splitlines()):
        if m:
            out[int(m.group(1))] = (float(m.group(3)), m.group(4) and float(m.group(4)))
    return out


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> dict:
    """``python example_sft.py``: 4 optimizer steps of 4 accumulated rows."""
    tmp = tmp_path_factory.mktemp("one")
    _run([sys.executable, str(EXAMPLE)], _env(tmp / "work", EXAMPLE_TOTAL_STEP="4"), tmp)
    return {"work": tmp / "work", "log": _log(tmp / "work")}


def test_fit_trains_and_the_loss_falls(one_process):
    log = one_process["log"]
    assert sorted(log) == list(range(1, 17))  # 4 steps x 4 rows (global_batch_size=4)
    first = sum(log[i][0] for i in range(1, 5)) / 4
    last = sum(log[i][0] for i in range(13, 17)) / 4
    assert last < first - 0.5, log
    work = one_process["work"]
    assert (work / "iter_16.pth").is_file()
    # The end-of-training export loads with plain transformers.
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(work / "hf_model").num_parameters() > 0


def test_torchrun_two_processes_match_one_process(one_process, tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
           "--standalone", str(EXAMPLE)]
    _run(cmd, _env(tmp_path / "work", EXAMPLE_TOTAL_STEP="4"), tmp_path)
    two, one = _log(tmp_path / "work"), one_process["log"]
    assert sorted(two) == list(range(1, 9))  # each rank accumulates 4 / 2 = 2 rows
    for j in two:
        # Rank 0 reads rows 0, 2, 4, ... of the same shuffled order; the logged loss is
        # rank 0's row, so iteration j of two processes is iteration 2j - 1 of one.
        assert two[j][0] == pytest.approx(one[2 * j - 1][0], abs=2e-4), (j, two, one)
        # After the same optimizer steps the gradient norms agree too.
        if two[j][1] is not None:
            assert two[j][1] == pytest.approx(one[2 * j][1], rel=1e-3), (j, two, one)
    assert any(two[j][1] for j in two)


def test_fsdp_cfg_of_v1_scripts_shards_with_zero3(monkeypatch):
    """Seed 000's ``fsdp_cfg=FSDPConfig(recompute_ratio=1.0, ep_size=1, torch_compile=False)``
    runs: sharding by DeepSpeed ZeRO-3 over several processes (nothing on one), every layer
    recomputed; what this engine cannot do is one line."""
    from xtuner.train import FSDPConfig

    seed_000 = FSDPConfig(recompute_ratio=1.0, ep_size=1, torch_compile=False)
    monkeypatch.setenv("WORLD_SIZE", "1")
    trainer = Trainer(**_fields(fsdp_cfg=seed_000))
    assert trainer.prepare_defaults()["deepspeed"] is None  # one process: nothing to shard
    assert trainer.build_config().model.use_activation_checkpointing is True
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert trainer.prepare_defaults()["deepspeed"] == "deepspeed_zero3"
    offload = Trainer(**_fields(fsdp_cfg=FSDPConfig(cpu_offload=True, torch_compile=True)))
    assert offload.prepare_defaults()["deepspeed"] == "deepspeed_zero3_offload"
    cfg = offload.build_config()
    assert cfg.model.use_torch_compile is True
    assert cfg.model.use_activation_checkpointing == "auto"  # recompute_ratio not given
    for bad, expected in ((dict(tp_size=2), "tp_size=2: tensor and expert parallelism"),
                          (dict(recompute_ratio=0.5), "recompute_ratio=0.5: only 1.0"),
                          (dict(param_dtype="float16"), "param_dtype='float16'")):
        with pytest.raises(ConfigError, match=re.escape(expected)) as exc:
            FSDPConfig(**bad)
        assert "\n" not in str(exc.value)
    with pytest.raises(ConfigError, match="give fsdp_cfg or deepspeed, not both"):
        TrainerConfig(**_fields(fsdp_cfg=seed_000, deepspeed="deepspeed_zero2"))


def test_sp_size_two_processes_on_one_row_match_one_process(one_process, tmp_path):
    """``sp_size=2`` on 2 processes: one data-parallel group, each row split over both
    processes; the losses and gradient norms are those of one process, step for step."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
           "--standalone", str(EXAMPLE)]
    _run(cmd, _env(tmp_path / "work", EXAMPLE_TOTAL_STEP="4", EXAMPLE_SP_SIZE="2"), tmp_path)
    sp, one = _log(tmp_path / "work"), one_process["log"]
    (run,) = [p for p in (tmp_path / "work").iterdir() if p.is_dir() and p.name[:8].isdigit()]
    assert "Sequence parallel: each sequence split over 2 ranks (attention: xtuner_sp_varlen)" \
        in (run / f"{run.name}.log").read_text()
    assert sorted(sp) == list(range(1, 17))  # one group accumulates all 4 rows of a step
    for j in sp:
        assert sp[j][0] == pytest.approx(one[j][0], abs=2e-4), (j, sp, one)
        if sp[j][1] is not None:
            assert sp[j][1] == pytest.approx(one[j][1], rel=1e-3), (j, sp, one)


def test_xtuner_train_runs_a_trainer_script(tmp_path):
    if not XTUNER_BIN.exists():
        pytest.skip(f"console script not installed at {XTUNER_BIN}")
    work = tmp_path / "cli"
    _run([str(XTUNER_BIN), "train", str(EXAMPLE), "--work-dir", str(work)],
         _env(tmp_path / "unused", EXAMPLE_TOTAL_STEP="1", EXAMPLE_GLOBAL_BATCH="2"),
         tmp_path)
    assert sorted(_log(work)) == [1, 2]
    assert (work / "iter_2.pth").is_file() and (work / "hf_model").is_dir()


# -- config building and validation (no training) ------------------------------------------

def _fields(**over):
    from xtuner.demo import COLORIST_DATA_PATH, TINY_LLM_PATH

    fields = dict(
        model_cfg=LLMConfig(path=TINY_LLM_PATH),
        dataset_config_list=[{"dataset": DatasetConfig(anno_path=COLORIST_DATA_PATH),
                              "tokenize_fn": TokenizeFnConfig(template="qwen_chat")}],
        dataloader_cfg=DataloaderConfig(pack_max_length=128),
        global_batch_size=8, total_step=10)
    fields.update(over)
    return fields


def _one_line_error(fn, *args, **kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def test_unknown_field_is_refused_with_the_close_match():
    msg = _one_line_error(TrainerConfig, **_fields(total_epochs=2))
    assert msg == ("TrainerConfig: unknown field 'total_epochs' (did you mean 'total_epoch', "
                   "'total_step'?)")
    msg = _one_line_error(DataloaderConfig, pack_max_lenght=10)
    assert "unknown field 'pack_max_lenght'" in msg and "'pack_max_length'" in msg


def test_bad_lr_type_and_loss_mode():
    msg = _one_line_error(LRConfig, lr_type="cosin")
    assert msg.startswith("LRConfig: lr_type:") and "'cosine'" in msg
    assert "mode:" in _one_line_error(CELossConfig, mode="fused")


def test_run_length_is_required_once():
    fields = _fields()
    del fields["total_step"]
    msg = _one_line_error(TrainerConfig, **fields)
    assert "give exactly one of total_epoch (or epoch_num) and total_step" in msg
    msg = _one_line_error(TrainerConfig, **_fields(total_epoch=1, epoch_num=1, total_step=None))
    assert "not both" in msg
    assert "give the datasets once" in _one_line_error(
        TrainerConfig, **_fields(dataset_cfg=_fields()["dataset_config_list"]))


def test_config_maps_onto_the_engine(monkeypatch):
    """epoch_num is total_epoch; global_batch_size / world size is the accumulation;
    sample_ratio repeats files; lr and loss settings reach the dict config."""
    from mmengine.hooks import CheckpointHook

    monkeypatch.setenv("WORLD_SIZE", "2")
    cfg = Trainer(**_fields(total_step=None, epoch_num=3, checkpoint_interval=5,
                            checkpoint_maxkeep=2, loss_cfg=CELossConfig(loss_reduction="square"),
                            lr_cfg=LRConfig(lr_type="linear", warmup_ratio=0.1))).build_config()
    assert cfg.train_cfg.max_epochs == 3 and "max_iters" not in cfg.train_cfg
    assert cfg.optim_wrapper.accumulative_counts == 4
    assert cfg.train_dataloader.batch_size == 1
    assert cfg.model.loss_reduction == "square" and cfg.model.use_liger_kernel is False
    hook = cfg.default_hooks.checkpoint
    assert (hook.type, hook.interval, hook.max_keep_ckpts) == (CheckpointHook, 5, 2)
    schedulers = cfg.default_hooks.param_scheduler.schedulers
    assert [(s["begin"], s["end"]) for s in schedulers] == [(0.0, 0.1), (0.1, 1.0)]

    msg = _one_line_error(Trainer(**_fields(global_batch_size=3)).build_config)
    assert "global_batch_size=3 is not a multiple of the 2 processes" in msg
    # sp_size: the 2 processes are one data-parallel group, which accumulates every row.
    cfg = Trainer(**_fields(sp_size=2)).build_config()
    assert cfg.sequence_parallel_size == 2
    assert cfg.optim_wrapper.accumulative_counts == 8
    assert cfg.train_dataloader.sampler.type.__name__ == "SequenceParallelSampler"
    msg = _one_line_error(Trainer(**_fields(sp_size=3)).build_config)
    assert msg.startswith("sp_size=3 does not divide the 2 processes")

    from xtuner.demo import COLORIST_DATA_PATH

    monkeypatch.setenv("WORLD_SIZE", "1")
    item = {"dataset": DatasetConfig(anno_path=COLORIST_DATA_PATH, sample_ratio=2.5),
            "tokenize_fn": TokenizeFnConfig(template="qwen_chat")}
    cfg = Trainer(**_fields(dataset_config_list=[item], total_step=3)).build_config()
    dataset = cfg.train_dataloader.dataset
    assert dataset.dataset.data_files["train"] == [COLORIST_DATA_PATH] * 3
    records = sum(1 for line in open(COLORIST_DATA_PATH) if line.strip())
    assert dataset.max_dataset_length == round(2.5 * records)
    assert cfg.train_cfg.max_iters == 3 * 8  # optimizer steps x accumulated rows


def test_encoder_llm_script_trains_and_exports(tmp_path):
    """Seed 000's model through the API: encoder + LLM on time-series records; the export is
    one HF folder that EncoderLLM.from_hf loads with the trained weights."""
    import torch

    from xtuner.model.encoder_llm import EncoderLLM

    work = tmp_path / "work"
    _run([sys.executable, str(EXAMPLE.with_name("example_ts.py"))],
         _env(work, EXAMPLE_TOTAL_STEP="6"), tmp_path)
    log = _log(work)
    assert sorted(log) == list(range(1, 13))  # 6 steps x global_batch_size 2
    first = sum(log[i][0] for i in range(1, 5)) / 4
    last = sum(log[i][0] for i in range(9, 13)) / 4
    assert last < first - 0.3, log
    loaded = EncoderLLM.from_hf(work / "hf_model")
    trained = torch.load(work / "iter_12.pth", map_location="cpu",
                         weights_only=False)["state_dict"]
    exported = loaded.state_dict()
    common = sorted(set(exported) & set(trained))
    assert {"projector.model.0.weight", "llm.model.embed_tokens.weight"} <= set(common)
    for name in common:
        torch.testing.assert_close(exported[name], trained[name], msg=name)


def test_fit_on_the_config_and_media_records_for_a_text_llm(monkeypatch):
    """Seed 001 calls fit() on the config: it runs Trainer.from_config(cfg).fit(). A text
    LLM refuses media records in one line."""
    from xtuner.demo import TS_SIGNALS_DATA_PATH
    from xtuner.utils.errors import DataError

    seen = []
    monkeypatch.setattr(Trainer, "fit", lambda self: seen.append(self.config) or "runner")
    cfg = TrainerConfig(**_fields())
    assert cfg.fit() == "runner" and seen == [cfg]

    item = {"dataset": DatasetConfig(anno_path=TS_SIGNALS_DATA_PATH),
            "tokenize_fn": TokenizeFnConfig(template="qwen_chat")}
    with pytest.raises(DataError) as info:
        Trainer(**_fields(dataset_config_list=[item])).build_config()
    assert "\n" not in str(info.value)
    assert "['time_series_url'] need an encoder: use EncoderLLMConfig" in str(info.value)


def test_v1_fields_without_effect_are_named_not_ignored():
    """Fields a v1 script sets that change nothing here (the seed's chunk_size,
    pack_extra_buffer_size, enable_sequential_sampler) are each named in one log line."""
    from xtuner.demo import COLORIST_DATA_PATH
    from xtuner.train.trainer import _note_settings_without_effect

    config = TrainerConfig(**_fields(
        loss_cfg=CELossConfig(mode="chunk", chunk_size=1024),
        dataloader_cfg=DataloaderConfig(pack_max_length=128, pack_extra_buffer_size=20),
        dataset_config_list=[{"dataset": DatasetConfig(anno_path=COLORIST_DATA_PATH,
                                                       enable_sequential_sampler=True),
                              "tokenize_fn": TokenizeFnConfig(template="qwen_chat")}]))
    lines = _note_settings_without_effect(config)
    names = ["dataloader_cfg.pack_extra_buffer_size", "loss_cfg.chunk_size",
             "datasets[0].enable_sequential_sampler"]
    assert len(lines) == len(names)
    for line, name in zip(lines, names):
        assert line.startswith(f"TrainerConfig: {name} (") and "has no effect in xtuner" in line
    assert _note_settings_without_effect(TrainerConfig(**_fields())) == []
