"""Helpers of xtuner's crash-safe ``CheckpointHook``: atomic writes and plain log history."""
from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer

from xtuner.engine.hooks.checkpoint_hook import (
    atomic_write_text,
    history_from_plain,
    history_to_plain,
)


def test_atomic_write_text_creates_and_replaces(tmp_path):
    path = tmp_path / "last_checkpoint"
    atomic_write_text(str(path), "/work/iter_10.pth")
    assert path.read_text(encoding="utf-8") == "/work/iter_10.pth"
    atomic_write_text(str(path), "/work/iter_20.pth")
    assert path.read_text(encoding="utf-8") == "/work/iter_20.pth"
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint"]  # no .tmp left behind


def test_atomic_write_text_keeps_old_content_until_the_rename(tmp_path, monkeypatch):
    path = tmp_path / "last_checkpoint"
    path.write_text("old", encoding="utf-8")

    def fail_replace(src, dst):
        # The new text is complete in the temporary file when the rename happens.
        assert open(src, encoding="utf-8").read() == "new"
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", fail_replace)
    with pytest.raises(OSError, match="disk gone"):
        atomic_write_text(str(path), "new")
    assert path.read_text(encoding="utf-8") == "old"


def test_atomic_write_text_is_utf8(tmp_path):
    path = tmp_path / "note"
    atomic_write_text(str(path), "模型/iter_1.pth")
    assert path.read_bytes() == "模型/iter_1.pth".encode()


def _buffer() -> HistoryBuffer:
    buffer = HistoryBuffer(max_length=3)
    for value, count in [(1.0, 1), (2.0, 2), (4.0, 1), (8.0, 1)]:
        buffer.update(value, count)
    return buffer


def test_history_to_plain_exact():
    plain = history_to_plain({"train/loss": _buffer(), "other": 5})
    assert plain == {
        "train/loss": {"log_history": [2.0, 4.0, 8.0], "count_history": [2.0, 1.0, 1.0],
                       "max_length": 3},
        "other": 5,
    }
    assert all(type(x) is float for x in plain["train/loss"]["log_history"])
    assert type(plain["train/loss"]["max_length"]) is int


def test_history_round_trip_through_a_weights_only_load(tmp_path):
    original = {"train/loss": _buffer(), "train/lr": HistoryBuffer([0.1, 0.2], [1, 1])}
    path = tmp_path / "hub.pth"
    torch.save({"log_scalars": history_to_plain(original)}, path)
    # The plain form is what makes this load possible: a HistoryBuffer pickle is refused.
    loaded = torch.load(path, weights_only=True)
    restored = history_from_plain(loaded["log_scalars"])
    assert set(restored) == {"train/loss", "train/lr"}
    for name, buffer in original.items():
        again = restored[name]
        assert isinstance(again, HistoryBuffer)
        assert again.max_length == buffer.max_length
        np.testing.assert_array_equal(again.data[0], buffer.data[0])
        np.testing.assert_array_equal(again.data[1], buffer.data[1])
        assert again.mean() == buffer.mean()
        assert again.current() == buffer.current()
    assert restored["train/loss"].mean() == 3.5  # (2 + 4 + 8) / (2 + 1 + 1)
    # It keeps working as a buffer: the window still holds max_length entries.
    restored["train/loss"].update(16.0)
    np.testing.assert_array_equal(restored["train/loss"].data[0], [4.0, 8.0, 16.0])


def test_history_buffer_itself_is_refused_by_weights_only_load(tmp_path):
    # Why the plain form exists; if torch ever allows it, the conversion may be dropped.
    path = tmp_path / "raw.pth"
    torch.save({"log_scalars": {"train/loss": _buffer()}}, path)
    with pytest.raises(pickle.UnpicklingError, match="(?i)weights.only"):
        torch.load(path, weights_only=True)


def test_history_from_plain_passes_other_values_through():
    assert history_from_plain({"a": 1, "b": "x"}) == {"a": 1, "b": "x"}
    assert history_to_plain({}) == {}


def test_deepspeed_checkpoints_wait_for_the_end_of_the_accumulation_window():
    """Under DeepSpeed (gradients in its own buffers) a save due inside an accumulation
    window of 4 is taken at the window's end; the plain runner saves on time."""
    from types import SimpleNamespace

    from xtuner.engine.hooks.checkpoint_hook import CheckpointHook

    saved = []

    class Hook(CheckpointHook):
        def _save_checkpoint(self, runner):
            saved.append(runner.iter + 1)

    def run(strategy):
        hook = Hook(interval=6, by_epoch=False)
        runner = SimpleNamespace(iter=0, max_iters=14, strategy=strategy,
                                 logger=SimpleNamespace(info=lambda msg: None))
        saved.clear()
        for i in range(runner.max_iters):
            runner.iter = i
            hook.after_train_iter(runner, i)
        return list(saved)

    deepspeed = SimpleNamespace(config={"gradient_accumulation_steps": 4})
    assert run(deepspeed) == [8, 12, 14]  # due at 6 and 12 (and the last, 14)
    assert run(None) == [6, 12, 14]
