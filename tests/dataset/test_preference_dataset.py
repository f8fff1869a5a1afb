"""Preference data: tokens, labels, map fns and packed-row layout asked of XTuner 0.2.0's own
``preference_dataset.py`` (loaded from its wheel), packing keeps pairs whole, the collate
layout, and one-line errors naming the bad line."""
from __future__ import annotations

import json

import pytest
import v0_oracle
from v0_oracle import load_v0

from xtuner.dataset import build_preference_dataset, load_jsonl_dataset
from xtuner.dataset.collate_fns import preference_collate_fn
from xtuner.dataset.map_fns import intel_orca_dpo_map_fn, orpo_dpo_mix_40k_map_fn
from xtuner.dataset.preference_dataset import tokenize_pair
from xtuner.utils.errors import ConfigError, DataError

IGNORE = -100
LONG = "Eat well, sleep, exercise. " * 8


def _msg(role, content):
    return {"role": role, "content": content}


RECORDS = [
    {"prompt": [_msg("user", "What is the capital of France?")],
     "chosen": [_msg("assistant", "The capital of France is Paris.")],
     "rejected": [_msg("assistant", "Lyon.")]},
    {"prompt": [_msg("system", "You are a helpful assistant."),
                _msg("user", "Translate to Chinese: hello"), _msg("assistant", "你好"),
                _msg("user", "And: world")],
     "chosen": [_msg("assistant", "世界")], "rejected": [_msg("assistant", "")]},
    {"prompt": [_msg("user", "Give three tips for staying healthy.")],
     "chosen": [_msg("assistant", LONG)], "rejected": [_msg("assistant", "Sleep. " * 3)]},
    {"prompt": [_msg("user", "def add(a, b):")],
     "chosen": [_msg("assistant", "    return a + b\n")],
     "rejected": [_msg("assistant", "    return a - b\n")]},
]


@pytest.fixture(scope="module")
def v0_pref():
    """v0's ``xtuner/dataset/preference_dataset.py``, executed from the wheel."""
    load_v0()  # skips without the wheel; loads the modules it imports (registry, huggingface)
    src = v0_oracle._unpacked()
    return v0_oracle._exec_file("xtuner_v0.dataset.preference_dataset",
                                src / "dataset" / "preference_dataset.py")


@pytest.mark.parametrize("kind", ["bos_tokenizer", "qwen2_tokenizer"])
@pytest.mark.parametrize("max_length", [512, 24])
@pytest.mark.parametrize("is_reward", [False, True])
def test_tokens_and_labels_are_v0s(v0_pref, request, kind, max_length, is_reward):
    tokenizer = request.getfixturevalue(kind)
    reward = 3 if is_reward else -1
    for record in RECORDS:
        ours = tokenize_pair(record, tokenizer, max_length, is_reward, reward)
        theirs = v0_pref.tokenize(record, tokenizer, max_length, is_reward, reward)
        assert ours == theirs


def test_map_fns_are_v0s(v0_pref):
    orca = {"system": "", "question": "2+2?", "chosen": "4", "rejected": "5"}
    assert intel_orca_dpo_map_fn(orca) == v0_pref.intel_orca_dpo_map_fn(orca)
    mix = {"chosen": [_msg("user", "hi"), _msg("assistant", "hello"), _msg("user", "bye"),
                      _msg("assistant", "goodbye")],
           "rejected": [_msg("user", "hi"), _msg("assistant", "hello"), _msg("user", "bye"),
                        _msg("assistant", "no")]}
    assert orpo_dpo_mix_40k_map_fn(mix) == v0_pref.orpo_dpo_mix_40k_map_fn(mix)
    with pytest.raises(DataError, match="'chosen' has 2 messages and 'rejected' 1"):
        orpo_dpo_mix_40k_map_fn({"chosen": mix["chosen"][:2], "rejected": mix["chosen"][:1]})


def _write(path, records):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
                    encoding="utf-8")
    return str(path)


def _tokenized(tokenizer, records, max_length, is_reward=False, reward=-1):
    return [tokenize_pair(r, tokenizer, max_length, is_reward, reward) for r in records]


