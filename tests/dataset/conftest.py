"""Tiny tokenizers shared by the dataset tests (trained in-process once per session)."""
from __future__ import annotations

import pytest

from xtuner.testing import DEFAULT_CORPUS, train_tiny_tokenizer

# Extra text so template markers and sample sentences tokenize into realistic pieces.
EXTRA_CORPUS = (
    "<|User|>:Give three tips for staying healthy.\n<|Bot|>:Eat well, sleep, exercise.",
    "### Instruction:\nWrite a poem.\n### Response:\nRoses are red.",
    "[INST] Translate to French [/INST] Bonjour le monde.",
)


@pytest.fixture(scope="session")
def bos_tokenizer(tmp_path_factory):
    """The default factory tokenizer: ``<s>``=0 BOS, ``<|endoftext|>``=1 EOS (Llama style)."""
    return train_tiny_tokenizer(DEFAULT_CORPUS + EXTRA_CORPUS, tmp_path_factory.mktemp("bos"))


@pytest.fixture(autouse=True)
def _private_dataset_cache(tmp_path_factory, monkeypatch):
    """Each test gets an empty processed-dataset cache, not the user's ~/.cache."""
    monkeypatch.setenv("XTUNER_CACHE_DIR", str(tmp_path_factory.mktemp("xtuner_cache")))
    monkeypatch.delenv("XTUNER_DATASET_CACHE", raising=False)
    monkeypatch.delenv("XTUNER_SKIP_BAD_RECORDS", raising=False)


@pytest.fixture(scope="session")
def qwen2_tokenizer(tmp_path_factory):
    """A real ``Qwen2Tokenizer`` without BOS: ``<|endoftext|>``=0 EOS."""
    return train_tiny_tokenizer(DEFAULT_CORPUS + EXTRA_CORPUS, tmp_path_factory.mktemp("qwen2"),
                                tokenizer_class="Qwen2Tokenizer", bos_token=None)


@pytest.fixture(scope="session")
def qwen2_tokenizer_with_bos(tmp_path_factory):
    """A ``Qwen2Tokenizer`` that *has* a BOS token: only the class-name rule drops it."""
    return train_tiny_tokenizer(DEFAULT_CORPUS + EXTRA_CORPUS,
                                tmp_path_factory.mktemp("qwen2bos"),
                                tokenizer_class="Qwen2Tokenizer", bos_token="<s>")
