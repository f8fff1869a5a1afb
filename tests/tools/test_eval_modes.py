"""``xtuner test``, ``xtuner mmbench`` and ``xtuner eval_refcoco`` end to end on the LLaVA demo
(trained for 6 of its 12 epochs once for the session: ``trained_llava_demo``), with pictures
made in code."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "evaluation"))
from shapes_bench import shapes_mmbench_tsv  # noqa: E402

from xtuner.entry_point import main  # noqa: E402

DEMO = "demo_tiny_llava_shapes_e12"
XTUNER_BIN = Path(sys.executable).parent / "xtuner"
TEST_SECTION = """

# -- test section: the demo's pictures as an MMBench set, for `xtuner test` --
from xtuner.evaluation.mmbench_test import (GenerationTestLoop, MMBenchDataset, MMBenchMetric,
                                            list_collate_fn)

mmbench_tsv = {tsv!r}
test_dataloader = dict(
    batch_size=1, num_workers=0,
    dataset=dict(type=MMBenchDataset, data_file=mmbench_tsv, tokenizer=tokenizer,
                 image_processor=image_processor, prompt_template=prompt_template),
    sampler=dict(type=DefaultSampler, shuffle=False),
    collate_fn=dict(type=list_collate_fn))
test_evaluator = dict(type=MMBenchMetric, data_file=mmbench_tsv)
test_cfg = dict(type=GenerationTestLoop, max_new_tokens=8)
"""


def _xtuner(*args, cwd):
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("XTUNER_DEBUG", None)
    return subprocess.run([str(XTUNER_BIN), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)


@pytest.fixture(scope="module")
def demo(tmp_path_factory, trained_llava_demo):
    """The trained checkpoint, both exports, the MMBench TSV and a config with a test section."""
    cwd = tmp_path_factory.mktemp("eval_modes")
    checkpoint = trained_llava_demo
    for fmt in ("xtuner", "huggingface"):
        proc = _xtuner("convert", "pth_to_hf", DEMO, str(checkpoint), f"out_{fmt}",
                       "--save-format", fmt, "--dtype", "fp32", cwd=cwd)
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    tsv = cwd / "shapes.tsv"
    shapes_mmbench_tsv(tsv)
    from xtuner.utils.paths import resolve_config

    config = cwd / "shapes_test.py"
    config.write_text(Path(resolve_config(DEMO)).read_text() + TEST_SECTION.format(tsv=str(tsv)))
    return {"cwd": cwd, "checkpoint": checkpoint, "tsv": tsv, "config": config}


def _mmbench(demo, *model, work_dir):
    return main(["mmbench", *model, "--prompt-template", "vicuna", "--data-path",
                 str(demo["tsv"]), "--work-dir", str(demo["cwd"] / work_dir),
                 "--max-new-tokens", "8"])


def _only_run(work_dir: Path) -> Path:
    (run,) = [p for p in work_dir.iterdir() if p.is_dir()]
    return run


@pytest.fixture(scope="module")
def mmbench_xtuner(demo):
    assert _mmbench(demo, str(demo["cwd"] / "out_xtuner"), "--llava",
                    str(demo["cwd"] / "out_xtuner"), work_dir="mm_x") == 0
    return _only_run(demo["cwd"] / "mm_x")


def test_mmbench_scores_well_above_chance(demo, mmbench_xtuner):
    import pandas as pd

    metrics = json.loads((mmbench_xtuner / "mmbench_result.json").read_text())
    # 4 options: chance is 0.25; the half-trained demo names most colours (7 of 12 here).
    assert metrics["Average"] >= 0.5, metrics
    assert set(metrics) == {"Average", "circle", "square", "triangle", "cross"}
    results = list(mmbench_xtuner.glob("mmbench_result.*sv")) + list(
        mmbench_xtuner.glob("mmbench_result.xlsx"))
    assert len(results) == 1
    if results[0].suffix == ".tsv":
        table = pd.read_csv(results[0], sep="\t")
    else:
        table = pd.read_excel(results[0])
    assert list(table["index"]) == list(range(12))
    assert {"question", "A", "B", "C", "D", "prediction", "category", "answer"} <= set(table)
    assert json.loads((mmbench_xtuner / "args.json").read_text())["prompt_template"] == "vicuna"


def test_mmbench_on_the_huggingface_export_answers_the_same(demo, mmbench_xtuner, capsys):
    assert _mmbench(demo, str(demo["cwd"] / "out_huggingface"), work_dir="mm_hf") == 0
    out = capsys.readouterr().out
    assert "Average" in out
    hf = _only_run(demo["cwd"] / "mm_hf")
    assert (json.loads((hf / "mmbench_result.json").read_text())
            == json.loads((mmbench_xtuner / "mmbench_result.json").read_text()))


def test_xtuner_test_gives_mmbenchs_numbers(demo, mmbench_xtuner, capsys):
    work_dir = demo["cwd"] / "test_wd"
    assert main(["test", str(demo["config"]), "--checkpoint", str(demo["checkpoint"]),
                 "--work-dir", str(work_dir)]) == 0
    written = json.loads((work_dir / "test_metrics.json").read_text())
    expected = json.loads((mmbench_xtuner / "mmbench_result.json").read_text())
    assert written["metrics"] == {f"mmbench/{k}": round(v * 100, 2) for k, v in expected.items()}
    assert f"mmbench/Average: {written['metrics']['mmbench/Average']}" in capsys.readouterr().out


def test_xtuner_test_errors_are_one_line(demo, capsys):
    assert main(["test", DEMO, "--checkpoint", str(demo["checkpoint"])]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [(f"xtuner test: error: {DEMO} has no test_dataloader, test_evaluator, "
                    "test_cfg; `xtuner test` runs a config's test section: add it "
                    "(xtuner/evaluation/mmbench_test.py shows one for MMBench)")]
    assert main(["test", str(demo["config"]), "--checkpoint", "nope.pth"]) == 2
    assert capsys.readouterr().err.strip() == ("xtuner test: error: checkpoint not found: "
                                               "nope.pth")


def test_mmbench_needs_llava_for_a_plain_llm(demo, capsys):
    from xtuner.demo import TINY_LLM_PATH

    assert _mmbench(demo, str(TINY_LLM_PATH), work_dir="mm_bad") == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "is not a LLaVA model folder" in line and "--llava DIR" in line


def _refcoco_set(cwd: Path) -> Path:
    from xtuner.demo.build_llava_demo import COLOURS, draw

    images = cwd / "ref_images" / "coco" / "train2017"
    images.mkdir(parents=True, exist_ok=True)
    records = []
    for i, (colour, rgb) in enumerate(list(COLOURS.items())[:4]):
        draw("square", rgb, random.Random(i)).save(images / f"{i:012d}.jpg")
        records.append({"img_id": f"COCO_train2014_{i:012d}_{i}", "sents": f"the {colour} one",
                        "bbox": [4, 4, 24, 24], "height": 32, "width": 32})
    path = cwd / "refcoco_eval.json"
    path.write_text(json.dumps(records))
    return path


def _eval_refcoco(demo, data, work_dir):
    out = demo["cwd"] / "out_xtuner"
    return main(["eval_refcoco", str(out), "--llava", str(out), "--data-path", str(data),
                 "--image-folder", str(demo["cwd"] / "ref_images"), "--work-dir",
                 str(demo["cwd"] / work_dir), "--max-new-tokens", "8"])


def test_eval_refcoco_runs_the_model(demo, capsys):
    data = _refcoco_set(demo["cwd"])
    assert _eval_refcoco(demo, data, "ref_real") == 0
    run = _only_run(demo["cwd"] / "ref_real")
    answers = json.loads((run / "refcoco_answers.json").read_text())
    assert [a["sents"] for a in answers] == ["the red one", "the green one", "the blue one",
                                             "the yellow one"]
    assert all(a["ans"] for a in answers)  # the demo captions; it never learnt boxes
    result = json.loads((run / "refcoco_result.json").read_text())
    assert result["total"] == 4 and result["right"] + result["unparsed"] <= 4


def test_eval_refcoco_scores_known_answers(demo, monkeypatch, capsys):
    """The model's answers replaced by known ones: ground truth [12, 12, 87, 87] on the grid."""
    from xtuner.evaluation import cli_common

    said = iter(["{<12><12><87><87>}", "{<10><10><80><80>}", "{<50><50><99><99>}", "no box"])
    prompts = []

    def fake(args):
        def answer(prompt, image):
            prompts.append(prompt)
            return next(said)
        return {"INSTRUCTION": "USER: {input} ASSISTANT:"}, answer

    monkeypatch.setattr(cli_common, "build_answerer", fake)
    data = _refcoco_set(demo["cwd"])
    assert _eval_refcoco(demo, data, "ref_fake") == 0
    out = capsys.readouterr().out
    assert "Acc: 0.5 (2/4; 1 answers without a box)" in out
    assert "Error format sample: COCO_train2014_000000000003_3: 'no box'" in out
    assert prompts[0] == "USER: <image>\n[refer] give me the location of the red one ASSISTANT:"


