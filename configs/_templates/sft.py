"""Render one catalog leaf (supervised fine-tuning) into a self-contained v0-style config.

A catalog leaf (``configs/<family>/<model>/<name>.py``) is an mmengine ``_base_`` config holding
values only: the model family, dataset, method, schedule and runtime bases under
``configs/_base_/`` plus whatever the leaf changes. ``xtuner train`` / ``copy-cfg`` call
:func:`render` with those merged values, and the text below is what runs: v0's five sections,
where every dict refers to the Settings in PART 1 (so editing a Settings line of a copy, or
``--cfg-options max_epochs=1``, reaches every dict that uses it).

The values the template reads, by the base that sets them:

* model (``_base_/models/``): ``model_title``, ``pretrained_model_name_or_path``,
  ``prompt_template`` (a ``PROMPT_TEMPLATE`` name), ``template_note``, ``trust_remote_code``,
  ``use_varlen_attn`` (+ ``varlen_note`` when off), ``lora_target_modules``, ``llm_kwargs``
  (+ ``llm_kwargs_note``), ``model_notes``;
* dataset (``_base_/datasets/``): ``dataset_title``, ``data_path``, ``data_files`` (True: a local
  JSON/JSONL file, False: a Hub dataset id), ``data_format_doc``, ``dataset_map_fn`` (an
  ``xtuner.dataset.map_fns`` name), ``use_prompt_template``, ``max_length``,
  ``pack_to_max_length``, ``max_epochs``, ``system_template`` (a ``SYSTEM_TEMPLATE`` name or
  None), ``evaluation_inputs``, ``evaluation_freq``;
* method (``_base_/methods/``): ``method_title``, ``launch``, ``lr``, ``lora`` (LoraConfig
  arguments; unset: no adapters), ``quantization_config`` (BitsAndBytesConfig arguments;
  unset: no quantization);
* schedule (``_base_/schedules/``): ``optim_type``, ``betas``, ``weight_decay``, ``max_norm``,
  ``warmup_ratio``, ``batch_size``, ``accumulative_counts``, ``dataloader_num_workers``;
* runtime (``_base_/default_runtime.py``): ``save_steps``, ``save_total_limit``,
  ``log_interval``, ``randomness``, ``config_template``.

``llava.py`` and ``preference.py`` reuse this file's helpers (``schedule_settings``,
``schedule_text``, ``runtime_text``, ``llm_tail``...), so the sections they share read the same.
This file imports nothing from xtuner and is not a config itself (its name starts with ``_``,
so ``xtuner list-cfg`` skips its folder).
"""
from __future__ import annotations

from collections.abc import Mapping

REQUIRED = (
    "model_title", "pretrained_model_name_or_path", "prompt_template", "trust_remote_code",
    "use_varlen_attn", "lora_target_modules", "dataset_title", "data_path", "data_files",
    "dataset_map_fn", "use_prompt_template", "max_length", "pack_to_max_length", "max_epochs",
    "system_template", "evaluation_inputs", "evaluation_freq", "method_title", "launch", "lr",
    "optim_type", "betas", "weight_decay", "max_norm",
    "warmup_ratio", "batch_size", "accumulative_counts", "dataloader_num_workers",
    "save_steps", "save_total_limit", "log_interval", "randomness",
)
# Values a leaf may set but need not. ``lora`` and ``quantization_config`` are left out rather than
# set to None where unused: mmengine cannot merge a leaf's dict into a base's None.
OPTIONAL = ("config_template", "template_note", "varlen_note", "llm_kwargs", "llm_kwargs_note",
            "model_notes", "data_format_doc", "lora", "quantization_config")
_BANNER = "#" * 71
# Keys of ``quantization_config`` whose values name a torch dtype (written as ``torch.NAME``).
_DTYPE_KEYS = ("bnb_4bit_compute_dtype", "bnb_4bit_quant_storage")


def _banner(title: str) -> str:
    return f"{_BANNER}\n#{title:^69}#\n{_BANNER}"


def _comment(text: str, indent: str = "", width: int = 96) -> str:
    """Wrap ``text`` into ``# ...`` lines."""
    out, line = [], ""
    for word in text.split():
        if line and len(indent) + 2 + len(line) + 1 + len(word) > width:
            out.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    out.append(line)
    return "\n".join(f"{indent}# {chunk}" for chunk in out)


