"""``xtuner preprocess arxiv``: v0's category/date filter and output, with file:line errors."""
from __future__ import annotations

import importlib.util
import json
import sys

import pytest
import v0_oracle

from xtuner.dataset.preprocess.arxiv import filter_arxiv, read_arxiv_metadata
from xtuner.entry_point import main
from xtuner.utils.errors import DataError

RECORDS = [
    {"id": "1", "categories": "cs.CL cs.LG", "update_date": "2021-03-04", "abstract": "a"},
    {"id": "2", "categories": "math.CO", "update_date": "2023-01-01", "abstract": "b"},
    {"id": "3", "categories": "cs.CV", "update_date": "2019-12-31", "abstract": "c"},
    {"id": "4", "categories": "cs.AI", "update_date": "2020-01-01", "abstract": "d"},
    {"id": "5", "categories": "cs.AIX stat.ML", "update_date": "2022-06-30", "abstract": "e"},
    {"id": "6", "categories": "q-bio.NC cs.CV", "update_date": "2024-02-29", "abstract": "f"},
]  # fmt: skip


def _write(path, records, extra_lines=()):
    lines = [json.dumps(r) for r in records] + list(extra_lines)
    path.write_text("\n".join(lines) + "\n")
    return path


def _v0_arxiv():
    """v0's tools/data_preprocess/arxiv.py (argparse/json/datetime only), loaded aside."""
    try:
        root = v0_oracle._unpacked()
    except RuntimeError as exc:
        pytest.skip(f"XTuner 0.2.0 wheel not available: {exc}")
    spec = importlib.util.spec_from_file_location(
        "xtuner_v0_tools_arxiv", root / "tools" / "data_preprocess" / "arxiv.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("categories, start", [
    (["cs.AI", "cs.CL", "cs.CV"], "2020-01-01"),
    (["cs.CV"], "2019-01-01"),
    (["math.CO", "stat.ML"], "2022-06-30"),
    (["cs.AI"], "2030-01-01"),
])  # fmt: skip
def test_output_equals_v0_tool(tmp_path, monkeypatch, capsys, categories, start):
    src = _write(tmp_path / "meta.jsonl", RECORDS)
    v0 = _v0_arxiv()
    monkeypatch.setattr(sys, "argv", ["arxiv.py", str(src), str(tmp_path / "v0.json"),
                                      "--categories", *categories, "--start-date", start])
    v0.main()
    ours = tmp_path / "ours.json"
    assert main(["preprocess", "arxiv", str(src), str(ours), "--categories", *categories,
                 "--start-date", start]) == 0
    assert ours.read_bytes() == (tmp_path / "v0.json").read_bytes()
    out = capsys.readouterr().out
    assert f"Save to {ours}\n{len(json.loads(ours.read_text()))} items" in out


def test_default_filter_keeps_v0_selection():
    kept = filter_arxiv(RECORDS)
    assert [r["id"] for r in kept] == ["1", "4", "6"]  # 3 is too old; 5's "cs.AIX" != cs.AI


def test_malformed_line_is_named_with_file_and_line(tmp_path, capsys):
    src = _write(tmp_path / "meta.jsonl", RECORDS[:2], ['{"id": "x", "categories": '])
    assert main(["preprocess", "arxiv", str(src), str(tmp_path / "o.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert f"{src}:3: not valid JSON" in err[0]
    assert "--skip-bad-lines" in err[0]
    assert not (tmp_path / "o.json").exists()


@pytest.mark.parametrize("bad, message", [
    ({"id": "x", "update_date": "2021-01-01"}, "has no 'categories'"),
    ({"id": "x", "categories": "cs.AI", "update_date": "21/01/2021"}, "is not YYYY-MM-DD"),
    ([1, 2], "expected a JSON object"),
])  # fmt: skip
def test_bad_records_raise(tmp_path, bad, message):
    src = _write(tmp_path / "m.jsonl", [RECORDS[0], bad])
    with pytest.raises(DataError, match=rf"m.jsonl:2: .*{message}"):
        list(read_arxiv_metadata(src))


def test_skip_bad_lines_reports_each_and_keeps_the_rest(tmp_path, capsys):
    src = _write(tmp_path / "m.jsonl", RECORDS, ["not json", "", '{"categories": "cs.AI"}'])
    dst = tmp_path / "o.json"
    assert main(["preprocess", "arxiv", str(src), str(dst), "--skip-bad-lines"]) == 0
    err = capsys.readouterr().err
    assert f"{src}:7: not valid JSON" in err
    assert f"{src}:9: the record has no 'update_date'" in err
    assert ":8:" not in err  # blank lines are ignored
    assert [r["id"] for r in json.loads(dst.read_text())] == ["1", "4", "6"]


def test_bad_start_date_is_a_usage_error(tmp_path, capsys):
    src = _write(tmp_path / "m.jsonl", RECORDS)
    assert main(["preprocess", "arxiv", str(src), str(tmp_path / "o.json"),
                 "--start-date", "2020-13-01"]) == 2
    assert "--start-date: date '2020-13-01' is not YYYY-MM-DD" in capsys.readouterr().err


def test_preprocess_help_explains_all_three(capsys):
    assert main(["preprocess", "-h"]) == 0
    out = capsys.readouterr().out
    for line in ("xtuner preprocess CONFIG --save-dir DIR", "xtuner preprocess arxiv SRC DST",
                 "xtuner preprocess refcoco --ann-path"):
        assert line in out
