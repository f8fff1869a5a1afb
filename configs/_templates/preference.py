"""Render one preference-training catalog leaf (DPO, ORPO or a reward model) into a v0-style file.

A leaf (``configs/{dpo,orpo,reward_model}/<model>/<name>.py``) names three bases: an LLM family
model (``_base_/models/``, shared with the SFT catalog), an algorithm
(``_base_/preference/dpo.py``, ``orpo.py`` or ``reward.py``, which bring the schedule and
runtime and set ``config_template = 'preference'``) and a method (``_base_/preference/full.py``,
``lora.py`` or ``qlora.py``); a reward leaf also sets ``reward_token_id``. :func:`render`
writes v0's five sections whose dicts refer to the Settings.

The values the template reads, by the base that sets them:

* model (``_base_/models/``): ``model_title``, ``pretrained_model_name_or_path``,
  ``prompt_template``, ``template_note``, ``trust_remote_code``, ``use_varlen_attn``
  (+ ``varlen_note``), ``lora_target_modules``, ``llm_kwargs`` (+ ``llm_kwargs_note``),
  ``model_notes``;
* algorithm (``_base_/preference/``): ``preference_method`` (``'dpo'``, ``'orpo'``,
  ``'reward'``), ``algorithm_title``, ``dpo_loss_type``/``label_smoothing`` (DPO),
  ``loss_beta`` (DPO, ORPO), ``loss_type``/``penalty_type`` (reward), ``dataset_title``,
  ``data_path``, ``data_files``, ``dataset_map_fn`` (an ``xtuner.dataset.map_fns`` name),
  ``max_length``, ``max_packed_length_factor``, ``num_proc``, ``max_epochs``, ``lr``,
  ``system_template``, ``evaluation_inputs``, ``evaluation_freq``;
* method (``_base_/preference/``): ``method_title``, ``launch``, ``lora`` (LoraConfig arguments;
  unset: no adapters), ``quantization_config`` (BitsAndBytesConfig arguments; unset: bf16);
* leaf: ``reward_token_id`` (reward models), ``lr`` where it differs from the algorithm's;
* schedule and runtime: as for ``sft.py``.
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
    "use_varlen_attn", "lora_target_modules", "preference_method", "algorithm_title",
    "dataset_title", "data_path", "data_files", "dataset_map_fn", "max_length",
    "max_packed_length_factor", "num_proc", "max_epochs", "system_template",
    "evaluation_inputs", "evaluation_freq", "method_title", "launch", "lr", "optim_type",
    "betas", "weight_decay", "max_norm", "warmup_ratio", "batch_size", "accumulative_counts",
    "dataloader_num_workers", "save_steps", "save_total_limit", "log_interval", "randomness",
)
OPTIONAL = ("config_template", "template_note", "varlen_note", "llm_kwargs", "llm_kwargs_note",
            "model_notes", "data_format_doc", "lora", "quantization_config", "dpo_loss_type",
            "label_smoothing", "loss_beta", "loss_type", "penalty_type", "reward_token_id")
_NEEDS = {"dpo": ("dpo_loss_type", "loss_beta", "label_smoothing"), "orpo": ("loss_beta",),
          "reward": ("loss_type", "penalty_type", "reward_token_id")}
_MODEL_CLASS = {"dpo": "DPO", "orpo": "ORPO", "reward": "RewardModel"}


def _chat(p: Mapping) -> bool:
    """DPO and ORPO train a chat policy (evaluated by chatting); a reward model scores."""
    return p["preference_method"] != "reward"


def _imports(p: Mapping) -> str:
    transformers = ["AutoModelForCausalLM", "AutoTokenizer"]
    if p.get("quantization_config"):
        transformers.append("BitsAndBytesConfig")
    hooks = (["DatasetInfoHook", "EvaluateChatHook", "ThroughputHook"] if _chat(p)
             else ["DatasetInfoHook", "ThroughputHook"])
    lines = [
        "import torch",
        "from datasets import load_dataset",
        *_S.MMENGINE_IMPORTS,
    ]
    if p.get("lora"):
        lines.append("from peft import LoraConfig")
    lines += [
        f"from torch.optim import {p['optim_type']}",
        f"from transformers import {', '.join(transformers)}",
        "",
        "from xtuner.dataset import build_preference_dataset",
        "from xtuner.dataset.collate_fns import preference_collate_fn",
        f"from xtuner.dataset.map_fns import {p['dataset_map_fn']}",
        f"from xtuner.engine.hooks import {', '.join(hooks)}",
        "from xtuner.engine.runner import TrainLoop",
        f"from xtuner.model import {_MODEL_CLASS[p['preference_method']]}",
    ]
    utils = ["PROMPT_TEMPLATE"] + (["SYSTEM_TEMPLATE"] if p["system_template"] else [])
    if _chat(p):
        lines.append(f"from xtuner.utils import {', '.join(utils)}")
    return "\n".join(lines)


def _header(p: Mapping, name: str, source: str) -> list[str]:
    what = "the catalog entry" if source.startswith("configs/") else "the config"
    epochs = f"{p['max_epochs']} epoch{'s' if p['max_epochs'] != 1 else ''}"
    lines = [
        _S._comment(f"{p['algorithm_title']}, {p['method_title']}, of {p['model_title']} "
                    f"({p['pretrained_model_name_or_path']}) on {p['dataset_title']}, {epochs}."),
        f"#     {p['launch'].format(name=name)}",
    ]
    lines += [_S._comment(note.rstrip(".") + ".") for note in p.get("model_notes") or ()]
    lines += [
        "# The tokenizer's chat template renders the pairs' messages (the prompt template only",
        "# formats the evaluation chats).",
        _S._comment(f"Rendered from {what} '{name}' ({source}) by "
                    "configs/_templates/preference.py."),
        "# Every value in PART 1 reaches each dict below that uses it: edit it there.",
    ]
    return lines


def _settings(p: Mapping) -> list[str]:
    method = p["preference_method"]
    lines = ["# Model", f"pretrained_model_name_or_path = {p['pretrained_model_name_or_path']!r}"]
    if p["use_varlen_attn"]:
        lines.append("use_varlen_attn = True  # pairs packed into rows never attend to each other")
    else:
        lines += [_S._comment(p.get("varlen_note") or "varlen attention is off"),
                  "use_varlen_attn = False"]
    if method == "dpo":
        lines += [(f"dpo_loss_type = {p['dpo_loss_type']!r}  # One of ['sigmoid', 'hinge', "
                   "'ipo', 'kto_pair', 'sppo_hard', 'nca_pair', 'robust']"),
                  f"loss_beta = {p['loss_beta']!r}",
                  f"label_smoothing = {p['label_smoothing']!r}"]
    elif method == "orpo":
        lines.append(f"loss_beta = {p['loss_beta']!r}")
    else:
        lines += [(f"reward_token_id = {p['reward_token_id']!r}  # appended to every "
                   "sequence; its hidden state is scored"),
                  f"loss_type = {p['loss_type']!r}  # 'ranking' or 'focal'",
                  f"penalty_type = {p['penalty_type']!r}  # 'log_barrier', 'L2' or 'none'"]
    where = ("your local file" if p["data_files"] else "Hugging Face Hub dataset")
    lines += ["", "# Data", f"data_path = {p['data_path']!r}  # {where}"]
    if _chat(p):
        if p.get("template_note"):
            lines.append(_S._comment(p["template_note"]))
        lines.append(f"prompt_template = PROMPT_TEMPLATE.{p['prompt_template']}")
    lines += [
        f"max_length = {p['max_length']!r}",
        f"max_packed_length = max_length * {p['max_packed_length_factor']!r}",
        "",
        *_S.schedule_settings(p, "per_device (one packed row of pairs)"),
    ]
    if _chat(p):
        lines += [
            "",
            "# Evaluate the generation performance during the training",
            f"evaluation_freq = {p['evaluation_freq']!r}",
            "SYSTEM = " + (f"SYSTEM_TEMPLATE.{p['system_template']}" if p["system_template"]
                           else "''"),
            "evaluation_inputs = [",
            *(f"    {text!r}," + ("  # noqa: E501" if len(repr(text)) > 94 else "")
              for text in p["evaluation_inputs"]),
            "]",
        ]
    return lines


def _model(p: Mapping) -> list[str]:
    method = p["preference_method"]
    llm = ["        type=AutoModelForCausalLM.from_pretrained,",
           "        pretrained_model_name_or_path=pretrained_model_name_or_path,"]
    if p["trust_remote_code"]:
        llm.append("        trust_remote_code=True,")
    llm += _S.llm_tail(p)
    lines = ["model = dict(", f"    type={_MODEL_CLASS[method]},",
             "    use_varlen_attn=use_varlen_attn,"]
    if method == "dpo":
        lines += ["    loss_type=dpo_loss_type,", "    beta=loss_beta,",
                  "    label_smoothing=label_smoothing,"]
    elif method == "orpo":
        lines.append("    beta=loss_beta,")
    else:
        lines += ["    reward_token_id=reward_token_id,", "    loss_type=loss_type,",
                  "    penalty_type=penalty_type,"]
    if method == "reward":
        lines.append("    # The causal LM is loaded as AutoModelForSequenceClassification (one "
                     "score).")
    lines += ["    llm=dict(", *llm, "    ),"]
    if p.get("lora"):
        lora = dict(p["lora"])
        lora.pop("task_type", None)
        lines += ["    lora=dict(", "        type=LoraConfig,"]
        lines += [f"        {key}={_S._literal(value)}," for key, value in lora.items()]
        targets = p["lora_target_modules"]
        why = "  # None: every linear layer except the output head" if targets is None else ""
        lines.append(f"        target_modules={_S._literal(targets)},{why}")
        if method == "reward":
            lines.append("        task_type='SEQ_CLS',  # the score head trains in full")
        else:
            lines.append("        task_type='CAUSAL_LM',")
        lines.append("    ),")
    lines.append(")")
    return lines


def render(p: Mapping, name: str, source: str = "") -> str:
    """The text of the config that the preference leaf ``name`` (values ``p``) runs.

    Args:
        p: The leaf's merged values (its bases' and its own).
        name: The catalog name, for the header and the launch line.
        source: Where the leaf lives, for the header (``configs/...`` for a catalog entry).

    Raises:
        KeyError: a value the template needs is set by no base (the message names it).
    """
    missing = [key for key in REQUIRED if key not in p]
    missing += [key for key in _NEEDS.get(p.get("preference_method"), ()) if key not in p]
    if p.get("preference_method") not in _NEEDS:
        missing.append("preference_method ('dpo', 'orpo' or 'reward')")
    if missing:
        raise KeyError(f"the catalog leaf sets no {', '.join(missing)} "
                       "(configs/_templates/preference.py lists what each base provides)")
    method = p["preference_method"]
    if p["data_files"]:
        load = "dict(type=load_dataset, path='json', data_files=dict(train=data_path))"
    else:
        load = "dict(type=load_dataset, path=data_path)"
    remote = "    trust_remote_code=True,\n" if p["trust_remote_code"] else ""
    hooks = ["    dict(type=DatasetInfoHook, tokenizer=tokenizer),"]
    if _chat(p):
        hooks += [
            "    dict(",
            "        type=EvaluateChatHook,",
            "        tokenizer=tokenizer,",
            "        every_n_iters=evaluation_freq,",
            "        evaluation_inputs=evaluation_inputs,",
            "        system=SYSTEM,",
            "        prompt_template=prompt_template,",
            "    ),",
        ]
    hooks.append("    dict(type=ThroughputHook),")
    is_reward = method == "reward"
    token = "reward_token_id" if is_reward else "-1"
    nl = "\n"
    return f"""\
{nl.join(_header(p, name, source))}
{_imports(p)}