def _number(value: float) -> str:
    """``2e-4`` rather than ``0.0002`` for a learning rate, as people write it."""
    short = f"{value:.0e}".replace("e-0", "e-").replace("e+0", "e")
    return short if value and abs(value) < 1e-3 and float(short) == value else repr(value)


def _literal(value) -> str:
    """Python source for a plain value, in the configs' quoting style (single quotes)."""
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, Mapping):
        return "dict(" + ", ".join(f"{k}={_literal(v)}" for k, v in value.items()) + ")"
    if isinstance(value, list):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    if isinstance(value, tuple):
        return "(" + ", ".join(_literal(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    return repr(value)


def _imports(p: Mapping) -> str:
    """The import block, in the order ruff's isort wants."""
    transformers = ["AutoModelForCausalLM", "AutoTokenizer"]
    if p.get("quantization_config"):
        transformers.append("BitsAndBytesConfig")
    map_fns = [p["dataset_map_fn"]] + (["template_map_fn_factory"]
                                       if p["use_prompt_template"] else [])
    utils = (["PROMPT_TEMPLATE"] if p["use_prompt_template"] else []) + (
        ["SYSTEM_TEMPLATE"] if p["system_template"] else [])
    lines = [
        "import torch",
        "from datasets import load_dataset",
        *MMENGINE_IMPORTS,
    ]
    if p.get("lora"):
        lines.append("from peft import LoraConfig")
    lines += [
        f"from torch.optim import {p['optim_type']}",
        f"from transformers import {', '.join(transformers)}",
        "",
        "from xtuner.dataset import process_hf_dataset",
        "from xtuner.dataset.collate_fns import default_collate_fn",
        f"from xtuner.dataset.map_fns import {', '.join(map_fns)}",
        "from xtuner.engine.hooks import DatasetInfoHook, EvaluateChatHook, ThroughputHook",
        "from xtuner.engine.runner import TrainLoop",
        "from xtuner.model import SupervisedFinetune",
    ]
    if utils:
        lines.append(f"from xtuner.utils import {', '.join(utils)}")
    return "\n".join(lines)


def _header(p: Mapping, name: str, source: str) -> list[str]:
    what = "the catalog entry" if source.startswith("configs/") else "the config"
    epochs = f"{p['max_epochs']} epoch{'s' if p['max_epochs'] != 1 else ''}"
    lines = [
        _comment(f"{p['model_title']} ({p['pretrained_model_name_or_path']}), "
                 f"{p['method_title']}, on {p['dataset_title']}, {epochs}."),
        f"#     {p['launch'].format(name=name)}",
    ]
    lines += [_comment(note.rstrip(".") + ".") for note in p.get("model_notes") or ()]
    if p["data_files"] and p.get("data_format_doc"):
        lines.append("# Data format, one object per line (or a JSON list of them):")
        lines += [f"#     {line}" if line.startswith(("{", " ")) else f"# {line}"
                  for line in p["data_format_doc"]]
    lines += [
        _comment(f"Rendered from {what} '{name}' ({source}) by configs/_templates/sft.py."),
        "# Every value in PART 1 reaches each dict below that uses it: edit it there.",
    ]
    return lines


def schedule_settings(p: Mapping, batch_note: str = "per_device") -> list[str]:
    """The Settings of the schedule and checkpointing (shared by every template)."""
    accumulate = p["accumulative_counts"]
    return [
        "# Scheduler & Optimizer",
        f"batch_size = {p['batch_size']!r}  # {batch_note}",
        (f"accumulative_counts = {accumulate!r}  # bs = 1 GPU * {p['batch_size']} "
         f"batch_size_per_device * {accumulate} acc"),
        f"dataloader_num_workers = {p['dataloader_num_workers']!r}",
        f"max_epochs = {p['max_epochs']!r}",
        f"optim_type = {p['optim_type']}",
        f"lr = {_literal(p['lr'])}",
        f"betas = {_literal(tuple(p['betas']))}",
        f"weight_decay = {p['weight_decay']!r}",
        f"max_norm = {p['max_norm']!r}  # grad clip",
        f"warmup_ratio = {p['warmup_ratio']!r}",
        "",
        "# Save",
        f"save_steps = {p['save_steps']!r}",
        (f"save_total_limit = {p['save_total_limit']!r}  # Maximum checkpoints to keep "
         "(-1 means unlimited)"),
    ]


MMENGINE_IMPORTS = [
    "from mmengine.dataset import DefaultSampler",
    ("from mmengine.hooks import (\n    CheckpointHook,\n    DistSamplerSeedHook,\n"
     "    IterTimerHook,\n    LoggerHook,\n    ParamSchedulerHook,\n)"),
    "from mmengine.optim import AmpOptimWrapper, CosineAnnealingLR, LinearLR",
]


def _settings(p: Mapping) -> list[str]:
    lines = ["# Model", f"pretrained_model_name_or_path = {p['pretrained_model_name_or_path']!r}"]
    if p["use_varlen_attn"]:
        lines.append("use_varlen_attn = True  # packed samples never attend to each other")
    else:
        lines += [_comment(p.get("varlen_note") or "varlen attention is off"),
                  "use_varlen_attn = False"]
    lines += ["", "# Data"]
    where = ("your local file; see the format above" if p["data_files"]
             else "Hugging Face Hub dataset")
    lines.append(f"data_path = {p['data_path']!r}  # {where}")
    if p["use_prompt_template"]:
        if p.get("template_note"):
            lines.append(_comment(p["template_note"]))
        lines.append(f"prompt_template = PROMPT_TEMPLATE.{p['prompt_template']}")
    lines += [
        f"max_length = {p['max_length']!r}",
        f"pack_to_max_length = {p['pack_to_max_length']!r}",
        "",
        *schedule_settings(p),
        "",
        "# Evaluate the generation performance during the training",
        f"evaluation_freq = {p['evaluation_freq']!r}",
        "SYSTEM = " + (f"SYSTEM_TEMPLATE.{p['system_template']}" if p["system_template"]
                       else "''"),
        "evaluation_inputs = [",
        *(f"    {text!r}," for text in p["evaluation_inputs"]),
        "]",
    ]
    return lines


def llm_tail(p: Mapping) -> list[str]:
    """The LLM dict's lines after its path: dtype, the family's ``llm_kwargs`` and 4-bit
    quantization (shared by every template)."""
    llm = ["        dtype=torch.bfloat16,  # float32 on a machine without CUDA"]
    for key, value in (p.get("llm_kwargs") or {}).items():
        note = f"  # {p['llm_kwargs_note']}" if p.get("llm_kwargs_note") else ""
        llm.append(f"        {key}={_literal(value)},{note}")
    if p.get("quantization_config"):
        llm += ["        quantization_config=dict(", "            type=BitsAndBytesConfig,"]
        for key, value in p["quantization_config"].items():
            text = f"torch.{value}" if key in _DTYPE_KEYS else _literal(value)
            llm.append(f"            {key}={text},")
        llm.append("        ),")
    return llm


def _model(p: Mapping) -> list[str]:
    llm = [
        "        type=AutoModelForCausalLM.from_pretrained,",
        "        pretrained_model_name_or_path=pretrained_model_name_or_path,",
    ]
    if p["trust_remote_code"]:
        llm.append("        trust_remote_code=True,")
    llm += llm_tail(p)
    lines = ["model = dict(", "    type=SupervisedFinetune,", "    use_varlen_attn=use_varlen_attn,",
             "    llm=dict(", *llm, "    ),"]
    if p.get("lora"):
        lora = dict(p["lora"])
        task_type = lora.pop("task_type", "CAUSAL_LM")
        lines += ["    lora=dict(", "        type=LoraConfig,"]
        lines += [f"        {key}={_literal(value)}," for key, value in lora.items()]
        targets = p["lora_target_modules"]
        why = "  # None: every linear layer except the output head" if targets is None else ""
        lines += [f"        target_modules={_literal(targets)},{why}",
                  f"        task_type={task_type!r},", "    ),"]
    lines.append(")")
    return lines


def schedule_text() -> str:
    """PART 4's dicts (AdamW in bf16 autocast, warmup then cosine), built from the Settings;
    shared by every template."""
    return """\
optim_wrapper = dict(
    type=AmpOptimWrapper,
    optimizer=dict(type=optim_type, lr=lr, betas=betas, weight_decay=weight_decay),
    clip_grad=dict(max_norm=max_norm, error_if_nonfinite=False),
    accumulative_counts=accumulative_counts,
    loss_scale='dynamic',
    dtype='bfloat16',
)

# Linear warmup over the first `warmup_ratio` of training, then cosine decay to 0.
param_scheduler = [
    dict(type=LinearLR, start_factor=1e-5, by_epoch=True, begin=0,
         end=warmup_ratio * max_epochs, convert_to_iter_based=True),
    dict(type=CosineAnnealingLR, eta_min=0.0, by_epoch=True, begin=warmup_ratio * max_epochs,
         end=max_epochs, convert_to_iter_based=True),
]

train_cfg = dict(type=TrainLoop, max_epochs=max_epochs)
"""


def runtime_text(p: Mapping) -> str:
    """PART 5 after ``custom_hooks``: hooks, environment, logging and randomness; shared by
    every template."""
    return f"""\
default_hooks = dict(
    timer=dict(type=IterTimerHook),
    logger=dict(type=LoggerHook, log_metric_by_epoch=False, interval={p["log_interval"]!r}),
    param_scheduler=dict(type=ParamSchedulerHook),
    checkpoint=dict(type=CheckpointHook, by_epoch=False, interval=save_steps,
                    max_keep_ckpts=save_total_limit),
    sampler_seed=dict(type=DistSamplerSeedHook),
)

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)

visualizer = None
log_level = 'INFO'
load_from = None
resume = False
randomness = {_literal(p["randomness"])}
log_processor = dict(by_epoch=False)
"""


def render(p: Mapping, name: str, source: str = "") -> str:
    """The text of the config that the catalog leaf ``name`` (values ``p``) runs.

    Args:
        p: The leaf's merged values (its bases' and its own).
        name: The catalog name, for the header and the launch line.
        source: Where the leaf lives, for the header (``configs/...`` for a catalog entry).

    Raises:
        KeyError: a value the template needs is set by no base (the message names it).
    """
    missing = [key for key in REQUIRED if key not in p]
    if missing:
        raise KeyError(f"the catalog leaf sets no {', '.join(missing)} "
                       "(configs/_templates/sft.py lists what each base provides)")
    if p["data_files"]:
        load = "dict(type=load_dataset, path='json', data_files=dict(train=data_path))"
    else:
        load = "dict(type=load_dataset, path=data_path)"
    template_fn = ("dict(type=template_map_fn_factory, template=prompt_template),"
                   if p["use_prompt_template"] else "None,  # raw text: no chat template")
    # v0 keeps pretraining documents in order; chat samples are shuffled before packing.
    shuffle = "True" if p["use_prompt_template"] else "False"
    eval_hook = [
        "    dict(",
        "        type=EvaluateChatHook,",
        "        tokenizer=tokenizer,",
        "        every_n_iters=evaluation_freq,",
        "        evaluation_inputs=evaluation_inputs,",
        "        system=SYSTEM,",
    ]
    if p["use_prompt_template"]:
        eval_hook.append("        prompt_template=prompt_template,")
    eval_hook.append("    ),")
    remote = "    trust_remote_code=True,\n" if p["trust_remote_code"] else ""
    nl = "\n"
    return f"""\
{nl.join(_header(p, name, source))}
{_imports(p)}

{_banner("PART 1  Settings")}
{nl.join(_settings(p))}

{_banner("PART 2  Model & Tokenizer")}
tokenizer = dict(
    type=AutoTokenizer.from_pretrained,
    pretrained_model_name_or_path=pretrained_model_name_or_path,
{remote}    padding_side='right',
)

{nl.join(_model(p))}

{_banner("PART 3  Dataset & Dataloader")}
train_dataset = dict(
    type=process_hf_dataset,
    dataset={load},
    tokenizer=tokenizer,
    max_length=max_length,
    dataset_map_fn={p["dataset_map_fn"]},
    template_map_fn={template_fn}
    remove_unused_columns=True,
    shuffle_before_pack={shuffle},
    pack_to_max_length=pack_to_max_length,
    use_varlen_attn=use_varlen_attn,
)

train_dataloader = dict(
    batch_size=batch_size,
    num_workers=dataloader_num_workers,
    dataset=train_dataset,
    sampler=dict(type=DefaultSampler, shuffle=True),
    collate_fn=dict(type=default_collate_fn, use_varlen_attn=use_varlen_attn),
)

{_banner("PART 4  Scheduler & Optimizer")}
# bf16 autocast on CUDA; on a machine without CUDA training runs in float32.
{schedule_text()}
{_banner("PART 5  Runtime")}
# Log a sample and chat replies to `evaluation_inputs` every `evaluation_freq` iterations.
custom_hooks = [
    dict(type=DatasetInfoHook, tokenizer=tokenizer),
{nl.join(eval_hook)}
    dict(type=ThroughputHook),
]

{runtime_text(p)}"""
