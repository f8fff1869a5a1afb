"""``xtuner check-custom-dataset``, ``log-dataset`` and ``list-dataset-format``.

The data files are written here, broken on purpose; configs point at them and at the shipped
tiny demo tokenizer (Llama style: ``<s>`` BOS, ``<|im_end|>``-terminated ChatML turns).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import xtuner.dataset.checker as checker
from xtuner.dataset.formats import DATA_FORMATS
from xtuner.dataset.map_fns.dataset_map_fns import DATASET_FORMAT_MAPPING
from xtuner.dataset.specs import declared_format
from xtuner.dataset.validation import ERROR, WRONG_TYPE, validate_record
from xtuner.demo import COLORIST_DATA_PATH, TINY_LLM_PATH
from xtuner.entry_point import main

DEMO = "demo_tiny_full_colorist_e40"

CONFIG = """\
from datasets import load_dataset
from transformers import AutoTokenizer

from xtuner.dataset import ConcatDataset, process_hf_dataset
from xtuner.dataset.map_fns import alpaca_map_fn, openai_map_fn, template_map_fn_factory
from xtuner.demo import TINY_LLM_PATH
from xtuner.utils import PROMPT_TEMPLATE

max_length = {max_length}
tokenizer = dict(type=AutoTokenizer.from_pretrained, pretrained_model_name_or_path=TINY_LLM_PATH)


def member(dataset, map_fn):
    return dict(
        type=process_hf_dataset,
        dataset=dataset,
        tokenizer=tokenizer,
        max_length=max_length,
        dataset_map_fn=map_fn,
        template_map_fn=dict(type=template_map_fn_factory, template=PROMPT_TEMPLATE.qwen_chat),
        remove_unused_columns=True,
        pack_to_max_length={pack})


