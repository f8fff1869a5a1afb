"""Fixtures for every test."""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _forget_new_loggers():
    """Drop the mmengine loggers a test created: their handlers hold the test's captured
    stdout, which is closed afterwards, and a later test logging through them would print a
    "--- Logging error ---" traceback."""
    from mmengine.logging import MMLogger

    before = set(MMLogger._instance_dict)
    yield
    for name in set(MMLogger._instance_dict) - before:
        logger = MMLogger._instance_dict.pop(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)


@pytest.fixture(autouse=True)
def _private_dataset_cache(tmp_path_factory, monkeypatch):
    """Every test gets an empty processed-dataset cache: never the user's ~/.cache (CI runs
    on a machine that may hold one), and no test sees another's entries."""
    monkeypatch.setenv("XTUNER_CACHE_DIR", str(tmp_path_factory.mktemp("xtuner_cache")))
