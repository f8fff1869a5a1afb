"""Tiny tokenizers shared by the dataset tests (trained in-process once per session)."""
from __future__ import annotations

import pytest
from v0_oracle import load_v0

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


@pytest.fixture(scope="session")
def nobos_tokenizer(tmp_path_factory):
    """A generic byte-level tokenizer with no BOS at all (not a Qwen class)."""
    return train_tiny_tokenizer(DEFAULT_CORPUS + EXTRA_CORPUS, tmp_path_factory.mktemp("nobos"),
                                bos_token=None)


@pytest.fixture(scope="session")
def spm_tokenizer(tmp_path_factory):
    """A SentencePiece-like (Llama 1/2 style) tokenizer: ``▁`` word marker prepended to every
    text, byte fallback, ``<unk>``=0, ``<s>``=1 BOS, ``</s>``=2 EOS.

    Unlike the byte-level ones, encoding a piece on its own differs from encoding it inside a
    longer text (the prepended ``▁``), which is what makes per-piece tokenization visible.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, processors, trainers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    backend.normalizer = normalizers.Sequence(
        [normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    backend.decoder = decoders.Sequence([
        decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
        decoders.Strip(" ", 1, 0),
    ])
    trainer = trainers.BpeTrainer(
        vocab_size=700, special_tokens=["<unk>", "<s>", "</s>"],
        initial_alphabet=[f"<0x{i:02X}>" for i in range(256)])
    backend.train_from_iterator(list(DEFAULT_CORPUS + EXTRA_CORPUS) * 2, trainer)
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", 1)])
    save_dir = tmp_path_factory.mktemp("spm")
    PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>",
                            unk_token="<unk>").save_pretrained(save_dir)
    return AutoTokenizer.from_pretrained(save_dir)


@pytest.fixture(scope="session")
def v0():
    """XTuner 0.2.0's own data-pipeline modules (see tests/v0_oracle.py); skips without them."""
    return load_v0()