train_dataloader = dict(batch_size=1, dataset={dataset})
"""

CONV_LINES = [
    '{"conversation": [{"input": "What is red?", "output": "A colour."}]}',
    '{"conversation": [{"input": "a", "output": "b"}',
    '{"conversations": [{"input": "hi", "output": "there"}]}',
    '{"conversation": [{"input": "x", "ouput": "y"}]}',
    '{"conversation": [{"input": "x", "output": 42}]}',
    '{"conversation": []}',
    "",
    ('{"conversation": [{"input": "Tell me a long story.", "output": "once upon a time there '
    'was a tiny model that wanted to learn colours and hex codes and it tried very hard every '
    'single day until it knew them all by heart and then it told everyone"}]}'),
    '{"conversation": [{"system": "你是助手", "input": "你好 😀", "output": "¡Hola! 👋"}]}',
    '{"conversation": [{"input": "x", "output": "y", "output_with_loss": false}]}',
    '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}',
]

MESSAGES_JSON = """\
[
  {"messages": [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello"}]},
  {"messages": [{"role": "assistant", "content": "I speak first"},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello"}]},
  {"messages": [{"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello"},
                {"role": "assistant", "content": "Again"}]},
  {"messages": [{"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello", "loss": "false"}]},
  {"messages": [{"role": "user", "content": "Hi"}]},
  {"messages": [{"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello", "loss": false}]},
  {"messages": [{"role": "user", "content": "Hi"},
                {"role": "tool", "content": "42"}]},
  {"messages": [{"role": "user", "content": "Hi"},
                {"role": "user", "content": "there"},
                {"role": "assistant", "content": "Hello"},
                {"rol": "user", "contnet": "Bye"}]},
  {"messages": []},
  {"messages": [{"role": "user", "content": "Hi"},
                {"role": "user", "content": "there"},
                {"role": "assistant", "content": "Hello"}]}
]
"""

ALPACA = [
    {"instruction": "Name a colour.", "input": "", "output": "Red."},
    {"instruction": "Translate to French", "input": "hello world", "output": "Bonjour le monde."},
    {"instruction": "Say hi in Chinese.", "input": "", "output": "你好！"},
    {"instruction": "Give three tips for staying healthy.", "input": "",
     "output": "Eat well, sleep, exercise."},
    {"instruction": "Write a poem.", "input": "about roses", "output": "Roses are red."},
]


def _json_data(path: Path) -> str:
    return f"dict(type=load_dataset, path='json', data_files=dict(train={str(path)!r}))"


def _config(tmp_path: Path, data: str, map_fn: str = "None", max_length: int = 48,
            pack: bool = True, name: str = "cfg.py") -> str:
    dataset = f"member({data}, {map_fn})"
    path = tmp_path / name
    path.write_text(CONFIG.format(max_length=max_length, pack=pack, dataset=dataset))
    return str(path)


def _check(capsys, *args) -> tuple[int, str, str]:
    code = main(["check-custom-dataset", *args, "--no-progress"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def conv_file(tmp_path) -> Path:
    path = tmp_path / "conv.jsonl"
    path.write_text("\n".join(CONV_LINES) + "\n", encoding="utf-8")
    return path


# --------------------------------------------------------------------------- check-custom-dataset


def test_conversation_problems_name_file_and_line(tmp_path, conv_file, capsys):
    code, out, _ = _check(capsys, _config(tmp_path, _json_data(conv_file)))
    f = str(conv_file)
    assert code == 1
    problems = [line for line in out.splitlines() if line.startswith(f + ":")]
    assert problems == [
        f"{f}:2: error: invalid JSON: Expecting ',' delimiter at column 48",
        (f"{f}:3: error: missing key: 'conversation' (found 'conversations': rename it to "
        "'conversation')"),
        (f"{f}:4: error: missing key: conversation[0]: 'output' (found 'ouput': rename it to "
        "'output')"),
        f"{f}:5: error: wrong type: conversation[0].output must be a string, got a number (42)",
        f"{f}:6: error: empty conversation: 'conversation' is an empty list",
        f"{f}:8: warning: truncated: 114 tokens; max_length=48 cuts the last 66 (65 trained)",
        (f"{f}:10: warning: no trainable token: every output is empty or has loss=false; the "
        "sample is dropped"),
        (f"{f}:11: error: map fn does not fit the data: the record has no 'conversation' but is "
        "a valid 'openai' record: set dataset_map_fn=openai_map_fn"),
    ]
    assert "  records read     10\n" in out  # the blank line 7 is no record
    assert "  kept             3\n" in out
    assert ("  dropped          7 (missing key 2, invalid JSON 1, wrong type 1, empty "
            "conversation 1, no trainable token 1, map fn does not fit the data 1)\n") in out
    assert "  token lengths    min 20, median 44, p95 114, max 114\n" in out
    assert "  truncated        1 (max_length 48)\n" in out
    assert "  packed rows      3 (packing efficiency 77.8%)\n" in out
    assert out.rstrip().endswith("FAILED: 6 errors and 2 warnings in 10 records (7 dropped)")
    # The unicode record (line 9) is kept: it is among the 3 token lengths (20, 44, 114).
    sample = out.split("trained tokens between [[ and ]]:\n")[1]
    assert sample.startswith("<s><|im_start|>user\nWhat is red?<|im_end|>\n<|im_start|>"
                             "assistant\n[[A colour.<|im_end|>]]\n")


def test_openai_roles_and_json_list_lines(tmp_path, capsys):
    data = tmp_path / "msgs.json"
    data.write_text(MESSAGES_JSON)
    code, out, _ = _check(capsys, _config(tmp_path, _json_data(data), map_fn="openai_map_fn"))
    f = str(data)
    assert code == 1
    problems = [line for line in out.splitlines() if line.startswith(f + ":")]
    assert problems == [
        (f"{f}:5 (record 1): error: roles out of order: messages[0] is 'assistant' before any "
        "'user' message (it would be skipped)"),
        (f"{f}:8 (record 2): error: roles out of order: messages[2] is 'assistant' right after "
        "'assistant' messages[1] with no 'user' message between"),
        (f"{f}:11 (record 3): error: wrong type: messages[1].loss must be true or false, got a "
        'string ("false")'),
        (f"{f}:13 (record 4): error: empty conversation: no 'assistant' message in 'messages': "
        "nothing to train on"),
        (f"{f}:14 (record 5): warning: no trainable token: every output is empty or has "
        "loss=false; the sample is dropped"),
        (f"{f}:16 (record 6): error: unknown role: messages[1].role is 'tool'; expected "
        "'system', 'user', 'assistant'"),
        (f"{f}:18 (record 7): error: missing key: messages[3]: 'role' (found 'rol': rename it to "
        "'role')"),
        (f"{f}:18 (record 7): error: missing key: messages[3]: 'content' (found 'contnet': "
        "rename it to 'content')"),
        f"{f}:22 (record 8): error: empty conversation: 'messages' is an empty list",
        (f"{f}:23 (record 9): warning: roles out of order: messages[1] is 'user' right after "
        "'user' messages[0]: the two are joined with no separator"),
    ]
    assert "  records read     10\n" in out
    assert "  kept             2\n" in out
    assert out.rstrip().endswith("FAILED: 8 errors and 2 warnings in 10 records (8 dropped)")
    assert f"Sample from {f}:2 (record 0), trained tokens between [[ and ]]:" in out


def test_clean_parquet_alpaca_exits_0_and_matches_the_pipeline(tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = tmp_path / "alpaca.parquet"
    pq.write_table(pa.Table.from_pylist(ALPACA), data)
    data_cfg = f"dict(type=load_dataset, path='parquet', data_files=dict(train={str(data)!r}))"
    cfg_path = _config(tmp_path, data_cfg, map_fn="alpaca_map_fn", max_length=128)
    code, out, _ = _check(capsys, cfg_path)
    assert code == 0, out
    assert out.rstrip().endswith("OK: 5 of 5 records usable, 0 warnings")
    assert "'alpaca' format (dataset_map_fn=alpaca_map_fn), template qwen_chat" in out

    # The numbers are those of the real pipeline on the same data.
    from mmengine.config import Config

    from xtuner.registry import BUILDER

    ds_cfg = Config.fromfile(cfg_path).train_dataloader.dataset
    ds_cfg.pack_to_max_length = False
    lengths = sorted(BUILDER.build(ds_cfg)["length"])
    assert (f"  token lengths    min {lengths[0]}, median {lengths[2]}, p95 {lengths[-1]}, "
            f"max {lengths[-1]}\n") in out
    ds_cfg.pack_to_max_length = True
    rows = len(BUILDER.build(ds_cfg))
    assert f"  packed rows      {rows} (packing efficiency " in out


def test_demo_config_is_clean(capsys):
    code, out, _ = _check(capsys, DEMO)
    assert code == 0
    n = sum(1 for line in Path(COLORIST_DATA_PATH).read_text().splitlines() if line.strip())
    assert f"  records read     {n}\n  kept             {n}\n  dropped          0\n" in out
    assert "\nSample from " in out and "[[#f0f8ff<|im_end|>]]" in out


def test_no_usable_sample_fails_as_training_does(tmp_path, capsys):
    data = tmp_path / "d.jsonl"
    data.write_text(CONV_LINES[0] + "\n")
    code, out, _ = _check(capsys, _config(tmp_path, _json_data(data), max_length=4))
    assert code == 1
    assert f"{data}:1: warning: no trainable token: the sample has " in out
    assert out.rstrip().endswith("FAILED: no usable sample in train_dataloader.dataset: every "
                                 "record is dropped (1 warning in 1 records)")


def test_template_tokens_the_tokenizer_lacks_are_a_warning(tmp_path, capsys):
    data = tmp_path / "d.jsonl"
    data.write_text(CONV_LINES[0] + "\n")
    cfg = Path(_config(tmp_path, _json_data(data), max_length=512))
    cfg.write_text(cfg.read_text().replace("qwen_chat", "llama3_chat"))
    code, out, _ = _check(capsys, str(cfg))
    assert code == 0
    assert ("train_dataloader.dataset: warning: template tokens missing: template "
            "'llama3_chat' uses 3 special tokens the tokenizer does not have "
            "(<|start_header_id|>, <|end_header_id|>, <|eot_id|>)") in out
    assert "tokens per sample (measured over 1 sample)" in out
    assert out.rstrip().endswith("OK: 1 of 1 records usable, 1 warning")


def test_problems_are_limited_per_kind(tmp_path, capsys):
    data = tmp_path / "bad.jsonl"
    data.write_text("{oops\n" * 25 + CONV_LINES[0] + "\n")
    code, out, _ = _check(capsys, _config(tmp_path, _json_data(data)), "-n", "5")
    assert code == 1
    shown = [line for line in out.splitlines() if ": error: invalid JSON:" in line]
    assert [line.split(": error")[0] for line in shown] == [f"{data}:{i}" for i in range(1, 6)]
    assert "... and 20 more 'invalid JSON' problems" in out
    assert "FAILED: 25 errors and 0 warnings in 26 records (25 dropped)" in out


def test_worker_processes_give_the_same_report(tmp_path, conv_file, capsys, monkeypatch):
    cfg_path = _config(tmp_path, _json_data(conv_file))
    _, serial, _ = _check(capsys, cfg_path, "--num-proc", "1")
    monkeypatch.setattr(checker, "_POOL_MIN_BYTES", 0)
    monkeypatch.setattr(checker, "_CHUNK", 3)  # several chunks in flight
    _, parallel, _ = _check(capsys, cfg_path, "--num-proc", "2")
    assert parallel == serial


def test_concat_dataset_checks_every_member(tmp_path, conv_file, capsys):
    good = tmp_path / "good.jsonl"
    good.write_text(CONV_LINES[0] + "\n")
    msgs = tmp_path / "msgs.json"
    msgs.write_text(MESSAGES_JSON)
    cfg = tmp_path / "concat.py"
    cfg.write_text(CONFIG.format(
        max_length=48, pack=True,
        dataset=f"dict(type=ConcatDataset, datasets=[member({_json_data(good)}, None), "
                f"member({_json_data(msgs)}, openai_map_fn)])"))
    code, out, _ = _check(capsys, str(cfg))
    assert code == 1
    assert f"== train_dataloader.dataset.datasets[0]: {good}\n" in out
    assert f"== train_dataloader.dataset.datasets[1]: {msgs}\n" in out
    assert "FAILED: 8 errors and 2 warnings in 11 records (8 dropped)" in out


def test_hub_dataset_is_refused_with_one_line(tmp_path, capsys):
    cfg = _config(tmp_path, "dict(type=load_dataset, path='tatsu-lab/alpaca')",
                  map_fn="alpaca_map_fn")
    code, out, err = _check(capsys, cfg)
    assert code == 2
    assert err.count("\n") == 1
    assert ("'tatsu-lab/alpaca' is not a local file or folder; check-custom-dataset checks "
            "local data only") in err


def test_missing_data_file_names_the_override(tmp_path, capsys):
    code, _, err = _check(capsys, _config(tmp_path, _json_data(tmp_path / "nope.jsonl")))
    assert code == 2
    assert "does not exist (train_dataloader.dataset.dataset.data_files)" in err
    assert "--cfg-options train_dataloader.dataset.dataset.data_files.train=PATH" in err


def test_cfg_options_point_a_catalog_config_at_local_data(tmp_path, conv_file, capsys):
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps(json.loads(CONV_LINES[-1])) + "\n")
    code, out, _ = _check(
        capsys, "qwen2_5_0_5b_instruct_lora_custom_sft_e1", "--cfg-options",
        f"train_dataloader.dataset.dataset.data_files.train={good}",
        f"train_dataloader.dataset.tokenizer.pretrained_model_name_or_path={TINY_LLM_PATH}")
    assert code == 0, out
    assert "OK: 1 of 1 records usable" in out


def test_a_users_map_fn_declares_no_required_field():
    def qa_map_fn(example):
        context = example["context"] if "context" in example else ""
        return {"conversation": [{"input": context + example["question"],
                                  "output": example["answer"]}]}

    # Which keys a function needs cannot be read off its source (`context` is optional
    # here): only what is certain is checked, the map fn raising included (test_one_verdict).
    fmt = declared_format(qa_map_fn)
    assert fmt.fields == {} and fmt.layout is None
    assert validate_record({"question": "q", "answer": "a"}, fmt) == []
    [problem] = validate_record(["not", "an object"], fmt)
    assert (problem.severity, problem.kind) == (ERROR, WRONG_TYPE)


# --------------------------------------------------------------------------- list-dataset-format


def test_list_dataset_format_lists_every_format_with_a_valid_example(capsys):
    assert main(["list-dataset-format"]) == 0
    out = capsys.readouterr().out
    names = [line.split("  (")[0] for line in out.splitlines()
             if line and not line.startswith(" ") and "  (dataset_map_fn=" in line]
    assert names == ["conversation", *DATASET_FORMAT_MAPPING]
    assert "conversation  (dataset_map_fn=None)" in out
    assert "openai  (dataset_map_fn=openai_map_fn)" in out
    for name, fmt in DATA_FORMATS.items():
        assert f"    example: {json.dumps(fmt.example, ensure_ascii=False)}" in out
        assert validate_record(fmt.example, fmt) == [], name
        if name != "conversation":  # every example maps to a non-empty conversation
            assert DATASET_FORMAT_MAPPING[name](fmt.example)["conversation"], name


# --------------------------------------------------------------------------- log-dataset

UNPACKED = ["--cfg-options", "train_dataloader.dataset.pack_to_max_length=False",
            "train_dataloader.dataset.use_varlen_attn=False"]


def test_log_dataset_prints_the_first_sample_exactly(capsys):
    from transformers import AutoTokenizer

    assert main(["log-dataset", DEMO, "--show", "all", *UNPACKED]) == 0
    out = capsys.readouterr().out
    first = json.loads(Path(COLORIST_DATA_PATH).read_text().splitlines()[0])["conversation"][0]
    prompt = f"<|im_start|>user\n{first['input']}<|im_end|>\n<|im_start|>assistant\n"
    answer = f"{first['output']}<|im_end|>"
    tok = AutoTokenizer.from_pretrained(TINY_LLM_PATH)
    head = [tok.bos_token_id] + tok.encode(prompt, add_special_tokens=False)
    tail = tok.encode(first["output"] + "<|im_end|>", add_special_tokens=False)
    sep = tok.encode("\n", add_special_tokens=False)
    # qwen_chat's SUFFIX <|im_end|> acts as EOS, so no extra EOS; SEP "\n" is untrained.
    ids = head + tail + sep
    labels = [-100] * len(head) + tail + [-100] * len(sep)
    bar = "#" * 20
    assert out == "\n".join([
        f"{bar}   text   {bar}", f"<s>{prompt}{answer}\n",
        f"{bar}   text(masked)   {bar}", f"[-100 x{len(head)}][[{answer}]][-100 x{len(sep)}]",
        f"{bar}   input_ids   {bar}", str(ids),
        f"{bar}   labels   {bar}", str(labels), ""])


def test_log_dataset_default_shows_text_of_n_samples(capsys):
    assert main(["log-dataset", DEMO, "-n", "2", *UNPACKED]) == 0
    out = capsys.readouterr().out
    lines = Path(COLORIST_DATA_PATH).read_text().splitlines()
    second = json.loads(lines[1])["conversation"][0]
    assert out.count("####################   text 0   ####################\n") == 1
    assert (f"####################   text 1   ####################\n<s><|im_start|>user\n"
            f"{second['input']}<|im_end|>\n") in out
    assert "input_ids" not in out and "masked" not in out


def test_log_dataset_on_broken_data_points_at_the_checker(tmp_path, conv_file, capsys):
    cfg = _config(tmp_path, _json_data(conv_file))
    assert main(["log-dataset", cfg]) == 2
    # process_hf_dataset checks the raw records first and names the broken ones.
    err = capsys.readouterr().err
    assert "xtuner log-dataset: error: " in err and "bad record" in err
    assert ": error: invalid JSON" in err and "Traceback" not in err
    assert "xtuner check-custom-dataset CONFIG" in err


def test_rendering_marks_exactly_the_trained_span():
    from transformers import AutoTokenizer

    from xtuner.dataset.render import render_trained_spans

    tok = AutoTokenizer.from_pretrained(TINY_LLM_PATH)
    prompt = tok.encode("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    answer = tok.encode("Hello<|im_end|>", add_special_tokens=False)
    ids = prompt + answer
    labels = [-100] * len(prompt) + answer
    assert render_trained_spans(tok, ids, labels) == (
        tok.decode(prompt) + "[[" + tok.decode(answer) + "]]")
