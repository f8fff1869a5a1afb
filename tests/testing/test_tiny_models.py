"""Tests for the tiny tokenizer/model factories and the shipped offline demo assets."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

from xtuner.demo import COLORIST_DATA_PATH, DEMO_DIR, TINY_LLM_PATH
from xtuner.demo.build_demo_assets import DEMO_VOCAB_SIZE, build_colorist_records
from xtuner.testing import (
    CHATML_TEMPLATE,
    DEFAULT_CORPUS,
    build_tiny_llm,
    tiny_llm_and_tokenizer,
    train_tiny_tokenizer,
)

ROUND_TRIP_TEXTS = [
    "Hello, world!",
    "  two leading spaces, trailing space ",
    "tabs\tand\nnew lines\n\n",
    "Give me the hex code for light sky blue, a pale, soft blue. #87cefa",
    "你好，世界！这是一个测试。",
    "mixed 中文 and English 123 4567",
    "unseen words: zyzzyva qoph Xylophone!?",
    "emoji 🙂 and accents café",
]
SPECIALS = ["<s>", "<|endoftext|>", "<|pad|>", "<|im_start|>", "<|im_end|>"]


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A default (Llama-style, with BOS) tokenizer saved as PreTrainedTokenizerFast."""
    path = tmp_path_factory.mktemp("tok")
    train_tiny_tokenizer(DEFAULT_CORPUS, path)
    return path


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Model dirs for each architecture, built once per module."""
    root = tmp_path_factory.mktemp("models")
    return {
        arch: tiny_llm_and_tokenizer(root, arch=arch)[0] for arch in ("llama", "qwen2", "mistral")
    }


@pytest.mark.parametrize("text", ROUND_TRIP_TEXTS)
def test_tokenizer_round_trips_exactly(tok_dir: Path, text: str) -> None:
    tok = AutoTokenizer.from_pretrained(tok_dir)
    ids = tok.encode(text, add_special_tokens=False)
    assert tok.decode(ids) == text
    # No prefix space: a word at the start is not encoded as " word".
    assert not tok.convert_ids_to_tokens(ids)[0].startswith("Ġ") or text.startswith(" ")


def test_saved_tokenizer_config(tok_dir: Path) -> None:
    config = json.loads((tok_dir / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert config["padding_side"] == "right"
    tok = AutoTokenizer.from_pretrained(tok_dir)
    assert isinstance(tok, PreTrainedTokenizerFast)
    assert tok.padding_side == "right"
    assert tok.chat_template == CHATML_TEMPLATE


def test_special_tokens_are_single_ids(tok_dir: Path) -> None:
    tok = AutoTokenizer.from_pretrained(tok_dir)
    for expected_id, token in enumerate(SPECIALS):
        assert tok.encode(token, add_special_tokens=False) == [expected_id]
        assert token in tok.all_special_tokens
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<s>", "<|endoftext|>", "<|pad|>")
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (0, 1, 2)
    ids = tok.encode("<|im_start|>user\nhi<|im_end|>", add_special_tokens=False)
    assert ids[0] == 3 and ids[-1] == 4
    assert tok.decode(ids, skip_special_tokens=True) == "user\nhi"


def test_bos_is_prepended_only_when_given(tok_dir: Path, tmp_path: Path) -> None:
    tok = AutoTokenizer.from_pretrained(tok_dir)
    plain = tok.encode("hello", add_special_tokens=False)
    assert tok.encode("hello") == [tok.bos_token_id] + plain

    train_tiny_tokenizer(DEFAULT_CORPUS, tmp_path, bos_token=None)
    no_bos = AutoTokenizer.from_pretrained(tmp_path)
    assert no_bos.bos_token is None
    assert no_bos.encode("hello") == no_bos.encode("hello", add_special_tokens=False)
    assert no_bos.encode("<|endoftext|>", add_special_tokens=False) == [0]


def test_chat_template_is_chatml(tok_dir: Path) -> None:
    tok = AutoTokenizer.from_pretrained(tok_dir)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    text = tok.apply_chat_template(messages, tokenize=False)
    assert text == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
    prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert prompt == text + "<|im_start|>assistant\n"


def test_training_is_deterministic(tmp_path: Path) -> None:
    train_tiny_tokenizer(DEFAULT_CORPUS, tmp_path / "a")
    train_tiny_tokenizer(iter(DEFAULT_CORPUS), tmp_path / "b")
    assert (tmp_path / "a" / "tokenizer.json").read_bytes() == (
        tmp_path / "b" / "tokenizer.json"
    ).read_bytes()


def test_qwen2_tokenizer_class_is_real_and_encodes_identically(tmp_path: Path) -> None:
    returned = train_tiny_tokenizer(
        DEFAULT_CORPUS, tmp_path, tokenizer_class="Qwen2Tokenizer", bos_token=None
    )
    assert type(returned).__name__ == "Qwen2Tokenizer"
    auto = AutoTokenizer.from_pretrained(tmp_path)
    assert type(auto).__name__ == "Qwen2Tokenizer"
    generic = PreTrainedTokenizerFast.from_pretrained(tmp_path)
    assert type(generic).__name__ == "TokenizersBackend"
    for text in ROUND_TRIP_TEXTS:
        ids = auto.encode(text)
        assert ids == generic.encode(text)
        assert auto.decode(ids) == text
    assert auto.bos_token is None and auto.eos_token == "<|endoftext|>"
    assert auto.pad_token == "<|pad|>" and auto.padding_side == "right"


@pytest.mark.parametrize(
    ("tokenizer_class", "match"),
    [("LlamaTokenizer", "rebuilds its own pre-tokenizer"), ("NoSuchTokenizer", "has no tokenizer")],
)
def test_unusable_tokenizer_class_raises(tmp_path: Path, tokenizer_class: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        train_tiny_tokenizer(DEFAULT_CORPUS, tmp_path, tokenizer_class=tokenizer_class)


@pytest.mark.parametrize(
    ("arch", "model_cls", "tok_cls"),
    [
        ("llama", "LlamaForCausalLM", "TokenizersBackend"),
        ("qwen2", "Qwen2ForCausalLM", "Qwen2Tokenizer"),
        ("mistral", "MistralForCausalLM", "TokenizersBackend"),
    ],
)
def test_tiny_llm_loads_with_auto_classes(
    tiny_dirs: dict[str, str], arch: str, model_cls: str, tok_cls: str
) -> None:
    path = tiny_dirs[arch]
    assert (Path(path) / "model.safetensors").is_file()
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    assert type(model).__name__ == model_cls
    assert type(tok).__name__ == tok_cls
    assert model.dtype == torch.float32
    assert model.config.vocab_size == len(tok)
    assert model.config.eos_token_id == tok.eos_token_id
    assert model.config.pad_token_id == tok.pad_token_id
    assert model.config.bos_token_id == tok.bos_token_id
    assert model.generation_config.eos_token_id == [
        tok.eos_token_id,
        tok.convert_tokens_to_ids("<|im_end|>"),
    ]
    ids = tok("The capital of France is Paris.", return_tensors="pt").input_ids
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.shape == (1, ids.shape[1], len(tok))
    assert torch.isfinite(logits).all()


def test_build_is_seeded_and_keeps_global_rng(tmp_path: Path) -> None:
    tok = train_tiny_tokenizer(DEFAULT_CORPUS, tmp_path / "tok")
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    weights = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        path = build_tiny_llm(tmp_path / name, tok, seed=seed, num_hidden_layers=1)
        weights[name] = AutoModelForCausalLM.from_pretrained(path).state_dict()
    assert torch.rand(1) == expected_next
    for key, value in weights["a"].items():
        assert torch.equal(value, weights["b"][key])
    assert not torch.equal(weights["a"]["lm_head.weight"], weights["c"]["lm_head.weight"])


def test_unknown_arch_raises(tmp_path: Path, tok_dir: Path) -> None:
    tok = AutoTokenizer.from_pretrained(tok_dir)
    with pytest.raises(ValueError, match="unknown arch 'gpt2'"):
        build_tiny_llm(tmp_path, tok, arch="gpt2")


# --- shipped demo assets ------------------------------------------------------------------------


def test_demo_paths() -> None:
    assert Path(TINY_LLM_PATH) == Path(DEMO_DIR) / "tiny_llm"
    assert Path(COLORIST_DATA_PATH) == Path(DEMO_DIR) / "data" / "colorist.jsonl"
    assert all(isinstance(p, str) for p in (DEMO_DIR, TINY_LLM_PATH, COLORIST_DATA_PATH))


def test_demo_model_loads_and_runs() -> None:
    tok = AutoTokenizer.from_pretrained(TINY_LLM_PATH)
    model = AutoModelForCausalLM.from_pretrained(TINY_LLM_PATH)
    assert type(model).__name__ == "LlamaForCausalLM"
    cfg = model.config
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.intermediate_size) == (128, 4, 384)
    assert (cfg.num_attention_heads, cfg.num_key_value_heads) == (4, 2)
    assert cfg.vocab_size == len(tok) == DEMO_VOCAB_SIZE
    assert model.dtype == torch.float32
    assert tok.chat_template == CHATML_TEMPLATE
    assert (Path(TINY_LLM_PATH) / "generation_config.json").is_file()
    total_bytes = sum(f.stat().st_size for f in Path(TINY_LLM_PATH).iterdir())
    assert total_bytes < 6 * 1024 * 1024
    messages = [{"role": "user", "content": "Give me the hex code for red."}]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = tok(text, return_tensors="pt").input_ids
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.shape == (1, ids.shape[1], len(tok))


def _colorist_lines() -> list[str]:
    return Path(COLORIST_DATA_PATH).read_text(encoding="utf-8").splitlines()


def test_colorist_data_format() -> None:
    lines = _colorist_lines()
    assert 130 <= len(lines) <= 150
    inputs = []
    for number, line in enumerate(lines, 1):
        record = json.loads(line)
        assert list(record) == ["conversation"], f"line {number}: {line}"
        (turn,) = record["conversation"]
        assert set(turn) == {"input", "output"}, f"line {number}: {line}"
        assert re.fullmatch(r"#[0-9a-f]{6}", turn["output"]), f"line {number}: {line}"
        assert isinstance(turn["input"], str) and turn["input"].strip(), f"line {number}"
        inputs.append(turn["input"])
    assert len(set(inputs)) == len(inputs)
    assert any("light sky blue" in text for text in inputs)


def test_colorist_data_matches_builder() -> None:
    # The shipped file must be what build_demo_assets writes; rerun it after editing the builder.
    expected = [json.dumps(r, ensure_ascii=False) for r in build_colorist_records()]
    assert _colorist_lines() == expected


def test_colorist_samples_are_short_in_chatml() -> None:
    tok = AutoTokenizer.from_pretrained(TINY_LLM_PATH)
    lengths = []
    for line in _colorist_lines():
        turn = json.loads(line)["conversation"][0]
        messages = [
            {"role": "user", "content": turn["input"]},
            {"role": "assistant", "content": turn["output"]},
        ]
        text = tok.apply_chat_template(messages, tokenize=False)
        lengths.append(len(tok.encode(text, add_special_tokens=False)))
    assert 15 <= min(lengths) and max(lengths) <= 45