def test_unpacked_dataset_holds_each_pair(tmp_path, bos_tokenizer):
    path = _write(tmp_path / "pairs.jsonl", RECORDS)
    ds = build_preference_dataset(dict(type=load_jsonl_dataset, data_files=path), bos_tokenizer,
                                  max_length=512, num_proc=1)
    assert [dict(row) for row in ds] == _tokenized(bos_tokenizer, RECORDS, 512)


def test_pairs_without_a_response_token_are_dropped(tmp_path, bos_tokenizer):
    # cut at the longest prompt: that record (the multi-turn one) keeps no response token
    prompts = [p["chosen_labels"].count(IGNORE) for p in _tokenized(bos_tokenizer, RECORDS, 512)]
    cut = max(prompts)
    path = _write(tmp_path / "pairs.jsonl", RECORDS)
    ds = build_preference_dataset(load_jsonl_dataset(path), bos_tokenizer, max_length=cut,
                                  num_proc=1)
    expected = [p for p in _tokenized(bos_tokenizer, RECORDS, cut)
                if set(p["chosen_labels"]) != {IGNORE} and set(p["rejected_labels"]) != {IGNORE}]
    assert 0 < len(expected) < len(RECORDS)
    assert [dict(row) for row in ds] == expected


@pytest.mark.parametrize("is_reward", [False, True])
def test_packed_rows_keep_pairs_whole_in_v0s_layout(v0_pref, tmp_path, bos_tokenizer,
                                                    is_reward):
    records = RECORDS * 5
    path = _write(tmp_path / "pairs.jsonl", records)
    pairs = _tokenized(bos_tokenizer, records, 512, is_reward, 3 if is_reward else -1)
    lengths = sorted({len(p["chosen_ids"]) + len(p["rejected_ids"]) for p in pairs})
    budget = lengths[-2]  # the longest pair does not fit and is dropped (v0 drops it too)
    ds = build_preference_dataset(
        dict(type=load_jsonl_dataset, data_files=[path]), bos_tokenizer,
        max_length=512, is_dpo=not is_reward, is_reward=is_reward,
        reward_token_id=3 if is_reward else -1, use_varlen_attn=True, max_packed_length=budget,
        num_proc=1)
    seen = []
    for row in ds:
        assert len(row["input_ids"]) <= budget
        bounds = row["cumulative_len"]
        assert bounds[0] == 0 and bounds[-1] == len(row["input_ids"]) and len(bounds) % 2 == 1
        row_pairs = []
        for i in range(0, len(bounds) - 1, 2):
            c = slice(bounds[i], bounds[i + 1])
            r = slice(bounds[i + 1], bounds[i + 2])
            row_pairs.append({"chosen_ids": row["input_ids"][c], "rejected_ids":
                              row["input_ids"][r], "chosen_labels": row["labels"][c],
                              "rejected_labels": row["labels"][r]})
        # v0's PackedDatasetWrapper lays out the same pairs identically
        v0_rows = v0_pref.PackedDatasetWrapper(row_pairs, max_packed_length=budget,
                                               shuffle_before_pack=False)
        assert len(v0_rows) == 1 and v0_rows[0] == dict(row)
        seen += row_pairs
    key = lambda p: json.dumps(p, sort_keys=True)  # noqa: E731
    dropped = max(pairs, key=lambda p: len(p["chosen_ids"]) + len(p["rejected_ids"]))
    expected = [p for p in pairs if len(p["chosen_ids"]) + len(p["rejected_ids"]) <= budget]
    assert len(expected) == len(pairs) - pairs.count(dropped)
    assert sorted(map(key, seen)) == sorted(map(key, expected))
    assert len(ds) < len(expected)  # several pairs share a row


