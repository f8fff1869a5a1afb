"""``xtuner convert pth_to_hf CONFIG PTH SAVE_DIR``: a training checkpoint as a Hugging Face model.

PTH is an ``iter_N.pth`` file or a DeepSpeed checkpoint directory (ZeRO-1/2/3; consolidated on
the CPU, no GPU needed). A LoRA/QLoRA config gives a PEFT adapter directory
(``peft.PeftModel.from_pretrained(base, SAVE_DIR)``); full fine-tuning gives a model directory
with its tokenizer (``AutoModelForCausalLM.from_pretrained(SAVE_DIR)``). A reward model is
written whole, LoRA merged (``AutoModelForSequenceClassification.from_pretrained(SAVE_DIR)``;
its parity check compares the scores at the last token). The config is copied to
``SAVE_DIR/xtuner_config.py``.

Unless ``--no-verify``, a few fixed prompts run through the checkpoint loaded into the training
model and through the written model, and the conversion fails if their logits differ (the
source is rounded to the written dtype first, so the check is tight in every dtype). SAVE_DIR
appears only when everything succeeded.
"""
from __future__ import annotations

import argparse
import copy
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from xtuner.utils.cfg_options import CfgOptionsAction
from xtuner.utils.cli import ArgumentParser, run_main
from xtuner.utils.paths import max_shard_size
from xtuner.utils.remote_code import CONFIG_HINT, add_trust_remote_code_argument

DTYPE_HELP = ("dtype of the written weights: 'auto' (default) writes bf16 when the config loads "
              "the LLM in bf16 (model.llm.dtype, or the checkpoint's own dtype for 'auto'), "
              "else fp16 as XTuner v0 did; fp16, bf16 or fp32 force one")


DEFAULT_SHARD_SIZE = "2GB"


def parse_args(argv: Sequence[str] | None):
    parser = ArgumentParser(prog="xtuner convert pth_to_hf", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="the training config (file or catalog name)")
    parser.add_argument("pth", metavar="PTH", help="iter_N.pth file or DeepSpeed checkpoint "
                        "directory (work_dirs/CONFIG/iter_N.pth)")
    parser.add_argument("save_dir", metavar="SAVE_DIR", help="output directory")
    parser.add_argument("--fp32", action="store_true", help="write float32 (= --dtype fp32)")
    parser.add_argument("--dtype", choices=["auto", "fp16", "bf16", "fp32"], default="auto",
                        help=DTYPE_HELP)
    # None when not given: an export that cannot shard then stays quiet about it.
    parser.add_argument("--max-shard-size", default=None, type=max_shard_size,
                        help=f"largest weight file of a full model (default {DEFAULT_SHARD_SIZE})")
    parser.add_argument("--safe-serialization", action=argparse.BooleanOptionalAction,
                        default=True, help="write safetensors (default) or, with "
                        "--no-safe-serialization, pickled .bin files")
    parser.add_argument("--cfg-options", nargs="+", action=CfgOptionsAction, metavar="KEY=VALUE",
                        help="override config keys, as for `xtuner train`")
    parser.add_argument("--save-format", choices=["xtuner", "huggingface"], default=None,
                        help="LLaVA models only: 'xtuner' (default; v0's folders: projector/, "
                        "llm_adapter/ or the LLM, visual_encoder/..., read by `xtuner chat "
                        "--llava`) or 'huggingface' (LlavaForConditionalGeneration + processor, "
                        "adapters merged)")
    parser.add_argument("--no-verify", dest="verify", action="store_false",
                        help="skip the logits parity check of the written model")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace SAVE_DIR if it exists and is not empty")
    add_trust_remote_code_argument(parser, "the config's model folder's", config=True)
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="unpickle any object in PTH (torch.load weights_only=False); "
                        "needed only for checkpoints not written by xtuner")
    return parser.parse_args(argv)


def _export_dtype(args, cfg):
    import torch

    from xtuner.model.export import config_dtype, parse_dtype

    if args.fp32:
        if args.dtype not in ("auto", "fp32"):
            from xtuner.utils.errors import UsageError

            raise UsageError(f"--fp32 contradicts --dtype {args.dtype}")
        return torch.float32
    if args.dtype != "auto":
        return parse_dtype(args.dtype)
    return torch.bfloat16 if config_dtype(cfg) == torch.bfloat16 else torch.float16


