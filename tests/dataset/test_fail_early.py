"""Bad records stop ``process_hf_dataset`` / ``xtuner preprocess`` with ``file:line`` (or
``file:row N``) lines, whichever step trips over them; the skip switch drops them instead."""
from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasets import load_dataset

from xtuner.dataset import process_hf_dataset
from xtuner.dataset.map_fns import alpaca_map_fn, template_map_fn_factory
from xtuner.utils.errors import DataError

ALPACA = [{"instruction": f"Name colour {i}.", "input": "", "output": f"Colour {i}."}
          for i in range(6)]
QA = [{"question": f"What is {i}?", "answer": f"It is {i}."} for i in range(6)]


def qa_map_fn(example):
    """A user's map fn: it calls ``.strip()``, so a null question makes it raise."""
    return {"conversation": [{"input": example["question"].strip(),
                              "output": example["answer"]}]}


def qa_system_map_fn(example):
    return {"conversation": [{"system": "Be brief.", "input": example["question"],
                              "output": example["answer"]}]}


class ExplodingTokenizer:
    """A tokenizer that raises on text holding ``BOOM`` (a stand-in for a tokenizer bug)."""

    def __init__(self, tokenizer):
        self.inner = tokenizer

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def _check(self, text):
        for piece in [text] if isinstance(text, str) else text:
            if "BOOM" in piece:
                raise ValueError("cannot encode this text")

    def encode(self, text, **kwargs):
        self._check(text)
        return self.inner.encode(text, **kwargs)

    def __call__(self, text, **kwargs):
        self._check(text)
        return self.inner(text, **kwargs)


def _jsonl(path: Path, rows) -> dict:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return dict(type=load_dataset, path="json", data_files=str(path))


def _parquet(path: Path, rows) -> dict:
    pq.write_table(pa.Table.from_pylist(rows), path)
    return dict(type=load_dataset, path="parquet", data_files=str(path))


def _run(data, tokenizer, map_fn, **kw):
    kw.setdefault("map_num_proc", 1)
    kw.setdefault("max_length", 512)  # room for the alpaca system prompt
    return process_hf_dataset(
        data, tokenizer=tokenizer, dataset_map_fn=map_fn,
        template_map_fn=dict(type=template_map_fn_factory, template="default"), **kw)


def _problems(exc: pytest.ExceptionInfo) -> list[str]:
    """The first bad record's problem, as ``xtuner check-custom-dataset`` prints it, from the
    one-line error."""
    message = str(exc.value)
    assert "\n" not in message
    body = message.split(" in the training data: ", 1)[1].rsplit("; fix the records", 1)[0]
    return [re.sub(r" \(also [^()]*\)$", "", body)]


def test_map_fn_exception_names_the_line(tmp_path, bos_tokenizer):
    rows = list(QA)
    rows[2] = {"question": None, "answer": "x"}
    data = _jsonl(tmp_path / "qa.jsonl", rows)
    with pytest.raises(DataError) as info:
        _run(data, bos_tokenizer, qa_map_fn)
    assert _problems(info) == [
        (f"{tmp_path / 'qa.jsonl'}:3: error: map fn does not fit the data: qa_map_fn raised "
        "AttributeError: 'NoneType' object has no attribute 'strip'")]
    assert str(info.value).startswith("1 bad record in the training data:")
    kept = _run(data, bos_tokenizer, qa_map_fn, skip_bad_records=True, cache=False)
    full = _run(_jsonl(tmp_path / "good.jsonl", QA[:2] + QA[3:]), bos_tokenizer, qa_map_fn,
                cache=False)
    assert kept["input_ids"] == full["input_ids"]


def test_map_fn_output_of_the_wrong_type_is_a_record_error(tmp_path, bos_tokenizer):
    rows = list(QA)
    rows[4] = {"question": "q", "answer": ["not", "text"]}
    with pytest.raises(DataError) as info:
        _run(_jsonl(tmp_path / "qa.jsonl", rows), bos_tokenizer, qa_map_fn, cache=False)
    # The type check of the raw records catches the mixed JSON types first.
    assert _problems(info) == [
        (f"{tmp_path / 'qa.jsonl'}:5: error: wrong type: 'answer' is a list ([\"not\", "
        f"\"text\"]) but a string at {tmp_path / 'qa.jsonl'}:1; datasets needs one type per key")]


