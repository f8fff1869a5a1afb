"""``xtuner mmbench MODEL --llava DIR --data-path TSV``: evaluate a LLaVA model on MMBench.

Each row of the official TSV (base64 image, question, hint, options A-D) is asked as XTuner
v0 asked it: ``<image>\\n[hint\\n]question\\nA. ...\\nB. ...\\n`` + "Answer with the option's
letter from the given choices directly.", in --prompt-template, answered greedily. Results go to
WORK_DIR/<timestamp>/: ``mmbench_result.xlsx`` (the official submission format; needs
openpyxl, else ``mmbench_result.tsv`` with the same columns) and, for sets with an ``answer``
column, ``mmbench_result.json`` with the accuracy overall and per category (circular: a
question is right only when all its rotated copies are), which is also printed.

The letter is read as v0 did (the first run of capitals A-D in the answer), except that an
answer which is exactly one option's text picks that option; --v0-matching turns that off.

MODEL is the LLM with --llava DIR (``pth_to_hf --save-format xtuner``), or a folder written by
``pth_to_hf --save-format huggingface`` alone.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from xtuner.utils.cli import ArgumentParser, run_main


def parse_args(argv: Sequence[str] | None):
    from xtuner.evaluation.cli_common import add_model_arguments

    parser = ArgumentParser(prog="xtuner mmbench", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    parser.add_argument("--v0-matching", action="store_true",
                        help="read the answer letter exactly as v0 (first run of A-D)")
    return parser.parse_args(argv)


def _write_results(rows: list[dict], save_dir):
    import importlib.util

    import pandas as pd

    df = pd.DataFrame(rows)
    if importlib.util.find_spec("openpyxl") is not None:
        path = save_dir / "mmbench_result.xlsx"
        with pd.ExcelWriter(path, engine="openpyxl") as writer:
            df.to_excel(writer, index=False)
        return path, None
    path = save_dir / "mmbench_result.tsv"
    df.to_csv(path, sep="\t", index=False)
    return path, ("openpyxl is not installed, so the results are a TSV; the official "
                  "submission wants .xlsx: `pip install openpyxl` and run again, or open the "
                  "TSV and save it as .xlsx")


def format_table(metrics: dict, title: str) -> str:
    """v0's table: Average first, then each category, in percent."""
    lines = [title, f"  {'Category':<28} Accuracy (%)",
             f"  {'Average':<28} {metrics['Average'] * 100:.1f}"]
    lines += [f"  {k:<28} {v * 100:.1f}" for k, v in metrics.items() if k != "Average"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from tqdm import tqdm

    from xtuner.evaluation.cli_common import build_answerer, make_save_dir
    from xtuner.evaluation.mmbench import (
        MMBenchData,
        build_mmbench_prompt,
        extract_choice,
        mmbench_accuracy,
    )

    data = MMBenchData(args.data_path)  # a bad TSV fails before the model loads
    template, answer = build_answerer(args)
    save_dir = make_save_dir(args)
    print(f"Dataset path: {data.path.resolve()}\nResults will be saved to {save_dir}")
    rows, right = [], 0
    progress = tqdm(range(len(data)), desc="MMBench", unit="question", file=sys.stderr)
    for i in progress:
        sample = data[i]
        prediction = answer(build_mmbench_prompt(sample, template, args.bot_name), sample["img"])
        row = {"question": sample["question"], **sample["options_dict"],
               "prediction": prediction, "category": sample["category"]}
        if "l2-category" in sample:
            row["l2-category"] = sample["l2-category"]
        row.update(index=sample["index"], split="dev" if data.has_answers else "test",
                   answer=sample["answer"])
        rows.append(row)
        if data.has_answers:  # per row, not circular: a running hint, not the score
            right += extract_choice(prediction, sample["options_dict"],
                                    args.v0_matching) == sample["answer"]
            progress.set_postfix(accuracy=f"{right / len(rows):.3f}")
    path, note = _write_results(rows, save_dir)
    print(f"Wrote {path}")
    if note:
        print(f"note: {note}")
    if not data.has_answers:
        print("The set has no answers (a test split): submit the results file for a score.")
        return 0
    metrics = mmbench_accuracy(rows, data, v0_only=args.v0_matching)
    (save_dir / "mmbench_result.json").write_text(json.dumps(metrics, indent=2),
                                                   encoding="utf-8")
    print(format_table(metrics, f"MMBench ({args.data_path})"))
    print("Note: choices are read from the answers by pattern matching, not with ChatGPT's "
          "help as in the official evaluation; be careful comparing with published numbers.")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, prog="xtuner mmbench"))
