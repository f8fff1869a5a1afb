"""``xtuner convert merge BASE ADAPTER SAVE_DIR``: merge a PEFT adapter into its base model.

Writes the merged weights and the tokenizer (the image processor with ``--is-clip``). An adapter
trained with QLoRA is merged into the unquantized base. Unless ``--no-verify``, a few fixed
prompts run through base + adapter and through the written model, and the merge fails if their
outputs differ beyond a tolerance that depends on the dtype. SAVE_DIR appears only when
everything succeeded.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from xtuner.utils.cli import ArgumentParser, run_main
from xtuner.utils.paths import looks_local, max_shard_size
from xtuner.utils.remote_code import add_trust_remote_code_argument

DTYPE_HELP = ("dtype to merge and write in: 'auto' (default) keeps the base model's own dtype "
              "(its config.json; fp16 when it names none), fp16/bf16/fp32 force one (XTuner v0 "
              "always used fp16)")


def parse_args(argv: Sequence[str] | None):
    parser = ArgumentParser(prog="xtuner convert merge", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base", metavar="BASE", help="base model directory (or hub id)")
    parser.add_argument("adapter", metavar="ADAPTER",
                        help="PEFT adapter directory (e.g. from `xtuner convert pth_to_hf`)")
    parser.add_argument("save_dir", metavar="SAVE_DIR", help="output directory")
    parser.add_argument("--max-shard-size", default="2GB", type=max_shard_size,
                        help="largest weight file (default 2GB)")
    parser.add_argument("--device", default="auto", choices=["cpu", "cuda", "auto"],
                        help="where to merge: cpu, cuda, or auto (cuda when available)")
    parser.add_argument("--dtype", choices=["auto", "fp16", "bf16", "fp32"], default="auto",
                        help=DTYPE_HELP)
    parser.add_argument("--is-clip", action="store_true",
                        help="BASE is a CLIP vision encoder (CLIPVisionModel), e.g. a LLaVA "
                        "visual encoder trained with LoRA")
    parser.add_argument("--safe-serialization", action=argparse.BooleanOptionalAction,
                        default=True, help="write safetensors (default) or, with "
                        "--no-safe-serialization, pickled .bin files")
    parser.add_argument("--no-verify", dest="verify", action="store_false",
                        help="skip the parity check of the merged model")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace SAVE_DIR if it exists and is not empty")
    add_trust_remote_code_argument(parser, "BASE's")
    return parser.parse_args(argv)


def _check_inputs(args) -> None:
    """Everything that can be checked before loading: the adapter folder, the base model's
    existence and kind, the device, and that SAVE_DIR replaces neither input."""
    from xtuner.utils.errors import CheckpointError, SetupError
    from xtuner.utils.paths import check_output_location

    check_output_location(args.save_dir, {"BASE": args.base, "ADAPTER": args.adapter})

    adapter = Path(args.adapter).expanduser()
    if not adapter.is_dir():
        raise CheckpointError(f"adapter directory not found: {adapter}")
    if not (adapter / "adapter_config.json").is_file():
        hint = (" (it holds a full model: use it directly, no merge needed)"
                if (adapter / "config.json").is_file() else "")
        raise CheckpointError(f"{adapter} has no adapter_config.json, so it is not a PEFT "
                              f"adapter directory{hint}; pass the output of `xtuner convert "
                              "pth_to_hf` for a LoRA/QLoRA config")
    try:
        json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{adapter / 'adapter_config.json'} is not valid JSON: "
                              f"{exc}") from exc
    base = Path(args.base).expanduser()
    if not base.exists() and looks_local(args.base):
        raise CheckpointError(f"base model not found: {base}")
    if args.is_clip:
        _check_clip_base(args)
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise SetupError("--device cuda, but no CUDA device is available; use --device cpu")


def _check_clip_base(args) -> None:
    """``--is-clip`` loads BASE as a ``CLIPVisionModel``, which another model's config breaks
    with an AttributeError deep in transformers: refuse it by its ``model_type``."""
    from transformers import AutoConfig

    from xtuner.utils.errors import UsageError

    try:
        config = AutoConfig.from_pretrained(args.base, trust_remote_code=args.trust_remote_code)
    except (OSError, ValueError):
        return  # not readable here: loading BASE reports it
    if config.model_type not in ("clip", "clip_vision_model"):
        raise UsageError(f"--is-clip: BASE {args.base} is not a CLIP vision model (its "
                         f"config.json says model_type '{config.model_type}'); drop --is-clip "
                         "to merge into a language model")


def _resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def _base_dtype(base: str, choice: str):
    from xtuner.model.export import checkpoint_dtype, parse_dtype

    return parse_dtype(choice) if choice != "auto" else checkpoint_dtype(base)


def _load_base(args, device: str, dtype):
    device_map = {"": device} if device != "cpu" else None
    kwargs = dict(dtype=dtype, device_map=device_map, trust_remote_code=args.trust_remote_code)
    base = str(Path(args.base).expanduser()) if Path(args.base).expanduser().exists() \
        else args.base
    from xtuner.utils.remote_code import remote_code_errors

    try:
        with remote_code_errors(f"base model {args.base}"):
            if args.is_clip:
                from transformers import CLIPVisionModel

                return CLIPVisionModel.from_pretrained(base, **kwargs)
            from transformers import AutoModelForCausalLM

            return AutoModelForCausalLM.from_pretrained(base, **kwargs)
    except OSError as exc:
        from xtuner.utils.errors import CheckpointError

        raise CheckpointError(f"cannot load base model {args.base}: "
                              f"{str(exc).strip().splitlines()[0]}") from exc


def _parity_inputs(args, model):
    import torch

    from xtuner.model.export import parity_inputs

    if args.is_clip:
        config = model.config
        generator = torch.Generator().manual_seed(0)
        return [torch.randn(1, config.num_channels, config.image_size, config.image_size,
                            generator=generator)]
    from transformers import AutoTokenizer

    from xtuner.utils.remote_code import remote_code_errors

    try:
        with remote_code_errors(f"the tokenizer of {args.base}"):
            tokenizer = AutoTokenizer.from_pretrained(args.base,
                                                      trust_remote_code=args.trust_remote_code)
    except (OSError, ValueError):
        tokenizer = None
    return parity_inputs(tokenizer, model.get_input_embeddings().weight.shape[0])


def _outputs(args, model, inputs):
    import torch

    from xtuner.model.export import compute_logits

    if not args.is_clip:
        return compute_logits(model, inputs)
    device = next(model.parameters()).device
    with torch.no_grad():
        model.eval()
        return [model(pixel_values=x.to(device, next(model.parameters()).dtype))
                .last_hidden_state[0].float().cpu() for x in inputs]


def _save_preprocessor(args, save_dir: Path) -> None:
    from xtuner.model.export import copy_tokenizer_files

    if args.is_clip:
        from transformers import CLIPImageProcessor

        try:
            CLIPImageProcessor.from_pretrained(args.base).save_pretrained(str(save_dir))
        except OSError:
            print(f"note: {args.base} has no image processor; none was saved")
        return
    if not copy_tokenizer_files(args.base, save_dir, args.trust_remote_code):
        print(f"note: {args.base} has no tokenizer; none was saved")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    _check_inputs(args)
    from xtuner.model.export import (
        atomic_output_dir,
        check_output_dir,
        compare_logits,
        dtype_name,
        free,
        safetensors_to_bin,
    )

    save_dir = check_output_dir(args.save_dir, args.overwrite)
    device = _resolve_device(args.device)
    dtype = _base_dtype(args.base, args.dtype)

    from xtuner.chat.loading import load_adapter

    model = _load_base(args, device, dtype)
    model = load_adapter(model, str(Path(args.adapter).expanduser()), args.base,
                         is_trainable=False)
    if args.verify:
        inputs = _parity_inputs(args, model)
        reference = _outputs(args, model, inputs)
    print(f"Merging {args.adapter} into {args.base} ({dtype_name(dtype)}, {device})")
    model = model.merge_and_unload(progressbar=True)
    model = model.to(dtype)  # adapters are kept in fp32 by peft; the merged model is not
    with atomic_output_dir(save_dir, args.overwrite) as tmp:
        model.save_pretrained(str(tmp), max_shard_size=args.max_shard_size)
        if not args.safe_serialization:
            safetensors_to_bin(tmp)
        _save_preprocessor(args, tmp)
        if args.verify:
            del model
            free()
            written = _load_base(argparse.Namespace(**{**vars(args), "base": str(tmp)}),
                                 device, dtype)
            got = _outputs(args, written, inputs)
            del written
            diff = compare_logits(reference, got, dtype, what="the merged model")
            print(f"Parity check passed: max |{'hidden state' if args.is_clip else 'logits'} "
                  f"difference| between base + adapter and the merged model {diff:.3g} over "
                  f"{len(inputs)} inputs ({dtype_name(dtype)})")
        files = sorted(p.name for p in tmp.iterdir())
    print(f"Saved the merged model to {save_dir}: {', '.join(files)}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, prog="xtuner convert merge"))