def _compute_dtype(llm):
    """The dtype the parity forwards run in: fp32, or a 4-bit model's compute dtype."""
    import torch

    from xtuner.model.utils import is_quantized, normalize_dtype

    if not is_quantized(llm):
        return torch.float32
    quant = getattr(llm.config, "quantization_config", None)
    value = (quant.get("bnb_4bit_compute_dtype") if isinstance(quant, dict)
             else getattr(quant, "bnb_4bit_compute_dtype", None))
    value = normalize_dtype(value)
    return value if isinstance(value, torch.dtype) else torch.float16


def _write_config(source: Path, cfg, cfg_options, target: Path) -> None:
    from xtuner.engine.config import make_dumpable

    text = source.read_text(encoding="utf-8")
    if cfg_options or "read_base" in text or "_base_" in text:
        # Inherited or overridden values: write the resolved config as one file.
        make_dumpable(copy.deepcopy(cfg)).dump(str(target))
    else:
        shutil.copyfile(source, target)


def _is_sequence_classifier(llm) -> bool:
    """``llm`` (or its base model under peft) is a ``*ForSequenceClassification`` model: a
    reward model's, exported for ``AutoModelForSequenceClassification``."""
    base = llm.get_base_model() if hasattr(llm, "get_base_model") else llm
    return type(base).__name__.endswith("ForSequenceClassification")


def _load_written(save_dir: Path, use_lora: bool, llm_cfg, vocab_size: int, compute_dtype,
                  sequence_classifier: bool = False):
    import torch

    from xtuner.model.export import build_base_llm
    from xtuner.model.utils import is_quantized

    trust = bool(llm_cfg.get("trust_remote_code", False)) if isinstance(llm_cfg, dict) else False
    if not use_lora:
        from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

        auto = AutoModelForSequenceClassification if sequence_classifier else AutoModelForCausalLM
        return auto.from_pretrained(str(save_dir), dtype=compute_dtype, trust_remote_code=trust)
    from peft import PeftModel

    base = build_base_llm(llm_cfg)
    if not is_quantized(base):
        base = base.to(torch.float32)
    if base.get_input_embeddings().weight.shape[0] != vocab_size:
        base.resize_token_embeddings(vocab_size)  # as training did for a larger tokenizer
    return PeftModel.from_pretrained(base, str(save_dir))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from xtuner.engine.config import load_config, merge_cfg_options
    from xtuner.utils.errors import CheckpointError
    from xtuner.utils.paths import check_output_location, resolve_config

    config_path = resolve_config(args.config)
    check_output_location(args.save_dir, {"PTH": args.pth, "the config": config_path})
    pth = Path(args.pth).expanduser()
    if not pth.exists():
        raise CheckpointError(f"checkpoint not found: {pth}")
    _check_checkpoint_file(pth)
    cfg = load_config(config_path)
    notes = merge_cfg_options(cfg, args.cfg_options)
    from xtuner.utils.remote_code import remote_code_errors, set_trust_remote_code

    set_trust_remote_code(cfg, args.trust_remote_code)
    with remote_code_errors(f"the model of {config_path.name}", CONFIG_HINT):
        return _convert(args, cfg, config_path, notes, pth)


def _check_checkpoint_file(pth: Path) -> None:
    """Refuse a PTH file that ``torch.save`` cannot have written (a config, a log...) before
    ``torch.load`` does: its refusal advises ``weights_only=False``, which for a file that is
    no checkpoint at all is wrong, and unsafe for one from elsewhere."""
    import zipfile

    from xtuner.utils.errors import CheckpointError

    if pth.is_dir():
        return  # a DeepSpeed checkpoint folder: checked where it is read
    with pth.open("rb") as f:
        legacy_pickle = f.read(1) == b"\x80"  # torch.save's pre-1.6 format: a pickle
    if not legacy_pickle and not zipfile.is_zipfile(pth):
        raise CheckpointError(f"PTH {pth} is not a PyTorch checkpoint; pass an iter_N.pth file "
                              "or DeepSpeed checkpoint folder from the config's work_dirs/")


def _note_unapplied(args, what: str, sharded: bool, safetensors_only: bool) -> None:
    """Say which of ``--max-shard-size`` and ``--no-safe-serialization`` the writer of
    ``what`` does not apply, so that no setting given is silently ignored."""
    if args.max_shard_size is not None and not sharded:
        print(f"note: --max-shard-size does not apply to {what}: its weights are written "
              "unsharded")
    if not args.safe_serialization and safetensors_only:
        print(f"note: --no-safe-serialization does not apply to {what}: it is written as "
              "safetensors")


