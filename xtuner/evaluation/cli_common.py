"""Arguments and output folder shared by ``xtuner mmbench`` and ``xtuner eval_refcoco``."""
from __future__ import annotations

import json
import time
from pathlib import Path

__all__ = ["add_model_arguments", "build_answerer", "make_save_dir"]


def add_model_arguments(parser) -> None:
    parser.add_argument("model_name_or_path", metavar="MODEL",
                        help="the LLM folder (with --llava), or a LLaVA folder written by "
                        "`pth_to_hf --save-format huggingface`")
    parser.add_argument("--llava", metavar="DIR",
                        help="the LLaVA parts (`pth_to_hf --save-format xtuner`)")
    parser.add_argument("--visual-encoder", metavar="PATH",
                        help="the vision tower, when the --llava folder has no visual_encoder/")
    parser.add_argument("--visual-select-layer", type=int, default=-2,
                        help="the tower's hidden state the projector reads (default: -2)")
    parser.add_argument("--prompt-template", metavar="NAME",
                        help="XTuner prompt template (e.g. vicuna); without one the prompt is "
                        "sent as plain text")
    parser.add_argument("--stop-words", nargs="+", default=[], help="cut answers at these")
    parser.add_argument("--torch-dtype", default="auto",
                        choices=["fp16", "bf16", "fp32", "auto"], help="model dtype")
    parser.add_argument("--bits", type=int, choices=[4, 8], help="load the LLM quantized")
    parser.add_argument("--bot-name", default="BOT", help="{bot_name} in the template")
    parser.add_argument("--max-new-tokens", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-path", required=True, help="the evaluation data file")
    parser.add_argument("--work-dir", help="results go to WORK_DIR/<timestamp>/ (default: "
                        "./work_dirs/<data file name>)")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="run Python code shipped in the model folders")


def build_answerer(args):
    """The template (or None) and the :class:`ImageAnswerer` the arguments describe."""
    import torch

    from xtuner.chat.conversation import resolve_prompt_template
    from xtuner.evaluation.generation import load_image_answerer

    torch.manual_seed(args.seed)
    template = resolve_prompt_template(args.prompt_template) if args.prompt_template else None
    stop_words = list(args.stop_words) + list((template or {}).get("STOP_WORDS", []))
    answerer = load_image_answerer(
        args.model_name_or_path, args.llava, args.visual_encoder, args.visual_select_layer,
        args.torch_dtype, args.bits, args.trust_remote_code,
        max_new_tokens=args.max_new_tokens, stop_words=stop_words)
    return template, answerer


def make_save_dir(args) -> Path:
    """``WORK_DIR/<timestamp>/`` with ``args.json`` in it (v0's layout)."""
    root = Path(args.work_dir or Path("work_dirs") / Path(args.data_path).stem)
    save_dir = root / time.strftime("%Y%m%d_%H%M%S", time.localtime())
    save_dir.mkdir(parents=True, exist_ok=True)
    (save_dir / "args.json").write_text(json.dumps(vars(args), indent=2, default=str),
                                        encoding="utf-8")
    return save_dir.resolve()
