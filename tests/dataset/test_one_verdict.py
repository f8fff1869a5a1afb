"""One verdict on data: ``xtuner check-custom-dataset`` and training judge every record alike.

What the checker calls an error stops training with the same ``file:line: error: ...`` line
(or, with the skip switch, drops the record); what it calls a warning is logged by training
too. Required fields come from the format's declared schema, and a template whose special
tokens the tokenizer lacks is a warning with the measured cost, in both.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from datasets import load_dataset

from xtuner.dataset import process_hf_dataset
from xtuner.dataset.checker import check_dataset
from xtuner.dataset.map_fns import alpaca_map_fn, template_map_fn_factory
from xtuner.dataset.problems import ERROR, TEMPLATE_TOKENS, WARNING
from xtuner.dataset.sources import resolve_sources
from xtuner.dataset.specs import DatasetSpec, declared_format
from xtuner.dataset.tokenize import encode_fn
from xtuner.utils.errors import DataError

LONG = "The quick brown fox jumps over the lazy dog. " * 12
GOOD = {"id": "g", "conversation": [{"input": "Hi", "output": "Hello there."}]}

# Second record of a two-record file -> the severity the checker gives it (None: no problem).
CASES = {
    "good": (GOOD, None),
    "empty conversation": ({"conversation": []}, ERROR),
    # Dropped with a warning, in both (as v0 dropped them).
    "nothing trained": ({"conversation": [{"input": "Hi", "output": "Hello",
                                           "output_with_loss": False}]}, WARNING),
    "trained tokens beyond max_length": ({"conversation": [{"input": LONG, "output": "x"}]},
                                         WARNING),
    "truncated": ({"conversation": [{"input": "Hi", "output": LONG}]}, WARNING),
    "misspelled optional key": ({"conversation": [{"input": "Hi", "output": "Yo",
                                                   "sytem": "Be brief."}]}, WARNING),
    "wrong type": ({"conversation": [{"input": "Hi", "output": 3}]}, ERROR),
    "one key, two JSON types": ({"id": 7, "conversation": GOOD["conversation"]}, ERROR),
    "user then user": ({"conversation": [{"input": "Hi"}]}, ERROR),
}


@pytest.fixture
def logs(monkeypatch):
    """Messages training logs (mmengine's handler keeps an old stdout)."""
    from xtuner.dataset import cache, huggingface, problems

    seen: list[str] = []

    def record(msg, *args, **kwargs):
        seen.append(str(msg))

    for module in (cache, huggingface, problems):
        monkeypatch.setattr(module, "print_log", record)
    return seen


def _data(path: Path, rows) -> dict:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return dict(type=load_dataset, path="json", data_files=str(path))


def _settings(tokenizer, map_fn=None, template="qwen_chat", max_length=48):
    return dict(tokenizer=tokenizer, dataset_map_fn=map_fn, max_length=max_length,
                template_map_fn=dict(type=template_map_fn_factory, template=template),
                pack_to_max_length=False, remove_unused_columns=True, map_num_proc=1,
                cache=False)


def _check(data: dict, settings: dict):
    """The checker's report for the same data and settings."""
    template_fn = template_map_fn_factory(settings["template_map_fn"]["template"])
    spec = DatasetSpec(
        name="train", sources=resolve_sources(data, "train", "dataset"),
        map_fn=settings["dataset_map_fn"], template_fn=template_fn,
        template_name=settings["template_map_fn"]["template"],
        tokenizer=settings["tokenizer"], max_length=settings["max_length"], pack=False,
        input_ids_with_output=True, with_image_token=False, max_dataset_length=None)
    return check_dataset(spec, num_proc=1, progress=False)


def _problems_at(report, line: int) -> list:
    return [(loc, p) for _, loc, p in report.shown if loc.endswith(f":{line}")]


@pytest.mark.parametrize("case", list(CASES))
def test_checker_and_training_give_each_record_the_same_verdict(case, tmp_path,
                                                                bos_tokenizer, logs):
    record, severity = CASES[case]
    data = _data(tmp_path / "d.jsonl", [GOOD, record])
    settings = _settings(bos_tokenizer)
    report = _check(data, settings)
    problems = _problems_at(report, 2)
    assert sorted({p.severity for _, p in problems}) == ([severity] if severity else [])

    errors = [f"{loc}: {p}" for loc, p in problems if p.severity == ERROR]
    if errors:
        with pytest.raises(DataError) as info:
            process_hf_dataset(data, **settings)
        assert str(info.value).startswith(
            f"1 bad record in the training data: {errors[0]}; fix the records")
        assert "\n" not in str(info.value)
        logs.clear()
        kept = process_hf_dataset(data, skip_bad_records=True, **settings)
        assert f"skipped 1 bad records ({problems[0][1].kind}: 1); first: {errors[0]}" in logs
    else:
        kept = process_hf_dataset(data, **settings)
    assert len(kept) == report.kept
    for loc, p in problems:
        if p.severity == WARNING:
            assert f"1 record with a '{p.kind}' warning; first: {loc}: {p}" in logs


def test_a_map_fn_that_drops_on_purpose_warns_in_both(tmp_path, bos_tokenizer, logs):
    rows = [{"instruction": "Add", "input": "1 2", "output": "3"},
            {"instruction": "Say nothing", "input": "", "output": "<nooutput>"}]
    data = _data(tmp_path / "a.jsonl", rows)
    settings = _settings(bos_tokenizer, map_fn=alpaca_map_fn)
    report = _check(data, settings)
    [(loc, problem)] = _problems_at(report, 2)
    assert problem.severity == WARNING and report.kept == 1 and report.errors == 0
    ds = process_hf_dataset(data, **settings)
    assert len(ds) == 1
    assert f"1 record with a 'empty conversation' warning; first: {loc}: {problem}" in logs


def qa_map_fn(example):
    """A user's map fn: ``context`` is read only when present."""
    prompt = example["question"]
    if "context" in example and example["context"]:
        prompt = example["context"] + "\n" + prompt
    return {"conversation": [{"input": prompt, "output": example["answer"]}]}


def test_required_fields_come_from_the_declared_schema(tmp_path, bos_tokenizer):
    # A user's map fn declares no schema: a key read under an `if` is not required.
    assert declared_format(qa_map_fn).fields == {}
    assert list(declared_format(alpaca_map_fn).fields) == ["instruction", "input", "output"]
    rows = [{"question": "What is 2+2?", "answer": "4"},
            {"question": "And 3+3?", "answer": "6", "context": "Arithmetic."}]
    data = _data(tmp_path / "qa.jsonl", rows)
    settings = _settings(bos_tokenizer, map_fn=qa_map_fn)
    report = _check(data, settings)
    assert report.errors == 0 and report.kept == 2
    assert len(process_hf_dataset(data, **settings)) == 2
    # What is certain is still checked: the map fn raising names the record, in both.
    # A record without `question` is loaded with question=None, in both: no error.
    data = _data(tmp_path / "qa2.jsonl", [rows[0], {"answer": "6"}])
    assert _check(data, settings).errors == 0
    assert len(process_hf_dataset(data, **settings)) == 2
    data = _data(tmp_path / "qa3.jsonl", [rows[0], {"question": "Q", "answer": "A",
                                                    "context": 5}])
    report = _check(data, settings)
    [(loc, problem)] = _problems_at(report, 2)
    assert str(problem) == ("error: map fn does not fit the data: qa_map_fn raised TypeError: "
                            "unsupported operand type(s) for +: 'int' and 'str'")
    with pytest.raises(DataError) as info:
        process_hf_dataset(data, **settings)
    assert f"training data: {loc}: {problem}; fix the records" in str(info.value)


def _with_tokens(tokenizer, tokens):
    extended = copy.deepcopy(tokenizer)
    extended.add_tokens(list(tokens), special_tokens=True)
    return extended


def test_template_tokens_missing_from_the_tokenizer(tmp_path, bos_tokenizer, logs):
    rows = [{"conversation": [{"system": "Be brief.", "input": f"Question {i}?",
                               "output": f"Answer {i}."}, {"input": "More?", "output": "No."}]}
            for i in range(3)]
    data = _data(tmp_path / "d.jsonl", rows)
    settings = _settings(bos_tokenizer, template="llama3_chat", max_length=None)
    report = _check(data, settings)
    [note] = report.notes
    assert note.severity == WARNING and note.kind == TEMPLATE_TOKENS
    assert report.warnings == 1 and report.errors == 0
    markers = ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    assert f"({', '.join(markers)})" in note.detail
    # The cost, measured the other way: the same samples with a tokenizer that has them.
    extended = _with_tokens(bos_tokenizer, markers)
    templated = [template_map_fn_factory("llama3_chat")(r) for r in rows]
    added = sum(len(encode_fn(t, bos_tokenizer, None)["input_ids"])
                - len(encode_fn(t, extended, None)["input_ids"]) for t in templated)
    assert added > 0
    assert f"adding {added / len(rows):.1f} tokens per sample (measured over 3 samples)" \
        in note.detail
    process_hf_dataset(data, **settings)
    assert f"{note}" in logs

    # The template's own tokenizer: no warning, in either.
    logs.clear()
    settings = _settings(extended, template="llama3_chat", max_length=None)
    assert _check(data, settings).notes == []
    process_hf_dataset(data, **settings)
    assert not [line for line in logs if TEMPLATE_TOKENS in line]
    # Templates whose markers are text by design (no end-of-turn marker) are not flagged.
    assert _check(data, _settings(bos_tokenizer, template="default")).notes == []