def _convert(args, cfg, config_path: Path, notes: list[str], pth: Path) -> int:
    from xtuner.model.export import (
        build_model,
        check_output_dir,
        load_into_model,
        load_training_checkpoint,
    )

    for note in notes:
        print(f"note: {note}")
    save_dir = check_output_dir(args.save_dir, args.overwrite)
    dtype = _export_dtype(args, cfg)

    print(f"Loading checkpoint {pth}")
    state = load_training_checkpoint(pth, trust=args.trust_checkpoint)
    model = build_model(cfg)
    load_into_model(model, state, source=str(pth), config=config_path.name)
    del state
    # The trained model travels in a one-item list that only _write_checked empties, so no
    # frame keeps it alive while the written model is loaded for the parity check.
    holder = [model]
    del model
    from xtuner.model import LLaVAModel
    from xtuner.model.image_text import ImageTextFinetune

    if isinstance(holder[0], LLaVAModel):
        return _convert_llava(args, cfg, config_path, holder, save_dir, dtype)
    if isinstance(holder[0], ImageTextFinetune):
        return _convert_image_text(args, cfg, config_path, holder, save_dir, dtype)
    if args.save_format is not None:
        from xtuner.utils.errors import UsageError

        raise UsageError(f"--save-format is for LLaVA models; {config_path.name} trains "
                         f"{type(holder[0]).__name__}, which is written as a Hugging Face "
                         "model or adapter: drop --save-format")
    return _convert_text(args, cfg, config_path, holder, save_dir, dtype)


def _write_checked(args, cfg, config_path: Path, save_dir: Path, holder: list, write,
                   verify=None) -> list[str]:
    """Write the trained model into ``save_dir`` with its config, and with ``verify`` check
    the written folder before ``save_dir`` appears; the written file names.

    Args:
        holder: a one-item list with the trained model, taken out here: once ``write`` has
            returned nothing keeps the model, and it is freed before ``verify`` loads the
            written one (two models at once would double the memory a conversion needs).
        write: ``write(model, folder)``.
        verify: ``verify(folder)``: loads the written model, compares it with the reference
            and prints the result; raises when they differ (nothing is written then).
    """
    from xtuner.model.export import atomic_output_dir, free

    with atomic_output_dir(save_dir, args.overwrite) as tmp:
        write(holder.pop(), tmp)
        _write_config(config_path, cfg, args.cfg_options, tmp / "xtuner_config.py")
        if verify is not None:
            free()
            verify(tmp)
        return sorted(p.name for p in tmp.iterdir())


def _convert_text(args, cfg, config_path: Path, holder: list, save_dir: Path, dtype) -> int:
    """A causal LM (full, or a PEFT adapter) or a reward model: write it, and compare the
    written model's logits (a reward model's scores) with the trained model's."""
    from xtuner.model.export import (
        check_finite,
        compare_logits,
        compute_logits,
        dtype_name,
        exported_parameters,
        max_abs_diff,
        parity_inputs,
        round_to_dtype_,
    )
    from xtuner.model.utils import build_from_cfg, is_quantized

    model = holder[0]
    quantized = is_quantized(model.llm)
    # A reward model is written whole: its to_hf merges LoRA into a sequence-classification
    # model (QLoRA: refused there), which plain transformers loads by itself.
    reward = _is_sequence_classifier(model.llm)
    use_lora = bool(getattr(model, "use_lora", False)) and not reward
    compute_dtype = _compute_dtype(model.llm)
    vocab_size = model.llm.get_input_embeddings().weight.shape[0]
    verify = None
    if args.verify:
        if not quantized:
            model.float()  # compare in fp32: the check then sees only what was written
        tokenizer = build_from_cfg(cfg.tokenizer) if cfg.get("tokenizer") else None
        inputs = parity_inputs(tokenizer, vocab_size)
        if reward:
            inputs = _ending_with_reward_token(inputs, model, cfg)
        # For a reward model these are the pooled scores: the score head at the last token.
        exact = compute_logits(model.llm, inputs)
        if reward and getattr(model, "use_lora", False) and not quantized:
            # What to_hf writes: the adapters merged (then rounded to the written dtype).
            model.llm, model.use_lora = model.llm.merge_and_unload(), False
        # The source at the precision that will be written: the check stays tight in fp16.
        round_to_dtype_(exported_parameters(model), dtype)
        reference = compute_logits(model.llm, inputs)
        check_finite(reference, dtype)
        rounding = max_abs_diff(exact, reference)
        del exact
        checked = "adapter" if use_lora else "reward model" if reward else "model"

        def verify(folder: Path) -> None:
            written = _load_written(folder, use_lora, cfg.model.llm, vocab_size, compute_dtype,
                                    sequence_classifier=reward)
            got = compute_logits(written, inputs)
            del written
            diff = compare_logits(reference, got, compute_dtype, what=f"the written {checked}")
            print(f"Parity check passed: max |logits difference| {diff:.3g} over {len(inputs)} "
                  f"prompts ({dtype_name(compute_dtype)} compute); rounding the weights to "
                  f"{dtype_name(dtype)} moved the logits by up to {rounding:.3g}")
    del model
    _note_unapplied(args, "a PEFT adapter", sharded=not use_lora, safetensors_only=False)
    kwargs = dict(max_shard_size=args.max_shard_size or DEFAULT_SHARD_SIZE,
                  safe_serialization=args.safe_serialization)
    files = _write_checked(
        args, cfg, config_path, save_dir, holder, verify=verify,
        write=lambda model, folder: model.to_hf(cfg, folder, dtype=dtype,
                                                save_pretrained_kwargs=kwargs))
    what = ("PEFT adapter" if use_lora else
            "reward model (AutoModelForSequenceClassification)" if reward else "model")
    print(f"Saved the {what} ({dtype_name(dtype)}) to {save_dir}: {', '.join(files)}")
    return 0


