"""Fixtures shared by the tool tests."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.tools.demo_runs import train_demo


@pytest.fixture(scope="session")
def trained_llava_demo(tmp_path_factory) -> Path:
    """The checkpoint of ``xtuner train demo_tiny_llava_shapes_e12`` shortened to 6 of its 12
    epochs, trained once for every test that needs it (about 45 s on 2 cores)."""
    cwd = tmp_path_factory.mktemp("llava_demo")
    train_demo(cwd, "demo_tiny_llava_shapes_e12", "train_cfg.max_epochs=6",
               "default_hooks.checkpoint.interval=10000")
    (checkpoint,) = sorted((cwd / "wd").glob("iter_*.pth"))
    return checkpoint
