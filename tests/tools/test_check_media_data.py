"""``xtuner check-custom-dataset`` on a ``MediaJsonlDataset`` config (time-series chat
records): every bad record is one ``file:line: error: <kind>: <detail>`` line, in the words
``MediaJsonlDataset`` stops training with at the first of them.

Signals are written here with numpy and the stdlib ``wave``; the config is the demo config
with its data paths replaced.
"""
from __future__ import annotations

import json
import re
import wave
from pathlib import Path

import numpy as np
import pytest

from xtuner.entry_point import main
from xtuner.utils.errors import DataError

DEMO = Path(__file__).resolve().parents[2] / "configs" / "demo" / "demo_tiny_ts_signals_e16.py"


def _record(text: str, *urls: str, answer: str = "A sine wave.") -> dict:
    parts = [{"type": "time_series_url", "time_series_url": {"url": u, "sampling_rate": 100}}
             for u in urls]
    return {"messages": [{"role": "user", "content": parts + [{"type": "text", "text": text}]},
                         {"role": "assistant", "content": answer}]}


def _write_signals(root: Path) -> None:
    t = np.arange(200) / 100.0
    samples = (np.sin(2 * np.pi * 3 * t) * 20000).astype(np.int16)
    with wave.open(str(root / "a.wav"), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(100)
        f.writeframes(samples.tobytes())
    np.save(root / "b.npy", np.cos(2 * np.pi * 2 * t).astype(np.float32))
    np.save(root / "short.npy", np.zeros(5, np.float32))  # under one encoder feature
    (root / "c.txt").write_text("1\n2\n3\n")


def _config(tmp_path: Path, lines: list[str], max_length: int = 256) -> str:
    root = tmp_path / "media"
    root.mkdir()
    _write_signals(root)
    data = tmp_path / "data.jsonl"
    data.write_text("".join(line + "\n" for line in lines))
    text = DEMO.read_text()
    for old, new in (("data_path = TS_SIGNALS_DATA_PATH", f"data_path = {str(data)!r}"),
                     ("media_root = TS_SIGNALS_DIR", f"media_root = {str(root)!r}"),
                     ("max_length = 256", f"max_length = {max_length}")):
        assert old in text
        text = text.replace(old, new)
    cfg = tmp_path / "cfg.py"
    cfg.write_text(text)
    return str(cfg)


def _errors(out: str) -> list[tuple[int, str, str]]:
    return [(int(m[1]), m[2], m[3])
            for m in re.finditer(r"^\S*data\.jsonl:(\d+): error: ([^:]+): (.*)$", out, re.M)]


def test_every_bad_media_record_is_reported_as_training_reports_it(tmp_path, capsys):
    lines = [json.dumps(_record("What is this?<TS_CONTEXT>", "a.wav")),
             json.dumps(_record("<TS_CONTEXT>", "missing.wav")),
             json.dumps(_record("<TS_CONTEXT>", "c.txt")),
             json.dumps(_record("Compare <TS_CONTEXT> and <TS_CONTEXT>", "b.npy")),
             json.dumps(_record("And this?<TS_CONTEXT>", "b.npy"))]
    cfg = _config(tmp_path, lines)
    assert main(["check-custom-dataset", cfg]) == 1
    out = capsys.readouterr().out
    errors = _errors(out)
    assert [(line, kind) for line, kind, _ in errors] == [
        (2, "missing media"), (3, "unsupported media"), (4, "placeholder count")]
    assert "missing.wav: no such file" in errors[0][2]
    assert "1 time_series_url part(s) but 2 <TS_CONTEXT> placeholder(s)" in errors[2][2]
    assert re.search(r"kept\s+2\b", out) and re.search(r"dropped\s+3\b", out)
    assert "FAILED: 3 errors" in out

    # Training stops at the first bad record with the same line.
    from xtuner.dataset.media import MediaJsonlDataset
    from xtuner.dataset.specs import dataset_specs
    from xtuner.engine.config import load_config

    spec = dataset_specs(load_config(cfg))[0][0]
    with pytest.raises(DataError) as exc:
        MediaJsonlDataset(str(tmp_path / "data.jsonl"), spec.media)
    assert str(exc.value) == f"{tmp_path / 'data.jsonl'}:2: {errors[0][2]}"


def test_other_media_problems_each_get_their_line(tmp_path, capsys):
    long_answer = " ".join(["a long answer"] * 40)
    lines = [json.dumps(_record("<TS_CONTEXT>", "a.wav")),
             "{not json",
             json.dumps(_record("<TS_CONTEXT>", "short.npy")),
             json.dumps(_record("<|ts|><TS_CONTEXT>", "a.wav")),
             json.dumps(_record(" ".join(["words"] * 60) + "<TS_CONTEXT>", "b.npy")),
             json.dumps(_record("<TS_CONTEXT>", "a.wav", answer=long_answer))]
    assert main(["check-custom-dataset", _config(tmp_path, lines, max_length=48)]) == 1
    out = capsys.readouterr().out
    assert [(line, kind) for line, kind, _ in _errors(out)] == [
        (2, "invalid JSON"), (3, "unreadable media"), (4, "special tokens in text"),
        (5, "too long")]
    assert re.search(r"data\.jsonl:6: warning: truncated: ", out)


def test_demo_config_checks_clean(capsys):
    assert main(["check-custom-dataset", str(DEMO)]) == 0
    out = capsys.readouterr().out
    assert "error:" not in out and "OK: " in out