def _ending_with_reward_token(inputs, model, cfg):
    """The parity prompts, each ending with the reward token (where a reward model's score is
    read, and the last non-pad token transformers pools), when the model or config names
    one."""
    import torch

    token = getattr(model, "reward_token_id", None)
    if token is None:
        token = cfg.get("reward_token_id")
    if token is None or token < 0:
        return inputs
    return [torch.cat([ids, torch.tensor([token], dtype=ids.dtype)]) for ids in inputs]


def _gradient_image():
    """The parity checks' image: a 64x64 colour gradient made in code."""
    import numpy as np
    from PIL import Image

    ramp = np.linspace(0, 255, 64, dtype=np.uint8)
    return Image.fromarray(np.stack([np.tile(ramp, (64, 1)), np.tile(ramp[:, None], (1, 64)),
                                     np.full((64, 64), 128, np.uint8)], -1))


def _llava_parity_sample(cfg):
    """A fixed prompt with one image (a colour gradient): ``(prompt text, PIL image, ids with
    the image placeholder, the config's image processor)``."""
    from xtuner.chat.multimodal import ImageTokenizer
    from xtuner.model.llava_hf import _image_processor_cfg
    from xtuner.model.utils import build_from_cfg

    image = _gradient_image()
    prompt = "USER: <image>\nWhat is in the picture? ASSISTANT:"
    tokenizer = build_from_cfg(cfg.tokenizer)
    processor = build_from_cfg(_image_processor_cfg(cfg))
    return prompt, image, ImageTokenizer(tokenizer).encode(prompt), processor


def _image_text_parity_inputs(processor) -> list[dict]:
    """A chat with an image (a gradient made in code) and one without, as the processor
    turns them into model inputs."""
    image = _gradient_image()
    chats = [([{"type": "image"}, {"type": "text", "text": "What is in the picture?"}], [image]),
             ([{"type": "text", "text": "Name three colours."}], None)]
    inputs = []
    for content, images in chats:
        text = processor.apply_chat_template([{"role": "user", "content": content}],
                                             add_generation_prompt=True, tokenize=False)
        inputs.append(dict(processor(text=[text], images=images, return_tensors="pt")))
    return inputs


def _image_text_logits(model, inputs: list[dict]) -> list:
    import torch

    model.eval()
    with torch.no_grad():
        return [model(**batch, use_cache=False).logits[0].float() for batch in inputs]