def test_collate_layouts():
    pairs = [dict(chosen_ids=[5, 6, 7], chosen_labels=[IGNORE, 6, 7], rejected_ids=[5, 8],
                  rejected_labels=[IGNORE, 8]),
             dict(chosen_ids=[9], chosen_labels=[9], rejected_ids=[9, 0, 0, 1],
                  rejected_labels=[IGNORE, 0, 0, 1])]
    padded = preference_collate_fn(pairs, pad_index=2)["data"]
    assert padded["input_ids"].tolist() == [[5, 6, 7, 2], [5, 8, 2, 2], [9, 2, 2, 2],
                                            [9, 0, 0, 1]]
    assert padded["labels"].tolist() == [[IGNORE, 6, 7, IGNORE], [IGNORE, 8, IGNORE, IGNORE],
                                         [9, IGNORE, IGNORE, IGNORE], [IGNORE, 0, 0, 1]]
    assert padded["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 0],
                                                 [1, 1, 1, 1]]
    packed = preference_collate_fn(pairs, use_varlen_attn=True, return_hf_format=True)
    assert packed["input_ids"].tolist() == [[5, 6, 7, 5, 8, 9, 9, 0, 0, 1]]
    assert packed["labels"].tolist() == [[IGNORE, 6, 7, IGNORE, 8, 9, IGNORE, 0, 0, 1]]
    assert packed["position_ids"].tolist() == [[0, 1, 2, 0, 1, 0, 0, 1, 2, 3]]
    assert packed["cumulative_len"][0].tolist() == [0, 3, 5, 6, 10]
    assert packed["max_seqlen"] == 4 and "attention_mask" not in packed
    # a packed row of pairs collates to the same batch as its pairs
    row = {"input_ids": packed["input_ids"][0].tolist(), "labels": packed["labels"][0].tolist(),
           "position_ids": packed["position_ids"][0].tolist(),
           "cumulative_len": packed["cumulative_len"][0].tolist()}
    again = preference_collate_fn([row], use_varlen_attn=True, return_hf_format=True)
    assert again["input_ids"].tolist() == packed["input_ids"].tolist()
    assert again["cumulative_len"][0].tolist() == packed["cumulative_len"][0].tolist()


def test_bad_lines_and_settings_are_one_line_errors(tmp_path, bos_tokenizer):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(RECORDS[0]) + "\n{not json\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.jsonl:2: not valid JSON"):
        load_jsonl_dataset(str(bad))
    missing = tmp_path / "missing.jsonl"
    _write(missing, [RECORDS[0], {"prompt": [], "chosen": []}])
    with pytest.raises(DataError, match=r"missing.jsonl:2: .*missing 'rejected'"):
        load_jsonl_dataset(str(missing))
    shape = tmp_path / "shape.jsonl"
    _write(shape, [{**RECORDS[0], "chosen": "Paris"}])
    with pytest.raises(DataError, match=r"shape.jsonl:1: 'chosen' must be a list of messages"):
        load_jsonl_dataset(str(shape))
    good = _write(tmp_path / "good.jsonl", RECORDS)
    with pytest.raises(ConfigError, match="exactly one of is_dpo and is_reward"):
        build_preference_dataset(good, bos_tokenizer, 64, is_dpo=True, is_reward=True)
    with pytest.raises(ConfigError, match="needs reward_token_id"):
        build_preference_dataset(good, bos_tokenizer, 64, is_dpo=False, is_reward=True)
    with pytest.raises(ConfigError, match="needs use_varlen_attn=True"):
        build_preference_dataset(good, bos_tokenizer, 64, pack_to_max_length=True)
    with pytest.raises(ConfigError, match="exactly one of data_files and data_dir"):
        load_jsonl_dataset()


def test_data_dir_reads_every_file_with_the_suffix(tmp_path):
    _write(tmp_path / "a.jsonl", RECORDS[:2])
    _write(tmp_path / "b.jsonl", RECORDS[2:])
    (tmp_path / "notes.txt").write_text("not data", encoding="utf-8")
    ds = load_jsonl_dataset(data_dir=str(tmp_path), suffix=".jsonl")
    assert len(ds) == len(RECORDS)
    assert [r["chosen"][0]["content"] for r in ds] == [r["chosen"][0]["content"]
                                                       for r in RECORDS]
