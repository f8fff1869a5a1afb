"""Tiny Llama / Qwen2 checkpoints on disk, built once per session."""
from __future__ import annotations

import pytest
import torch

from xtuner.testing import tiny_llm_and_tokenizer


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from intra-op threads, and on a busy 2-core runner OpenMP's
    spinning threads make these tests 5-30x slower; run them on one thread. Per module, so
    the tests after this folder run as they do alone."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_models")
    return {arch: tiny_llm_and_tokenizer(root, arch=arch)[0] for arch in ("llama", "qwen2")}


@pytest.fixture(scope="session")
def llama_dir(tiny_dirs):
    return tiny_dirs["llama"]