def _convert_image_text(args, cfg, config_path: Path, holder: list, save_dir: Path,
                        dtype) -> int:
    """Image-text models: write the model (adapters merged) with its processor, and compare
    the written model's logits, loaded by plain ``AutoModelForImageTextToText``, with the
    trained model's on a chat with an image and one without."""
    import torch
    from transformers import AutoModelForImageTextToText

    from xtuner.dataset.image_text import load_processor
    from xtuner.model.export import compare_logits, dtype_name, round_to_dtype_

    if args.save_format is not None:
        from xtuner.utils.errors import UsageError

        raise UsageError(f"--save-format is for LLaVA models; {config_path.name} trains an "
                         "image-text model, written as one Hugging Face folder: drop "
                         "--save-format")
    _note_unapplied(args, "an image-text model", sharded=True, safetensors_only=True)
    verify = None
    if args.verify:
        inputs = _image_text_parity_inputs(load_processor(holder[0].processor_path))
        # The source as written: adapters merged, rounded to the written dtype, run in fp32.
        source = holder[0].plain_model(torch.float32)
        round_to_dtype_(list(source.parameters()), dtype)
        reference = _image_text_logits(source, inputs)
        del source

        def verify(folder: Path) -> None:
            written = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32)
            got = _image_text_logits(written, inputs)
            del written
            diff = compare_logits(reference, got, torch.float32,
                                  what="the written image-text model")
            print(f"Parity check passed on a chat with an image and one without: max |logits "
                  f"difference| {diff:.3g} ({dtype_name(dtype)} weights)")
    files = _write_checked(
        args, cfg, config_path, save_dir, holder, verify=verify,
        write=lambda model, folder: model.to_hf(
            cfg, folder, dtype=dtype,
            save_pretrained_kwargs=dict(max_shard_size=args.max_shard_size
                                        or DEFAULT_SHARD_SIZE)))
    print(f"Saved the image-text model ({dtype_name(dtype)}) and its processor to {save_dir}: "
          f"{', '.join(files)}")
    return 0


def _convert_llava(args, cfg, config_path: Path, holder: list, save_dir: Path, dtype) -> int:
    """LLaVA: write ``--save-format`` (xtuner or huggingface) and compare the written
    model's logits on a real image with the trained model's."""
    import torch

    from xtuner.model.export import compare_logits, dtype_name, round_to_dtype_
    from xtuner.model.llava_hf import plain_llm, save_llava
    from xtuner.model.utils import is_quantized

    save_format = args.save_format or "xtuner"
    _note_unapplied(args, "a LLaVA folder", sharded=False, safetensors_only=True)
    verify = None
    if args.verify:
        model = holder[0]
        prompt, image, ids, processor = _llava_parity_sample(cfg)
        pixels = processor(images=[image], return_tensors="pt")["pixel_values"]
        if is_quantized(model.llm):  # written as its 16-bit base with the adapters merged
            model.llm = plain_llm(model, cfg.model.llm, torch.float32)
            model.use_lora = False
        model.float()
        round_to_dtype_([p for p in model.parameters() if p.is_floating_point()], dtype)
        with torch.no_grad():
            reference = model({"input_ids": torch.tensor([ids]), "pixel_values": pixels},
                              mode="predict")[0]["logits"]
        del model

        def verify(folder: Path) -> None:
            got = _written_llava_logits(folder, save_format, cfg, prompt, image, ids, pixels)
            diff = compare_logits([reference], [got[..., :reference.shape[-1]]], torch.float32,
                                  what=f"the written LLaVA model ({save_format} format)")
            print(f"Parity check passed on an image: max |logits difference| {diff:.3g} "
                  f"({dtype_name(dtype)} weights)")
    files = _write_checked(
        args, cfg, config_path, save_dir, holder, verify=verify,
        write=lambda model, folder: save_llava(model, cfg, folder, save_format, dtype))
    print(f"Saved the LLaVA model ({save_format} format, {dtype_name(dtype)}) to {save_dir}: "
          f"{', '.join(files)}")
    return 0


def _written_llava_logits(folder: Path, save_format: str, cfg, prompt, image, ids, pixels):
    """The logits of the written LLaVA folder on the parity sample (fp32)."""
    import torch

    if save_format == "huggingface":
        from transformers import AutoProcessor, LlavaForConditionalGeneration

        model = LlavaForConditionalGeneration.from_pretrained(str(folder), dtype=torch.float32)
        inputs = AutoProcessor.from_pretrained(str(folder))(images=[image], text=prompt,
                                                             return_tensors="pt")
        with torch.no_grad():
            return model(**inputs).logits[0]
    from xtuner.chat.multimodal import load_llava
    from xtuner.model.export import build_base_llm

    if (folder / "config.json").is_file():  # the LLM trained fully: written at the top
        from transformers import AutoModelForCausalLM

        llm = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    else:
        llm = build_base_llm(cfg.model.llm).float()
        if (folder / "llm_adapter").is_dir():
            from peft import PeftModel

            llm = PeftModel.from_pretrained(llm, str(folder / "llm_adapter"))
    tower = cfg.model.visual_encoder.get("pretrained_model_name_or_path")
    model, _ = load_llava(llm, str(folder), tower, cfg.model.get("visual_select_layer", -2),
                          dtype=torch.float32)
    with torch.no_grad():
        return model({"input_ids": torch.tensor([ids]), "pixel_values": pixels},
                     mode="predict")[0]["logits"]


if __name__ == "__main__":
    sys.exit(run_main(main, prog="xtuner convert pth_to_hf"))
