"""Tiny Llama / Qwen2 checkpoints on disk, built once per session."""
from __future__ import annotations

import pytest

from xtuner.testing import tiny_llm_and_tokenizer


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_models")
    return {arch: tiny_llm_and_tokenizer(root, arch=arch)[0] for arch in ("llama", "qwen2")}


@pytest.fixture(scope="session")
def llama_dir(tiny_dirs):
    return tiny_dirs["llama"]
