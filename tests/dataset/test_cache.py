"""The processed-dataset cache, ``xtuner preprocess`` and early failure on bad records."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from datasets import load_dataset

from xtuner.dataset import load_processed_dataset, process_hf_dataset
from xtuner.dataset.cache import MANIFEST, cache_root
from xtuner.dataset.map_fns import template_map_fn_factory
from xtuner.demo import COLORIST_DATA_PATH
from xtuner.entry_point import main as xtuner_main
from xtuner.utils.errors import DataError

ROWS = [
    {"conversation": [{"input": "What is the capital of France?", "output": "Paris."}]},
    {"conversation": [{"input": "Hello", "output": "Hi!"},
                      {"input": "How are you today?", "output": "I am fine, thank you!"}]},
    {"conversation": [{"input": "", "output": "The quick brown fox jumps."}]},
]
DEMO = "demo_tiny_full_colorist_e40"
XTUNER_BIN = Path(sys.executable).parent / "xtuner"
CALLS_FILE = "XTUNER_TEST_MAP_CALLS"


def counting_map_fn(example):
    """Identity map fn that appends a line to a file per call (counts real processing)."""
    with open(os.environ[CALLS_FILE], "a") as f:
        f.write("x\n")
    return {"conversation": example["conversation"]}


def _write(path: Path, rows) -> dict:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return dict(type=load_dataset, path="json", data_files=str(path))


@pytest.fixture
def calls(tmp_path, monkeypatch):
    path = tmp_path / "calls.txt"
    path.touch()
    monkeypatch.setenv(CALLS_FILE, str(path))
    return lambda: len(path.read_text().splitlines())


@pytest.fixture
def logs(monkeypatch):
    """Messages xtuner logs while processing (mmengine's handler keeps an old stdout)."""
    from xtuner.dataset import cache, huggingface, problems

    seen: list[str] = []

    def record(msg, *args, **kwargs):
        seen.append(str(msg))

    monkeypatch.setattr(cache, "print_log", record)
    monkeypatch.setattr(huggingface, "print_log", record)
    monkeypatch.setattr(problems, "print_log", record)

    def text():
        out = "\n".join(seen)
        seen.clear()
        return out
    return text


def _run(data, tokenizer, **kw):
    kw.setdefault("max_length", 64)
    kw.setdefault("dataset_map_fn", counting_map_fn)
    return process_hf_dataset(
        data, tokenizer=tokenizer, map_num_proc=1,
        template_map_fn=dict(type=template_map_fn_factory, template="default"), **kw)


def _cache_dirs():
    return sorted(p for p in cache_root().iterdir() if p.is_dir())


def test_second_call_reuses_the_cache(tmp_path, bos_tokenizer, calls, logs):
    data = _write(tmp_path / "a.jsonl", ROWS)
    first = _run(data, bos_tokenizer)
    assert calls() == 3
    second = _run(data, bos_tokenizer)
    assert calls() == 3  # the map fn did not run again
    assert "reused processed dataset from" in logs()
    assert second["input_ids"] == first["input_ids"]
    assert second.length == first.length == second["length"]
    assert len(_cache_dirs()) == 1
    manifest = json.loads((_cache_dirs()[0] / MANIFEST).read_text())
    assert manifest["num_rows"] == len(first)
    assert all(len(e["sha256"]) == 64 for e in manifest["files"].values())


def test_data_bytes_and_settings_change_the_key(tmp_path, bos_tokenizer, calls, logs):
    path = tmp_path / "a.jsonl"
    data = _write(path, ROWS)
    _run(data, bos_tokenizer)
    path.write_text(path.read_text().replace("Paris.", "Paris!"))  # one byte
    changed = _run(data, bos_tokenizer)
    assert calls() == 6
    assert len(_cache_dirs()) == 2
    # (`datasets` may serve the map fn's output from its own cache here, so count logs.)
    _run(data, bos_tokenizer, max_length=32)
    assert len(_cache_dirs()) == 3
    assert logs().count("saved processed dataset") == 3
    assert _run(data, bos_tokenizer)["input_ids"] == changed["input_ids"]
    assert "reused processed dataset" in logs()


def test_a_run_reusing_the_cache_logs_the_data_warnings_again(tmp_path, bos_tokenizer,
                                                               calls, logs):
    path = tmp_path / "a.jsonl"
    rows = [*ROWS, {"conversation": [{"input": "Hi", "output": "Yo", "sytem": "x"}]}]
    data = _write(path, rows)
    _run(data, bos_tokenizer, dataset_map_fn=None)
    warning = (f"1 record with a 'unknown key' warning; first: {path}:4: warning: unknown key: "
               "conversation[0]: 'sytem' is ignored (did you mean 'system'?)")
    assert warning in logs().splitlines()
    _run(data, bos_tokenizer, dataset_map_fn=None)
    out = logs()
    assert "reused processed dataset" in out
    assert f"{warning} (found when the cached data was processed)" in out.splitlines()


def test_corrupted_cache_is_rebuilt(tmp_path, bos_tokenizer, calls, logs):
    data = _write(tmp_path / "a.jsonl", ROWS)
    first = _run(data, bos_tokenizer)
    arrow = next(_cache_dirs()[0].glob("*.arrow"))
    raw = bytearray(arrow.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    arrow.write_bytes(bytes(raw))
    logs()
    again = _run(data, bos_tokenizer)
    out = logs()
    assert "corrupted or stale" in out and "does not match its sha256" in out
    assert "saved processed dataset" in out and "reused" not in out
    assert again["input_ids"] == first["input_ids"]
    _run(data, bos_tokenizer)  # the rebuilt folder is good
    assert "reused processed dataset" in logs()


def test_cache_off_by_argument_and_env(tmp_path, bos_tokenizer, calls, monkeypatch, logs):
    data = _write(tmp_path / "a.jsonl", ROWS)
    _run(data, bos_tokenizer, cache=False)
    _run(data, bos_tokenizer, cache=False)
    monkeypatch.setenv("XTUNER_DATASET_CACHE", "0")
    _run(data, bos_tokenizer)
    _run(data, bos_tokenizer)
    out = logs()
    assert "saved processed" not in out and "reused" not in out
    assert not cache_root().exists() or _cache_dirs() == []


def test_in_memory_dataset_is_not_cached(bos_tokenizer, calls, logs):
    from datasets import Dataset

    data = Dataset.from_list(ROWS)
    _run(data, bos_tokenizer)
    _run(data, bos_tokenizer)
    out = logs()
    assert "not cached" in out and "saved processed" not in out


def test_bad_record_fails_early_with_file_line(tmp_path, bos_tokenizer):
    path = tmp_path / "bad.jsonl"
    _write(path, ROWS)
    lines = path.read_text().splitlines()
    lines.insert(1, '{"conversation": [{"input": "x", "output": 3}]}')
    lines.insert(3, '{"conversation": [ oops')
    path.write_text("\n".join(lines) + "\n")
    data = dict(type=load_dataset, path="json", data_files=str(path))
    with pytest.raises(DataError) as info:
        _run(data, bos_tokenizer, dataset_map_fn=None)
    message = str(info.value)
    assert f"{path}:2: error: wrong type: conversation[0].output must be a string" in message
    assert f"(also {path}:4)" in message and "\n" not in message
    assert "2 bad records" in message
    assert "check-custom-dataset" in message and "XTUNER_SKIP_BAD_RECORDS=1" in message
    ds = _run(data, bos_tokenizer, dataset_map_fn=None, skip_bad_records=True)
    good = _run(_write(tmp_path / "good.jsonl", ROWS), bos_tokenizer, dataset_map_fn=None,
                cache=False)
    assert ds["input_ids"] == good["input_ids"]


def test_load_processed_dataset_round_trip_and_errors(tmp_path, bos_tokenizer, calls):
    from xtuner.dataset.cache import save_processed

    ds = _run(_write(tmp_path / "a.jsonl", ROWS), bos_tokenizer, cache=False)
    save_processed(ds, tmp_path / "out")
    loaded = load_processed_dataset(str(tmp_path / "out"))
    assert loaded["input_ids"] == ds["input_ids"] and loaded.length == ds.length
    with pytest.raises(DataError, match="nowhere: it does not exist"):
        load_processed_dataset(str(tmp_path / "nowhere"))
    (tmp_path / "out" / MANIFEST).unlink()
    with pytest.raises(DataError, match=f"{MANIFEST} is missing"):
        load_processed_dataset(str(tmp_path / "out"))


def test_preprocess_cli_writes_a_loadable_dir(tmp_path, capsys):
    out = tmp_path / "processed"
    assert xtuner_main(["preprocess", DEMO, "--save-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "wrote 19 rows" in printed and "load_processed_dataset" in printed
    ds = load_processed_dataset(str(out))
    assert len(ds) == 19 and ds.length == ds["length"]
    assert xtuner_main(["preprocess", DEMO]) == 2  # --save-dir is required


def _xtuner(cwd, *args, **env_extra):
    if not XTUNER_BIN.exists():
        pytest.skip(f"console script not installed at {XTUNER_BIN}")
    env = {k: v for k, v in os.environ.items()
           if k not in ("XTUNER_DEBUG", "NPROC_PER_NODE", "NNODES")}
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1",
               **env_extra)
    return subprocess.run([str(XTUNER_BIN), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_train_fails_early_on_bad_data_and_skip_switch_trains(tmp_path):
    data = tmp_path / "colors.jsonl"
    lines = Path(COLORIST_DATA_PATH).read_text().splitlines()
    lines[2] = lines[2][:-5]  # truncated JSON on line 3
    data.write_text("\n".join(lines) + "\n")
    args = ["train", DEMO, "--work-dir", str(tmp_path / "wd"), "--cfg-options",
            f"train_dataloader.dataset.dataset.data_files.train={data}",
            "train_cfg.max_epochs=0.1", "default_hooks.logger.interval=1"]
    proc = _xtuner(tmp_path, *args)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"{data}:3: error: invalid JSON" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = _xtuner(tmp_path, *args, XTUNER_SKIP_BAD_RECORDS="1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert "skipped 1 bad records (invalid JSON: 1)" in log
    assert "Iter(train) [1/" in log


def test_list_and_clean_the_cache(tmp_path, bos_tokenizer, calls, capsys):
    import time

    data = _write(tmp_path / "a.jsonl", ROWS)
    folders = []  # named as made: two made within a coarse mtime tick would tie
    for max_length in (64, 96, 128):
        before = set(_cache_dirs())
        _run(data, bos_tokenizer, max_length=max_length)
        folders += set(_cache_dirs()) - before
    old, middle, new = folders
    day = 86400
    now = time.time()
    for folder, age in ((old, 40 * day), (middle, 10 * day), (new, 0)):
        os.utime(folder / MANIFEST, (now - age, now - age))
    partial = cache_root() / f"{old.name}.tmp-999999999"  # a killed run's half-written folder
    partial.mkdir()
    (partial / "data.arrow").write_bytes(b"x" * 10)

    assert xtuner_main(["preprocess", "--list-cache"]) == 0
    listed = capsys.readouterr().out
    assert listed.index(old.name) < listed.index(middle.name) < listed.index(new.name)
    assert "partial" in listed and str(tmp_path / "a.jsonl") in listed
    assert "4 folders" in listed

    assert xtuner_main(["preprocess", "--clean-cache", "--older-than", "30"]) == 0
    assert "removed 2 folders" in capsys.readouterr().out  # the old one and the partial one
    assert _cache_dirs() == sorted([middle, new])
    _run(data, bos_tokenizer, max_length=96)  # reusing `middle` makes it the newest
    assert xtuner_main(["preprocess", "--clean-cache", "--keep", "1"]) == 0
    assert _cache_dirs() == [middle]
    assert xtuner_main(["preprocess", "--clean-cache"]) == 0
    assert _cache_dirs() == []
    assert xtuner_main(["preprocess", "--keep", "1"]) == 2  # --keep needs --clean-cache
    assert xtuner_main(["preprocess", DEMO, "--list-cache"]) == 2


# --------------------------------------------------------------------------- empty data


def test_an_empty_dataset_round_trips(tmp_path, bos_tokenizer, calls):
    from xtuner.dataset.cache import load_processed, save_processed

    ds = _run(_write(tmp_path / "a.jsonl", ROWS), bos_tokenizer, cache=False,
              pack_to_max_length=False)
    empty = ds.select([])
    save_processed(empty, tmp_path / "out")
    loaded, reason = load_processed(tmp_path / "out")
    assert reason is None
    assert len(loaded) == 0 and loaded.features == ds.features and loaded.length == []


def test_no_usable_sample_is_one_line_and_never_cached(tmp_path, bos_tokenizer, calls, logs):
    from xtuner.dataset.map_fns import alpaca_map_fn

    path = tmp_path / "a.jsonl"
    data = _write(path, ROWS)
    # Every sample's trained tokens lie beyond max_length: the same settings twice give
    # the same one line, not a crash in the cache.
    for _ in range(2):
        with pytest.raises(DataError) as info:
            _run(data, bos_tokenizer, max_length=4)
        assert str(info.value).startswith(
            f"no usable training sample: 3 records read from {path}, every one dropped "
            "(3 no trainable token); fix the data or the settings")
        assert "\n" not in str(info.value)
    assert not cache_root().exists() or _cache_dirs() == []

    # Records a map fn drops on purpose (Alpaca's <nooutput>): warned, then the same line.
    rows = [{"instruction": f"Say nothing {i}", "input": "", "output": "<nooutput>"}
            for i in range(2)]
    alpaca = _write(tmp_path / "alpaca.jsonl", rows)
    with pytest.raises(DataError, match=r"^no usable training sample: 2 records read from "
                                        rf"{tmp_path / 'alpaca.jsonl'}, every one dropped "
                                        r"\(2 empty conversation\)"):
        _run(alpaca, bos_tokenizer, dataset_map_fn=alpaca_map_fn)
    assert "2 records with a 'empty conversation' warning" in logs()

    bad = tmp_path / "bad.jsonl"
    bad.write_text("{oops\n[1]\n")
    with pytest.raises(DataError, match=r"^no usable training sample: 2 records read from "
                                        rf"{bad}, every one dropped \(1 invalid JSON, 1 wrong "
                                        r"type\)"):
        _run(dict(data, data_files=str(bad)), bos_tokenizer, dataset_map_fn=None,
             skip_bad_records=True)


def test_train_without_a_usable_sample_exits_2_with_one_line(tmp_path):
    args = ["train", DEMO, "--work-dir", str(tmp_path / "wd"), "--cfg-options",
            "train_dataloader.dataset.max_length=4"]
    proc = _xtuner(tmp_path, *args, XTUNER_CACHE_DIR=str(tmp_path / "cache"))
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert errors == [(f"xtuner train: error: no usable training sample: 141 records read "
                       f"from {COLORIST_DATA_PATH}, every one dropped (141 no trainable "
                       "token); fix the data or the settings that drop them (max_length, "
                       "dataset_map_fn, template); `xtuner check-custom-dataset CONFIG` shows "
                       "each record")]
    assert "Traceback" not in proc.stderr


def test_checker_and_train_stop_on_the_same_line(tmp_path):
    data = tmp_path / "d.jsonl"
    lines = Path(COLORIST_DATA_PATH).read_text().splitlines()[:6]
    lines[3] = '{"conversation": []}'
    data.write_text("\n".join(lines) + "\n")
    options = ["--cfg-options", f"train_dataloader.dataset.dataset.data_files.train={data}"]
    env = dict(XTUNER_CACHE_DIR=str(tmp_path / "cache"))
    check = _xtuner(tmp_path, "check-custom-dataset", DEMO, "--no-progress", *options, **env)
    assert check.returncode == 1, check.stdout[-3000:]
    line = f"{data}:4: error: empty conversation: 'conversation' is an empty list"
    assert line in check.stdout.splitlines()
    train = _xtuner(tmp_path, "train", DEMO, "--work-dir", str(tmp_path / "wd"), *options, **env)
    assert train.returncode == 2, train.stderr[-3000:]
    assert (f"xtuner train: error: 1 bad record in the training data: {line}; fix the records"
            in train.stderr)


# --------------------------------------------------------------------------- the key


def _key(kwargs, sources, tokenizer):
    from xtuner.dataset.cache import dataset_cache_key

    return dataset_cache_key(kwargs, sources, tokenizer)[0]


def test_key_covers_the_map_fn_module_and_the_pipeline_code(tmp_path, bos_tokenizer,
                                                             monkeypatch):
    import importlib
    import sys

    from xtuner.dataset import cache
    from xtuner.dataset.sources import local_sources

    module = tmp_path / "user_map_fns.py"
    module.write_text("def clean(text):\n    return text.strip()\n\n\n"
                      "def qa_map_fn(example):\n"
                      "    return {'conversation': [{'input': clean(example['q']), "
                      "'output': example['a']}]}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("user_map_fns", None)
    map_fn = importlib.import_module("user_map_fns").qa_map_fn
    data = _write(tmp_path / "a.jsonl", [{"q": " x ", "a": "y"}])
    kwargs = dict(dataset=data, split="train", max_length=64, dataset_map_fn=map_fn,
                  template_map_fn=dict(type=template_map_fn_factory, template="default"))
    sources, _ = local_sources(data, "train")
    first = _key(kwargs, sources, bos_tokenizer)
    assert _key(kwargs, sources, bos_tokenizer) == first

    # A helper the map fn calls, not the map fn's own body, changes.
    module.write_text(module.read_text().replace("text.strip()", "text.lower()"))
    second = _key(kwargs, sources, bos_tokenizer)
    assert second != first

    # xtuner's own processing code: the tokenize and packing modules are part of the key.
    material = cache.dataset_cache_key(kwargs, sources, bos_tokenizer)[1]
    for name in ("xtuner.dataset.tokenize", "xtuner.dataset.packing",
                 "xtuner.dataset.huggingface", "xtuner.dataset.map_fns.template_map_fn"):
        assert len(material["pipeline"][name]) == 64, name
    pipeline = tmp_path / "pipeline_stand_in.py"
    pipeline.write_text("STEP = 1\n")
    monkeypatch.setattr(cache, "_PIPELINE_MODULES",
                        (*cache._PIPELINE_MODULES, "pipeline_stand_in"))
    with_stand_in = _key(kwargs, sources, bos_tokenizer)
    pipeline.write_text("STEP = 2\n")
    assert _key(kwargs, sources, bos_tokenizer) not in (with_stand_in, second)
