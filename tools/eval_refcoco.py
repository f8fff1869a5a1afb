"""``xtuner eval_refcoco MODEL --llava DIR --data-path FILE``: RefCOCO grounding accuracy.

FILE is a JSON list of ``{img_id, sents, bbox, height, width}`` (the refer eval files v0
read; ``bbox`` is the COCO ``[x, y, w, h]`` in pixels), or of ``xtuner preprocess refcoco``
records, whose ``image`` is used instead of ``img_id``. Each sentence is asked as XTuner v0
asked it: ``<image>\\n[refer] give me the location of <sentence>`` in --prompt-template
(v0 always used vicuna, the default here). The answer's four integers are the box on a 0-100
grid; the sample is right when its IoU with the normalised ground truth is above 0.5 (v0:
``iou > 0.5``, edges counted inclusively). An answer without exactly four integers counts as
wrong and is listed. Accuracy is printed; WORK_DIR/<timestamp>/refcoco_answers.json holds every
answer and refcoco_result.json the numbers.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from xtuner.utils.cli import ArgumentParser, run_main


def parse_args(argv: Sequence[str] | None):
    from xtuner.evaluation.cli_common import add_model_arguments

    parser = ArgumentParser(prog="xtuner eval_refcoco", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    parser.set_defaults(prompt_template="vicuna")
    parser.add_argument("--image-folder", default="data/llava_data/llava_images/",
                        help="root of the images (v0: %(default)s, holding coco/train2017/)")
    return parser.parse_args(argv)


def load_refcoco_eval(path: str | Path, image_folder: str | Path) -> list[dict]:
    """The samples of FILE with ``image`` resolved under ``image_folder`` (v0's naming)."""
    from xtuner.utils.errors import DataError

    path = Path(path)
    if not path.is_file():
        raise DataError(f"RefCOCO file not found: {path}")
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(records, list):
        raise DataError(f"{path}: expected a JSON list of samples")
    samples = []
    for i, record in enumerate(records):
        missing = [k for k in ("sents", "bbox", "height", "width") if k not in record]
        if "image" not in record and "img_id" not in record:
            missing.append("img_id")
        if missing:
            raise DataError(f"{path}: sample {i} has no {', '.join(map(repr, missing))}")
        image = record.get("image") or ("coco/train2017/" + str(record["img_id"]).split("_")[-2]
                                         + ".jpg")
        samples.append({**record, "image_path": str(Path(image_folder) / image)})
    return samples


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from PIL import Image
    from tqdm import tqdm

    from xtuner.evaluation.cli_common import build_answerer, make_save_dir
    from xtuner.evaluation.refcoco import INSTRUCTION, parse_box, refcoco_accuracy
    from xtuner.utils.errors import DataError

    samples = load_refcoco_eval(args.data_path, args.image_folder)
    for s in samples:
        if not Path(s["image_path"]).is_file():
            raise DataError(f"image not found: {s['image_path']} (--image-folder)")
    template, answer = build_answerer(args)
    save_dir = make_save_dir(args)
    answers = []
    progress = tqdm(samples, desc="RefCOCO", unit="sample", file=sys.stderr)
    for s in progress:
        text = "<image>\n" + INSTRUCTION.format(s["sents"])
        prompt = (template["INSTRUCTION"].format(input=text, round=1, bot_name=args.bot_name)
                  if template else text)
        with Image.open(s["image_path"]) as image:
            said = answer(prompt, image.convert("RGB"))
        answers.append({"ans": said, "id": s.get("id", s.get("img_id")), "sents": s["sents"],
                        "bbox": s["bbox"], "height": s["height"], "width": s["width"]})
        progress.set_postfix(accuracy=f"{refcoco_accuracy(answers)['accuracy']:.3f}")
    result = refcoco_accuracy(answers)
    for a in answers:
        if parse_box(a["ans"]) is None:
            print(f"Error format sample: {a['id']}: {a['ans']!r}")
    (save_dir / "refcoco_answers.json").write_text(json.dumps(answers, indent=2),
                                                   encoding="utf-8")
    (save_dir / "refcoco_result.json").write_text(json.dumps(result, indent=2),
                                                  encoding="utf-8")
    print(f"Acc: {result['accuracy']} ({result['right']}/{result['total']}; "
          f"{result['unparsed']} answers without a box)\nResults in {save_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, prog="xtuner eval_refcoco"))
