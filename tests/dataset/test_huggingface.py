"""``process_hf_dataset`` end to end on small JSONL files with a tiny tokenizer."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from datasets import Dataset, DatasetDict, load_dataset

from xtuner.dataset import encode_fn, plan_packed_rows, process_hf_dataset
from xtuner.dataset.map_fns import (
    alpaca_map_fn,
    openai_map_fn,
    template_map_fn,
    template_map_fn_factory,
)
from xtuner.utils.errors import ConfigError, DataError
from xtuner.utils.templates import PROMPT_TEMPLATE

IGNORE = -100
LONG_INPUT = "The quick brown fox jumps over the lazy dog. " * 12

CONVERSATION_ROWS = [
    {"conversation": [{"input": "What is the capital of France?", "output": "Paris."}]},
    {"conversation": [
        {"system": "You are a helpful assistant.", "input": "Hello", "output": "Hi!"},
        {"input": "How are you today?", "output": "I am fine, thank you!"}]},
    # Nothing trained: dropped.
    {"conversation": [{"input": "Hello", "output": "Hi!", "output_with_loss": False}]},
    # With max_length=48 the prompt fills the sample and the output is cut off: dropped.
    {"conversation": [{"input": LONG_INPUT, "output": "A sentence."}]},
    # Empty conversation: dropped.
    {"conversation": []},
    # Incremental-pretraining style.
    {"conversation": [{"input": "", "output": "学习使人进步。"}]},
]


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                    encoding="utf-8")
    return dict(type=load_dataset, path="json", data_files=str(path))


def _expected(rows, tokenizer, max_length, template=PROMPT_TEMPLATE.default, map_fn=None):
    """Each row run through map fn, template and encode_fn by hand, minus the dropped ones."""
    out = []
    for row in rows:
        example = map_fn(row) if map_fn else row
        example = template_map_fn(example, template)
        if not example["conversation"]:
            continue
        encoded = encode_fn(example, tokenizer, max_length)
        if any(label != IGNORE for label in encoded["labels"]):
            out.append(encoded)
    return out


@pytest.fixture
def conversation_cfg(tmp_path):
    return _write_jsonl(tmp_path / "conv.jsonl", CONVERSATION_ROWS)


def _run(dataset, tokenizer, **kw):
    kw.setdefault("template_map_fn", dict(type=template_map_fn_factory, template="default"))
    return process_hf_dataset(dataset, tokenizer=tokenizer, **kw)


def test_records_the_checker_fails_stop_training_with_their_line(conversation_cfg,
                                                                bos_tokenizer):
    path = conversation_cfg["data_files"]
    # The raw check runs first: line 5's empty conversation.
    with pytest.raises(DataError) as info:
        _run(conversation_cfg, bos_tokenizer, max_length=48, pack_to_max_length=False)
    assert str(info.value).startswith(
        f"1 bad record in the training data: {path}:5: error: empty conversation: "
        "'conversation' is an empty list; fix the records")
    # Well-formed records the settings leave nothing to train on are dropped, as in v0.
    rows = [r for r in CONVERSATION_ROWS if r["conversation"]]
    data = _write_jsonl(Path(path).with_name("no_empty.jsonl"), rows)
    assert len(_run(data, bos_tokenizer, max_length=48, pack_to_max_length=False)) == 3


def test_unpacked_conversation_format(conversation_cfg, bos_tokenizer):
    ds = _run(conversation_cfg, bos_tokenizer, max_length=48, pack_to_max_length=False,
              remove_unused_columns=True, skip_bad_records=True)
    expected = _expected(CONVERSATION_ROWS, bos_tokenizer, 48)
    assert len(expected) == 3  # rows 0, 1 and 5 survive
    assert len(ds) == 3
    assert sorted(ds.column_names) == ["input_ids", "labels", "length"]
    assert ds["input_ids"] == [e["input_ids"] for e in expected]  # file order kept
    assert ds["labels"] == [e["labels"] for e in expected]
    assert ds.length == [len(e["input_ids"]) for e in expected]
    assert ds.length == ds["length"]


def test_packed_conversation_format(conversation_cfg, bos_tokenizer):
    ds = _run(conversation_cfg, bos_tokenizer, max_length=48, pack_to_max_length=True,
              skip_bad_records=True)
    expected = _expected(CONVERSATION_ROWS, bos_tokenizer, 48)
    lengths = [len(e["input_ids"]) for e in expected]
    assert len(ds) == len(plan_packed_rows(lengths, 48)) == math.ceil(sum(lengths) / 48)
    assert sorted(ds.column_names) == ["cumulative_len", "input_ids", "labels", "length",
                                       "position_ids"]
    assert ds.length == [len(ids) for ids in ds["input_ids"]]
    assert sum(ds.length) == sum(lengths)
    # Every surviving sample appears whole in exactly one row.
    segments = sorted((tuple(row["input_ids"][a:b]), tuple(row["labels"][a:b]))
                      for row in ds for a, b in zip(row["cumulative_len"],
                                                    row["cumulative_len"][1:]))
    assert segments == sorted((tuple(e["input_ids"]), tuple(e["labels"])) for e in expected)


def test_packed_into_one_row_when_everything_fits(conversation_cfg, bos_tokenizer):
    ds = _run(conversation_cfg, bos_tokenizer, max_length=2048, use_varlen_attn=True,
              skip_bad_records=True)
    expected = _expected(CONVERSATION_ROWS, bos_tokenizer, 2048)
    assert len(expected) == 4  # the long sample now keeps its output
    assert len(ds) == 1
    assert ds.length == [sum(len(e["input_ids"]) for e in expected)]
    assert len(ds[0]["cumulative_len"]) == 5


def test_alpaca_nooutput_is_dropped(tmp_path, bos_tokenizer):
    rows = [
        {"instruction": "Translate to French", "input": "Hello", "output": "Bonjour."},
        {"instruction": "Say nothing", "input": "", "output": "<nooutput>"},
        {"instruction": "Add", "input": "1 2", "output": "3"},
    ]
    cfg = _write_jsonl(tmp_path / "alpaca.jsonl", rows)
    template = dict(type=template_map_fn_factory, template=PROMPT_TEMPLATE.internlm2_chat)
    for map_fn in (alpaca_map_fn, "xtuner.dataset.map_fns.alpaca_map_fn"):
        ds = _run(cfg, bos_tokenizer, max_length=256, dataset_map_fn=map_fn,
                  template_map_fn=template, pack_to_max_length=False,
                  remove_unused_columns=True)
        expected = _expected(rows, bos_tokenizer, 256, PROMPT_TEMPLATE.internlm2_chat,
                             alpaca_map_fn)
        assert len(ds) == len(expected) == 2
        assert ds["input_ids"] == [e["input_ids"] for e in expected]


def test_unknown_map_fn_name_is_a_config_error(conversation_cfg, bos_tokenizer):
    with pytest.raises(ConfigError, match="no_such_map_fn"):
        _run(conversation_cfg, bos_tokenizer, max_length=64, dataset_map_fn="no_such_map_fn",
             pack_to_max_length=False)


def test_openai_format_with_loss_flags(tmp_path, bos_tokenizer):
    rows = [
        {"messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello", "loss": False},
            {"role": "user", "content": "Bye"},
            {"role": "assistant", "content": "Goodbye"}]},
        # No `loss` key anywhere in this record: trained.
        {"messages": [{"role": "user", "content": "2+2?"},
                      {"role": "assistant", "content": "4"}]},
        # Only an untrained reply: dropped.
        {"messages": [{"role": "user", "content": "x"},
                      {"role": "assistant", "content": "y", "loss": False}]},
    ]
    cfg = _write_jsonl(tmp_path / "openai.jsonl", rows)
    options = dict(max_length=256, dataset_map_fn=openai_map_fn,
                   template_map_fn=dict(type=template_map_fn_factory,
                                        template=PROMPT_TEMPLATE.qwen_chat),
                   pack_to_max_length=False, remove_unused_columns=True)
    ds = _run(cfg, bos_tokenizer, **options)
    assert len(ds) == 2
    first = [i for i, lab in zip(ds[0]["input_ids"], ds[0]["labels"]) if lab != IGNORE]
    assert bos_tokenizer.decode(first) == "Goodbye<|im_end|>"
    second = [i for i, lab in zip(ds[1]["input_ids"], ds[1]["labels"]) if lab != IGNORE]
    assert bos_tokenizer.decode(second) == "4<|im_end|>"
    assert "Hello" in bos_tokenizer.decode(ds[0]["input_ids"])  # kept as context


def test_turns_without_output_with_loss_key_are_trained(tmp_path, bos_tokenizer):
    """A key set on one turn of the file must not switch off the loss of the others.

    (Arrow unifies the struct schema of all turns; an older ``datasets`` filled the missing
    key with ``None``, which v0 read as "no loss".)
    """
    rows = [
        {"conversation": [{"input": "Hi", "output": "Hello", "output_with_loss": False},
                          {"input": "Bye", "output": "Goodbye"}]},
        {"conversation": [{"input": "2+2?", "output": "4"}]},
    ]
    cfg = _write_jsonl(tmp_path / "mixed.jsonl", rows)
    ds = _run(cfg, bos_tokenizer, max_length=256, pack_to_max_length=False,
              remove_unused_columns=True)
    trained = [bos_tokenizer.decode([i for i, lab in zip(r["input_ids"], r["labels"])
                                     if lab != IGNORE]) for r in ds]
    assert trained == ["Goodbye<|endoftext|>", "4<|endoftext|>"]


def _split_rows(n, offset):
    return [{"conversation": [{"input": f"question {i}", "output": f"answer {i}"}]}
            for i in range(offset, offset + n)]


@pytest.fixture
def two_split_cfg(tmp_path):
    """A config that builds a ``DatasetDict`` with ``train`` (6 rows) and ``test`` (4 rows)."""
    cfg = _write_jsonl(tmp_path / "train.jsonl", _split_rows(6, 0))
    _write_jsonl(tmp_path / "test.jsonl", _split_rows(4, 100))
    cfg["data_files"] = {"train": str(tmp_path / "train.jsonl"),
                         "test": str(tmp_path / "test.jsonl")}
    return cfg


def test_split_handling(two_split_cfg, bos_tokenizer):
    with pytest.raises(ConfigError, match=r"no split 'validation' \(it has: train, test\)"):
        _run(two_split_cfg, bos_tokenizer, max_length=64, split="validation",
             pack_to_max_length=False)
    test = _run(two_split_cfg, bos_tokenizer, max_length=64, split="test",
                pack_to_max_length=False)
    assert [t[0]["output"] for t in test["conversation"]] == [f"answer {i}" for i in
                                                             range(100, 104)]
    everything = _run(two_split_cfg, bos_tokenizer, max_length=64, split=None,
                      pack_to_max_length=False)
    assert len(everything) == 10
    with pytest.raises(ConfigError, match="train split, not 'test'"):
        _run(two_split_cfg, bos_tokenizer, max_length=64, split="test", pack_to_max_length=True)


def test_a_datasetdict_object_is_accepted(bos_tokenizer):
    """v0 took a built ``DatasetDict`` as well as a config (``DatasetDict`` is a dict)."""
    data = DatasetDict(train=Dataset.from_list(_split_rows(6, 0)),
                       test=Dataset.from_list(_split_rows(4, 100)))
    assert len(_run(data, bos_tokenizer, max_length=64, split="test",
                    pack_to_max_length=False)) == 4
    with pytest.raises(ConfigError, match="no split 'validation'"):
        _run(data, bos_tokenizer, max_length=64, split="validation", pack_to_max_length=False)


def test_config_errors(bos_tokenizer):
    data = Dataset.from_list(_split_rows(4, 0))
    with pytest.raises(ConfigError, match="use_varlen_attn=True needs pack_to_max_length=True"):
        _run(data, bos_tokenizer, max_length=64, use_varlen_attn=True, pack_to_max_length=False)
    with pytest.raises(ConfigError, match="needs max_length"):
        _run(data, bos_tokenizer, max_length=None, pack_to_max_length=True)


def test_max_dataset_length_is_a_seeded_subset(tmp_path, bos_tokenizer):
    rows = [{"conversation": [{"input": f"question {i}", "output": f"answer {i}"}]}
            for i in range(30)]
    cfg = _write_jsonl(tmp_path / "many.jsonl", rows)

    def subset(seed):
        ds = _run(cfg, bos_tokenizer, max_length=64, max_dataset_length=5, seed=seed,
                  pack_to_max_length=False)
        return [turns[0]["output"] for turns in ds["conversation"]]

    first = subset(0)
    assert len(first) == len(set(first)) == 5
    assert set(first) <= {f"answer {i}" for i in range(30)}
    assert subset(0) == first
    assert subset(1) != first