def test_parquet_row_that_only_the_map_fn_trips_over(tmp_path, bos_tokenizer):
    rows = list(QA)
    rows[4] = {"question": None, "answer": "x"}
    path = tmp_path / "qa.parquet"
    with pytest.raises(DataError) as info:
        _run(_parquet(path, rows), bos_tokenizer, qa_map_fn, cache=False)
    assert _problems(info) == [
        (f"{path}:row 4: error: map fn does not fit the data: qa_map_fn raised AttributeError: "
        "'NoneType' object has no attribute 'strip'")]


def test_parquet_bad_row_and_wrong_columns(tmp_path, bos_tokenizer):
    rows = list(ALPACA)
    rows[3] = {"instruction": "Name a colour.", "input": "", "output": None}
    path = tmp_path / "alpaca.parquet"
    data = _parquet(path, rows)
    with pytest.raises(DataError) as info:
        _run(data, bos_tokenizer, alpaca_map_fn, cache=False)
    assert _problems(info) == [
        f"{path}:row 3: error: wrong type: 'output' must be a string, got null"]
    kept = _run(data, bos_tokenizer, alpaca_map_fn, skip_bad_records=True, cache=False,
                pack_to_max_length=False)
    assert len(kept) == 5

    renamed = tmp_path / "renamed.parquet"
    pq.write_table(pa.Table.from_pylist([{"instruction": "a", "input": "", "outptu": "b"}]),
                   renamed)
    with pytest.raises(DataError) as info:
        _run(dict(data, data_files=str(renamed)), bos_tokenizer, alpaca_map_fn, cache=False,
             skip_bad_records=True)  # a file-wide problem is not skipped
    assert (f"{renamed}: error: missing key: 'output' (found 'outptu': rename it to 'output') "
            "(the columns of the file)") in str(info.value)

    numbers = tmp_path / "numbers.parquet"
    pq.write_table(pa.Table.from_pylist([{"instruction": "a", "input": "", "output": 3}]),
                   numbers)
    with pytest.raises(DataError, match=f"{numbers}: error: wrong type: column 'output' holds "
                                        "int64; the 'alpaca' format needs a string"):
        _run(dict(data, data_files=str(numbers)), bos_tokenizer, alpaca_map_fn, cache=False)


def test_template_and_tokenizer_errors_name_the_line(tmp_path, bos_tokenizer):
    rows = list(ALPACA)
    rows[1] = {"instruction": "Say BOOM.", "input": "", "output": "ok"}
    data = _jsonl(tmp_path / "a.jsonl", rows)
    with pytest.raises(DataError) as info:
        _run(data, ExplodingTokenizer(bos_tokenizer), alpaca_map_fn, cache=False)
    assert _problems(info) == [
        (f"{tmp_path / 'a.jsonl'}:2: error: tokenize error: the tokenizer raised ValueError: "
        "cannot encode this text")]
    kept = _run(data, ExplodingTokenizer(bos_tokenizer), alpaca_map_fn, cache=False,
                skip_bad_records=True, pack_to_max_length=False)
    assert len(kept) == 5

    # minicpm has no SYSTEM field, and this map fn sets a system prompt.
    qa = _jsonl(tmp_path / "qa.jsonl", QA)
    with pytest.raises(DataError) as info:
        process_hf_dataset(qa, tokenizer=bos_tokenizer, max_length=64,
                           dataset_map_fn=qa_system_map_fn, map_num_proc=1, cache=False,
                           template_map_fn=dict(type=template_map_fn_factory,
                                                template="minicpm"))
    assert str(info.value).startswith(
        f"6 bad records in the training data: {tmp_path / 'qa.jsonl'}:1: error: template "
        "error: template_map_fn raised DataError: conversation turn 0 has a system prompt")
    assert f"(also {tmp_path / 'qa.jsonl'}:2, " in str(info.value)


def test_every_record_failing_is_refused_even_with_skip(tmp_path, bos_tokenizer):
    data = _jsonl(tmp_path / "qa.jsonl", [{"question": None, "answer": "x"}] * 3)
    with pytest.raises(DataError) as info:
        _run(data, bos_tokenizer, qa_map_fn, skip_bad_records=True, cache=False)
    message = str(info.value)
    assert message.startswith(f"no usable training sample: 3 records read from "
                              f"{tmp_path / 'qa.jsonl'}, every one dropped (3 map fn does not "
                              "fit the data); fix the data")
    assert "\n" not in message