def test_xtuner_test_reads_a_deepspeed_folder_and_refuses_a_foreign_checkpoint(
        demo, mmbench_xtuner, capsys):
    import torch

    state = torch.load(demo["checkpoint"], weights_only=True)["state_dict"]
    # DeepSpeed without ZeRO: iter_N.pth/ holding the module's weights (`module.` prefixed).
    folder = demo["cwd"] / "ds" / "iter_696.pth"
    folder.mkdir(parents=True)
    torch.save({"module": {f"module.{k}": v for k, v in state.items()}},
               folder / "mp_rank_00_model_states.pt")
    work_dir = demo["cwd"] / "test_ds"
    assert main(["test", str(demo["config"]), "--checkpoint", str(folder),
                 "--work-dir", str(work_dir)]) == 0
    expected = json.loads((mmbench_xtuner / "mmbench_result.json").read_text())
    assert json.loads((work_dir / "test_metrics.json").read_text())["metrics"] == {
        f"mmbench/{k}": round(v * 100, 2) for k, v in expected.items()}
    capsys.readouterr()

    foreign = demo["cwd"] / "foreign.pth"
    torch.save({"state_dict": {"llm.not_a_weight": torch.zeros(1), **state}}, foreign)
    assert main(["test", str(demo["config"]), "--checkpoint", str(foreign),
                 "--work-dir", str(work_dir)]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]  # after the runner's log lines
    assert line.startswith(f"xtuner test: error: {foreign} does not match") and (
        "1 unexpected (e.g. llm.not_a_weight)" in line)
