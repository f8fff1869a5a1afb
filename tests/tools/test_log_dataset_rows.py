"""``xtuner log-dataset -n N`` shows N samples of a packed config; ``--packed`` the rows."""
from __future__ import annotations

import re

from xtuner.entry_point import main

DEMO = "demo_tiny_full_colorist_e40"  # packs several samples into each row


def _blocks(out: str) -> dict[str, str]:
    parts = re.split(r"#{20}   (.+?)   #{20}\n", out)
    return dict(zip(parts[1::2], parts[2::2]))


def test_n_counts_samples_of_a_packed_config(monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["log-dataset", DEMO, "-n", "2"]) == 0
    captured = capsys.readouterr()
    blocks = _blocks(captured.out)
    assert list(blocks) == ["text 0", "text 1"]
    assert [b.count("<|im_start|>user") for b in blocks.values()] == [1, 1]
    assert "--packed shows the packed rows" in captured.err


def test_packed_shows_rows(monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["log-dataset", DEMO, "-n", "2", "--packed"]) == 0
    blocks = _blocks(capsys.readouterr().out)
    assert list(blocks) == ["text (packed row 0)", "text (packed row 1)"]
    assert all(b.count("<|im_start|>user") > 1 for b in blocks.values())
