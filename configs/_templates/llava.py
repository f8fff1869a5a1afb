"""Render one LLaVA catalog leaf (pre-training or instruction tuning) into a v0-style config.

A LLaVA leaf (``configs/llava/<llm>_<tower>/<name>.py``) names three bases: an LLM family model
(``_base_/models/``, the same files the SFT catalog uses), a vision tower (``_base_/vision/``)
and a stage (``_base_/llava/pretrain.py`` or ``finetune.py``, which bring the schedule and
runtime and set ``config_template = 'llava'``); a fine-tune leaf also sets ``pretrained_pth``.
:func:`render` writes v0's five sections (Settings, Model & Tokenizer & Image Processor,
Dataset & Dataloader, Scheduler & Optimizer, Runtime) whose dicts refer to the Settings.

The values the template reads, by the base that sets them:

* model (``_base_/models/``): ``model_title``, ``pretrained_model_name_or_path``,
  ``prompt_template``, ``template_note``, ``trust_remote_code``, ``use_varlen_attn``
  (+ ``varlen_note``), ``lora_target_modules``, ``llm_kwargs`` (+ ``llm_kwargs_note``),
  ``model_notes``;
* vision (``_base_/vision/``): ``vision_title``, ``visual_encoder_name_or_path``,
  ``visual_encoder_type`` and ``image_processor_type`` (transformers class names),
  ``image_tokens`` (features per image), ``drop_cls_token``;
* stage (``_base_/llava/``): ``stage`` (``'pretrain'``/``'finetune'``), ``stage_title``,
  ``context_length``, ``data_path``, ``image_folder``, ``pad_image_to_square``,
  ``pack_to_max_length``, ``freeze_llm``, ``freeze_visual_encoder``, ``llm_lora`` and
  ``visual_encoder_lora`` (LoraConfig arguments; unset: none), ``quantization_config``
  (BitsAndBytesConfig arguments; unset: a bf16 LLM), ``evaluation_inputs``,
  ``evaluation_freq``, plus ``lr``, ``batch_size``, ``accumulative_counts``, ``max_epochs``,
  ``dataloader_num_workers`` over the schedule's;
* leaf: ``pretrained_pth`` (fine-tuning: the pre-training run's checkpoint);
* schedule and runtime: as for ``sft.py`` (``optim_type``, ``betas``, ``weight_decay``,
  ``max_norm``, ``warmup_ratio``, ``save_steps``, ``save_total_limit``, ``log_interval``,
  ``randomness``, ``config_template``, ``launch``).
"""
from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path