def test_worker_processes_report_the_same_line(tmp_path, bos_tokenizer):
    rows = [QA[i % len(QA)] for i in range(4400)]
    rows[3000] = {"question": None, "answer": "x"}
    data = _jsonl(tmp_path / "qa.jsonl", rows)
    with pytest.raises(DataError) as info:
        _run(data, bos_tokenizer, qa_map_fn, map_num_proc=2, cache=False)
    assert _problems(info)[0].startswith(f"{tmp_path / 'qa.jsonl'}:3001: error: map fn")


def test_skip_switch_leaves_no_temporary_copies(tmp_path, bos_tokenizer, monkeypatch,
                                                 caplog):
    import datasets

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf")
    path = tmp_path / "a.jsonl"
    _jsonl(path, ALPACA)
    path.write_text(path.read_text() + "{broken\n")
    data = dict(type=load_dataset, path="json", data_files=str(path))
    first = _run(data, bos_tokenizer, alpaca_map_fn, skip_bad_records=True, cache=False)
    entries = sorted(p.name for p in (tmp_path / "hf" / "generator").iterdir())
    again = _run(data, bos_tokenizer, alpaca_map_fn, skip_bad_records=True, cache=False)
    assert again["input_ids"] == first["input_ids"]
    assert list(tmp.iterdir()) == []  # nothing written to the temp folder
    # The cleaned records live in one datasets-cache entry, reused by the second run.
    assert sorted(p.name for p in (tmp_path / "hf" / "generator").iterdir()) == entries
    assert len(entries) == 1


CONFIG = """\
from datasets import load_dataset
from transformers import AutoTokenizer

from xtuner.dataset import process_hf_dataset
from xtuner.dataset.map_fns import template_map_fn_factory
from xtuner.demo import TINY_LLM_PATH


def qa_map_fn(example):
    return {{"conversation": [{{"input": example["question"].strip(),
                              "output": example["answer"]}}]}}


train_dataloader = dict(batch_size=1, dataset=dict(
    type=process_hf_dataset,
    dataset=dict(type=load_dataset, path="json", data_files={data!r}),
    tokenizer=dict(type=AutoTokenizer.from_pretrained,
                   pretrained_model_name_or_path=TINY_LLM_PATH),
    max_length=64, dataset_map_fn=qa_map_fn, map_num_proc=1,
    template_map_fn=dict(type=template_map_fn_factory, template="qwen_chat")))
"""


def test_preprocess_exits_2_with_one_message(tmp_path):
    import os
    import subprocess
    import sys

    xtuner_bin = Path(sys.executable).parent / "xtuner"
    if not xtuner_bin.exists():
        pytest.skip(f"console script not installed at {xtuner_bin}")
    rows = list(QA)
    rows[1] = {"question": None, "answer": "x"}
    _jsonl(tmp_path / "qa.jsonl", rows)
    cfg = tmp_path / "cfg.py"
    cfg.write_text(CONFIG.format(data=str(tmp_path / "qa.jsonl")))
    out = tmp_path / "out"
    # A child process: the real exit status, and mmengine's logger is not left holding
    # pytest's captured streams.
    env = {k: v for k, v in os.environ.items() if k != "XTUNER_DEBUG"}
    env.update(HF_HUB_OFFLINE="1", XTUNER_CACHE_DIR=str(tmp_path / "cache"),
               HF_DATASETS_CACHE=str(tmp_path / "hf"))

    def preprocess(**extra):
        return subprocess.run([str(xtuner_bin), "preprocess", str(cfg), "--save-dir", str(out)],
                              env={**env, **extra}, capture_output=True, text=True, timeout=300)

    proc = preprocess()
    assert proc.returncode == 2, proc.stderr[-2000:]
    err = proc.stderr[proc.stderr.index("xtuner preprocess: error:"):]  # after progress bars
    assert err.startswith("xtuner preprocess: error: 1 bad record in the training data: "
                          f"{tmp_path / 'qa.jsonl'}:2: error: map fn does not fit the data: "
                          "qa_map_fn raised AttributeError")
    assert err.count("\n") == 1  # one line
    assert "Traceback" not in proc.stderr and not out.exists()
    proc = preprocess(XTUNER_SKIP_BAD_RECORDS="1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "skipped 1 bad records (map fn does not fit the data: 1)" in proc.stdout + proc.stderr
    assert "wrote 3 rows" in proc.stdout  # 5 samples packed into rows of 64 tokens