{_S._banner("PART 1  Settings")}
{nl.join(_settings(p))}

{_S._banner("PART 2  Model & Tokenizer")}
tokenizer = dict(
    type=AutoTokenizer.from_pretrained,
    pretrained_model_name_or_path=pretrained_model_name_or_path,
{remote}    padding_side='right',
)

{nl.join(_model(p))}

{_S._banner("PART 3  Dataset & Dataloader")}
train_dataset = dict(
    type=build_preference_dataset,
    dataset={load},
    tokenizer=tokenizer,
    max_length=max_length,
    dataset_map_fn={p["dataset_map_fn"]},
    is_dpo={not is_reward!r},
    is_reward={is_reward!r},
    reward_token_id={token},
    num_proc={p["num_proc"]!r},
    use_varlen_attn=use_varlen_attn,
    max_packed_length=max_packed_length,
    shuffle_before_pack=True,
)

train_dataloader = dict(
    batch_size=batch_size,
    num_workers=dataloader_num_workers,
    dataset=train_dataset,
    sampler=dict(type=DefaultSampler, shuffle=True),
    collate_fn=dict(type=preference_collate_fn, use_varlen_attn=use_varlen_attn),
)

{_S._banner("PART 4  Scheduler & Optimizer")}
# bf16 autocast on CUDA; on a machine without CUDA training runs in float32.
{_S.schedule_text()}
{_S._banner("PART 5  Runtime")}
custom_hooks = [
{nl.join(hooks)}
]

{_S.runtime_text(p)}"""