def _sft():
    """The SFT template's helpers (banners, comments, literals), shared rather than copied."""
    spec = importlib.util.spec_from_file_location("xtuner_config_template_sft_helpers",
                                                  Path(__file__).with_name("sft.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_S = _sft()
REQUIRED = (
    "model_title", "pretrained_model_name_or_path", "prompt_template", "trust_remote_code",
    "use_varlen_attn", "lora_target_modules", "vision_title", "visual_encoder_name_or_path",
    "visual_encoder_type", "image_processor_type", "image_tokens", "drop_cls_token", "stage",
    "stage_title", "context_length", "data_path", "image_folder", "pad_image_to_square",
    "pack_to_max_length", "freeze_llm", "freeze_visual_encoder", "evaluation_inputs",
    "evaluation_freq", "launch", "lr", "batch_size", "accumulative_counts", "max_epochs",
    "dataloader_num_workers", "optim_type", "betas", "weight_decay", "max_norm", "warmup_ratio",
    "save_steps", "save_total_limit", "log_interval", "randomness",
)
OPTIONAL = ("config_template", "template_note", "varlen_note", "llm_kwargs", "llm_kwargs_note",
            "model_notes", "llm_lora", "visual_encoder_lora", "quantization_config",
            "pretrained_pth")


def _imports(p: Mapping) -> str:
    transformers = sorted(["AutoModelForCausalLM", "AutoTokenizer", p["visual_encoder_type"],
                           p["image_processor_type"]]
                          + (["BitsAndBytesConfig"] if p.get("quantization_config") else []))
    lines = [
        "import torch",
        *_S.MMENGINE_IMPORTS,
    ]
    if p.get("llm_lora") or p.get("visual_encoder_lora"):
        lines.append("from peft import LoraConfig")
    lines += [
        f"from torch.optim import {p['optim_type']}",
        "from transformers import (\n" + "".join(f"    {n},\n" for n in transformers) + ")",
        "",
        "from xtuner.dataset import LLaVADataset",
        "from xtuner.dataset.collate_fns import default_collate_fn",
        "from xtuner.dataset.map_fns import llava_map_fn, template_map_fn_factory",
    ]
    if p["stage"] == "finetune":
        lines.append("from xtuner.dataset.samplers import LengthGroupedSampler")
    lines += [
        "from xtuner.engine.hooks import DatasetInfoHook, EvaluateChatHook, ThroughputHook",
        "from xtuner.engine.runner import TrainLoop",
        "from xtuner.model import LLaVAModel",
        "from xtuner.utils import PROMPT_TEMPLATE",
    ]
    return "\n".join(lines)


def _header(p: Mapping, name: str, source: str) -> list[str]:
    what = "the catalog entry" if source.startswith("configs/") else "the config"
    epochs = f"{p['max_epochs']} epoch{'s' if p['max_epochs'] != 1 else ''}"
    lines = [
        _S._comment(f"LLaVA {p['stage_title']}: {p['model_title']} "
                    f"({p['pretrained_model_name_or_path']}) with {p['vision_title']} "
                    f"({p['visual_encoder_name_or_path']}), {epochs}."),
        f"#     {p['launch'].format(name=name)}",
    ]
    if p["stage"] == "pretrain":
        lines.append(_S._comment(
            "Stage 1 of 2. The fine-tune stage of the same LLM and tower starts from this run's "
            "last checkpoint (`pretrained_pth`; `work_dirs/<this name>/last_checkpoint` names "
            "it)."))
    else:
        lines.append(_S._comment(
            "Stage 2 of 2: `pretrained_pth` is the last checkpoint of the pre-training stage "
            "(its work dir's `last_checkpoint` names it; v0's 8-GPU run ended at iter_2181)."))
    lines += [_S._comment(note.rstrip(".") + ".") for note in p.get("model_notes") or ()]
    lines += [
        "# Data: LLaVA JSON/JSONL records, image paths relative to `image_folder`:",
        '#     {"id": "1", "image": "a.jpg", "conversations": [{"from": "human", "value":',
        '#      "<image>\\nWhat is this?"}, {"from": "gpt", "value": "A cat."}]}',
        _S._comment(f"Rendered from {what} '{name}' ({source}) by configs/_templates/llava.py."),
        "# Every value in PART 1 reaches each dict below that uses it: edit it there.",
    ]
    return lines


def _settings(p: Mapping) -> list[str]:
    lines = [
        "# Model",
        f"llm_name_or_path = {p['pretrained_model_name_or_path']!r}",
        f"visual_encoder_name_or_path = {p['visual_encoder_name_or_path']!r}",
    ]
    if p["stage"] == "finetune":
        lines += ["# The pre-training stage's last checkpoint (the projector it trained)",
                  f"pretrained_pth = {p.get('pretrained_pth')!r}"]
        if len(lines[-1]) > 100:
            lines[-1] += "  # noqa: E501"
    if p["use_varlen_attn"]:
        lines.append("use_varlen_attn = True  # samples of a batch never attend to each other")
    else:
        lines += [_S._comment(p.get("varlen_note") or "varlen attention is off"),
                  "use_varlen_attn = False"]
    lines += ["", "# Data", f"data_path = {p['data_path']!r}",
              f"image_folder = {p['image_folder']!r}"]
    if p.get("template_note"):
        lines.append(_S._comment(p["template_note"]))
    drop = ", class token dropped" if p["drop_cls_token"] else ""
    lines += [
        f"prompt_template = PROMPT_TEMPLATE.{p['prompt_template']}",
        f"image_tokens = {p['image_tokens']!r}  # features per image ({p['vision_title']}{drop})",
        (f"max_length = int({p['context_length']!r} - image_tokens)  # text tokens per sample: "
         "the context minus one image (v0)"),
        f"pad_image_to_square = {p['pad_image_to_square']!r}",
    ]
    if p["stage"] == "finetune":
        lines += [
            "# True: rows of max_length + image_tokens tokens packed with whole samples, varlen",
            "# attention (faster, nothing padded); False: v0's batches of samples grouped by",
            "# modality_length (LengthGroupedSampler).",
        ]
    else:
        lines.append("# True: pack captions into rows of max_length + image_tokens tokens")
    lines.append(f"pack_to_max_length = {p['pack_to_max_length']!r}")
    lines += [
        "",
        *_S.schedule_settings(p),
        "",
        "# Evaluate the generation performance during the training",
        f"evaluation_freq = {p['evaluation_freq']!r}",
        "SYSTEM = ''",
        "# A local image every evaluation prompt asks about (None: text-only prompts); v0 used",
        "# https://llava-vl.github.io/static/images/view.jpg (download it first).",
        "evaluation_images = None",
        "evaluation_inputs = [",
        *(f"    {text!r}," for text in p["evaluation_inputs"]),
        "]",
    ]
    return lines


def _lora(lora: Mapping, targets, indent: str = "    ") -> list[str]:
    lines = [f"{indent}type=LoraConfig,"]
    lora = dict(lora)
    task_type = lora.pop("task_type", None)
    lines += [f"{indent}{key}={_S._literal(value)}," for key, value in lora.items()]
    if targets is not _NO_TARGETS:
        why = "  # None: every linear layer except the output head" if targets is None else ""
        lines.append(f"{indent}target_modules={_S._literal(targets)},{why}")
    if task_type:
        lines.append(f"{indent}task_type={task_type!r},")
    return lines


_NO_TARGETS = object()


def _model(p: Mapping) -> list[str]:
    remote = ["        trust_remote_code=True,"] if p["trust_remote_code"] else []
    llm = ["        type=AutoModelForCausalLM.from_pretrained,",
           "        pretrained_model_name_or_path=llm_name_or_path,", *remote,
           *_S.llm_tail(p)]
    cls = ("  # the tower's class token is not an image patch" if p["drop_cls_token"]
           else "  # no class token to drop")
    lines = ["model = dict(", "    type=LLaVAModel,",
             f"    freeze_llm={p['freeze_llm']!r},",
             f"    freeze_visual_encoder={p['freeze_visual_encoder']!r},"]
    if p["stage"] == "finetune":
        lines.append("    pretrained_pth=pretrained_pth,")
    lines += ["    use_varlen_attn=use_varlen_attn,",
              f"    drop_cls_token={p['drop_cls_token']!r},{cls}",
              "    llm=dict(", *llm, "    ),"]
    if p.get("llm_lora"):
        lines += ["    llm_lora=dict(", *_lora(p["llm_lora"], p["lora_target_modules"],
                                             "        "), "    ),"]
    lines += ["    visual_encoder=dict(",
              f"        type={p['visual_encoder_type']}.from_pretrained,",
              "        pretrained_model_name_or_path=visual_encoder_name_or_path,", "    ),"]
    if p.get("visual_encoder_lora"):
        lines += ["    visual_encoder_lora=dict(",
                  *_lora(p["visual_encoder_lora"], _NO_TARGETS, "        "), "    ),"]
    lines.append(")")
    return lines


def _sampler(p: Mapping) -> str:
    if p["stage"] != "finetune":
        return "    sampler=dict(type=DefaultSampler, shuffle=True),"
    return ("    sampler=dict(type=DefaultSampler, shuffle=True) if pack_to_max_length else dict(\n"
            "        type=LengthGroupedSampler,\n"
            "        length_property='modality_length',\n"
            "        per_device_batch_size=batch_size * accumulative_counts,\n"
            "    ),")


def render(p: Mapping, name: str, source: str = "") -> str:
    """The text of the config that the LLaVA catalog leaf ``name`` (values ``p``) runs.

    Args:
        p: The leaf's merged values (its bases' and its own).
        name: The catalog name, for the header and the launch line.
        source: Where the leaf lives, for the header (``configs/...`` for a catalog entry).

    Raises:
        KeyError: a value the template needs is set by no base, or a fine-tune leaf sets no
            ``pretrained_pth``.
    """
    missing = [key for key in REQUIRED if key not in p]
    if p.get("stage") == "finetune" and not p.get("pretrained_pth"):
        missing.append("pretrained_pth")
    if missing:
        raise KeyError(f"the catalog leaf sets no {', '.join(missing)} "
                       "(configs/_templates/llava.py lists what each base provides)")
    remote = "    trust_remote_code=True,\n" if p["trust_remote_code"] else ""
    nl = "\n"
    return f"""\
{nl.join(_header(p, name, source))}
{_imports(p)}

{_S._banner("PART 1  Settings")}
{nl.join(_settings(p))}

{_S._banner("PART 2  Model & Tokenizer & Image Processor")}
tokenizer = dict(
    type=AutoTokenizer.from_pretrained,
    pretrained_model_name_or_path=llm_name_or_path,
{remote}    padding_side='right',
)

image_processor = dict(
    type={p["image_processor_type"]}.from_pretrained,
    pretrained_model_name_or_path=visual_encoder_name_or_path,
)

{nl.join(_model(p))}

{_S._banner("PART 3  Dataset & Dataloader")}
llava_dataset = dict(
    type=LLaVADataset,
    data_path=data_path,
    image_folder=image_folder,
    tokenizer=tokenizer,
    image_processor=image_processor,
    dataset_map_fn=llava_map_fn,
    template_map_fn=dict(type=template_map_fn_factory, template=prompt_template),
    max_length=max_length,
    pad_image_to_square=pad_image_to_square,
    pack_to_max_length=pack_to_max_length,
    image_tokens=image_tokens,
)

train_dataloader = dict(
    batch_size=batch_size,
    num_workers=dataloader_num_workers,
    pin_memory=True,
    dataset=llava_dataset,
{_sampler(p)}
    collate_fn=dict(type=default_collate_fn, use_varlen_attn=use_varlen_attn),
)

{_S._banner("PART 4  Scheduler & Optimizer")}
# bf16 autocast on CUDA; on a machine without CUDA training runs in float32.
{_S.schedule_text()}
{_S._banner("PART 5  Runtime")}
# Log a sample and chat replies to `evaluation_inputs` every `evaluation_freq` iterations.
custom_hooks = [
    dict(type=DatasetInfoHook, tokenizer=tokenizer),
    dict(
        type=EvaluateChatHook,
        tokenizer=tokenizer,
        image_processor=image_processor if evaluation_images else None,
        every_n_iters=evaluation_freq,
        evaluation_inputs=evaluation_inputs,
        evaluation_images=evaluation_images,
        system=SYSTEM,
        prompt_template=prompt_template,
    ),
    dict(type=ThroughputHook),
]

{_S.runtime_text(p)}"""
