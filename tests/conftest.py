"""Fixtures for every test."""
from __future__ import annotations

import os

import pytest

# Tests never reach the Hugging Face hub (nor do the processes they start), whatever the
# machine: e.g. bitsandbytes on some CPUs asks the hub for a kernel when imported.
os.environ["HF_HUB_OFFLINE"] = "1"


@pytest.fixture(autouse=True)
def _forget_new_mmengine_instances():
    """Drop the mmengine loggers, message hubs, visualizers and scopes a test created.

    A logger's handlers hold the test's captured stdout, which is closed afterwards: a later
    test logging through it would print a "--- Logging error ---" traceback. The others are
    named after their runner's start time, to the second: a runner of a later test started
    within the same second would reuse them (the earlier run's work dir and loss history).
    """
    from mmengine.logging import MessageHub, MMLogger
    from mmengine.registry import DefaultScope
    from mmengine.visualization import Visualizer

    kinds = (MMLogger, MessageHub, Visualizer, DefaultScope)
    before = {kind: set(kind._instance_dict) for kind in kinds}
    yield
    for kind in kinds:
        for name in set(kind._instance_dict) - before[kind]:
            instance = kind._instance_dict.pop(name)
            if kind is MMLogger:
                for handler in list(instance.handlers):
                    instance.removeHandler(handler)


@pytest.fixture(autouse=True)
def _private_dataset_cache(tmp_path_factory, monkeypatch):
    """Every test gets an empty processed-dataset cache: never the user's ~/.cache (CI runs
    on a machine that may hold one), and no test sees another's entries."""
    monkeypatch.setenv("XTUNER_CACHE_DIR", str(tmp_path_factory.mktemp("xtuner_cache")))
