"""``xtuner check-custom-dataset`` on ``build_preference_dataset`` configs: each JSONL line
checked with ``file:line`` as ``load_jsonl_dataset`` and the map fn see it, the pairs training
drops (no response token within ``max_length``, longer than ``max_packed_length``) reported as
warnings, and the line training stops on printed the same way.

The tokenizer is the shipped tiny demo one (ChatML chat template).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from xtuner.entry_point import main

CONFIG = """\
from datasets import load_dataset
from transformers import AutoTokenizer

from xtuner.dataset.map_fns import orpo_dpo_mix_40k_map_fn
from xtuner.dataset.preference_dataset import build_preference_dataset, load_jsonl_dataset
from xtuner.demo import TINY_LLM_PATH

train_dataloader = dict(batch_size=1, dataset=dict(
    type=build_preference_dataset,
    dataset={dataset},
    tokenizer=dict(type=AutoTokenizer.from_pretrained, pretrained_model_name_or_path=TINY_LLM_PATH),
    max_length=48,
    dataset_map_fn={map_fn},
    is_dpo={is_dpo},
    is_reward={is_reward},
    reward_token_id={reward_token_id},
    num_proc=1,
    use_varlen_attn=True,
    max_packed_length=80))
"""


def _msg(role: str, content) -> dict:
    return {"role": role, "content": content}


def _pair(prompt="Hex code of red?", chosen="#ff0000", rejected="#00ff00") -> dict:
    return {"prompt": [_msg("user", prompt)], "chosen": [_msg("assistant", chosen)],
            "rejected": [_msg("assistant", rejected)]}


LONG = " ".join(["words"] * 60)
LINES = [
    json.dumps(_pair()),
    '{"prompt": [], "chosen": [',
    json.dumps({"prompt": [_msg("user", "hi")], "chosen": [_msg("assistant", "yo")]}),
    json.dumps(_pair(chosen=42)),
    json.dumps({**_pair(), "chosen": []}),
    json.dumps(_pair(prompt=LONG)),
    json.dumps(_pair(chosen="red is " + " ".join(["ff"] * 14),
                     rejected="green is " + " ".join(["00"] * 14))),
    "",
    json.dumps(_pair(prompt="Hex code of blue?", chosen="#0000ff", rejected="#ffff00")),
    "[1, 2]",
]


def _config(tmp_path: Path, data: Path, name="pref.py", loader="jsonl", map_fn="None",
            reward=False) -> str:
    if loader == "jsonl":
        dataset = f"dict(type=load_jsonl_dataset, data_files=[{str(data)!r}])"
    else:
        dataset = f"dict(type=load_dataset, path='json', data_files=dict(train={str(data)!r}))"
    path = tmp_path / name
    path.write_text(CONFIG.format(dataset=dataset, map_fn=map_fn, is_dpo=not reward,
                                  is_reward=reward, reward_token_id=5 if reward else -1))
    return str(path)


def _check(capsys, config: str) -> tuple[int, str]:
    code = main(["check-custom-dataset", config, "--no-progress"])
    return code, capsys.readouterr().out


@pytest.fixture
def pairs(tmp_path) -> Path:
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    return path


def test_preference_lines_by_file_and_line(tmp_path, pairs, capsys):
    code, out = _check(capsys, _config(tmp_path, pairs))
    f = str(pairs)
    assert code == 1, out
    problems = [line for line in out.splitlines() if line.startswith(f + ":")]
    assert problems == [
        f"{f}:2: error: invalid JSON: Expecting value at column 27",
        (f"{f}:3: error: bad preference record: a preference record needs 'prompt', 'chosen' "
         "and 'rejected'; missing 'rejected'"),
        (f"{f}:4: error: bad preference record: 'chosen' must be a list of messages "
         '{"role": ..., "content": ...} (OpenAI format)'),
        f"{f}:5: error: bad preference record: 'chosen' has no message",
        (f"{f}:6: warning: no trainable token: the chosen response has no token within "
         "max_length=48; the pair is dropped"),
        (f"{f}:7: warning: too long: the pair has 94 tokens (chosen 46 + rejected 48) > "
         "max_packed_length=80; the pair is dropped"),
        (f"{f}:10: error: wrong type: a record must be a JSON object with prompt, chosen and "
         "rejected, got a list ([1, 2])"),
    ]
    assert ("preference pairs for DPO/ORPO (prompt/chosen/rejected messages), the "
            "tokenizer's chat template, max_length 48 per sequence, max_packed_length 80") in out
    assert "  records read     9\n  kept             2\n" in out
    assert out.rstrip().endswith("FAILED: 5 errors and 2 warnings in 9 records (7 dropped)")


def test_training_stops_on_the_same_line(tmp_path, pairs, capsys):
    """Training (``load_jsonl_dataset``) stops at the first bad line with the detail the
    checker prints for it; once the errors are gone, it drops the two pairs the checker
    warned about and keeps the others."""
    from mmengine.config import Config

    from xtuner.registry import BUILDER
    from xtuner.utils.errors import DataError

    lines = LINES[:1] + LINES[2:]  # drop the invalid JSON: the next error is a missing key
    pairs.write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = _config(tmp_path, pairs)
    _, out = _check(capsys, config)
    first = next(line for line in out.splitlines() if ": error: " in line)
    where, detail = first.split(": error: bad preference record: ")
    with pytest.raises(DataError) as info:
        BUILDER.build(Config.fromfile(config).train_dataloader.dataset)
    assert str(info.value) == f"{where}: {detail}"

    good = [lines[0], lines[4], lines[5], lines[7]]
    pairs.write_text("\n".join(good) + "\n", encoding="utf-8")
    code, out = _check(capsys, config)
    assert code == 0, out
    assert out.rstrip().endswith("OK: 2 of 4 records usable, 2 warnings")
    dataset = BUILDER.build(Config.fromfile(config).train_dataloader.dataset)
    # packed: both kept pairs, each as its chosen and rejected sequence
    assert sum(len(row) - 1 for row in dataset["cumulative_len"]) == 4
    assert f"  packed rows      {len(dataset)} (packing efficiency" in out


def test_map_fn_output_is_checked_and_reward_pairs(tmp_path, capsys):
    data = tmp_path / "mix.jsonl"
    conv = [_msg("user", "Hex code of red?"), _msg("assistant", "#ff0000")]
    rows = [{"chosen": conv, "rejected": conv[:1] + [_msg("assistant", "#00ff00")]},
            {"chosen": conv, "rejected": conv + [_msg("user", "again")]},
            {"chosen": [], "rejected": []}]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    config = _config(tmp_path, data, loader="json", map_fn="orpo_dpo_mix_40k_map_fn",
                     reward=True)
    code, out = _check(capsys, config)
    f = str(data)
    assert code == 1, out
    problems = [line for line in out.splitlines() if line.startswith(f + ":")]
    assert problems == [
        (f"{f}:2: error: map fn does not fit the data: orpo_dpo_mix_40k_map_fn raised "
         "DataError: orpo_dpo_mix_40k_map_fn: 'chosen' has 2 messages and 'rejected' 3; both "
         "must be the same conversation differing in the last message"),
        (f"{f}:3: error: map fn does not fit the data: after orpo_dpo_mix_40k_map_fn: 'chosen' "
         "has no message"),
    ]
    assert ("preference pairs for reward (prompt/chosen/rejected messages, "
            "dataset_map_fn=orpo_dpo_mix_40k_map_fn)") in out
    # the reward token ends each sequence; its label (0 for chosen) is the one trained
    assert out.rstrip().endswith("FAILED: 2 errors and 0 warnings in 3 records (2 dropped)")
    sample = out.split("trained tokens between [[ and ]]:\n")[1]
    assert sample.startswith("<|im_start|>user\nHex code of red?<|im_end|>\n<|im_start|>"
                             "assistant\n#ff0000<|im_end|>\n[[")


def test_dpo_demo_config_is_clean(capsys):
    code, out = _check(capsys, "demo_tiny_dpo_colorist_e6")
    assert code == 0, out[-2000:]
    assert "warning:" not in out
