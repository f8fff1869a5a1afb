"""The config catalog: ``configs/_base_/`` bases, short leaves, one template in ``_templates/``.

Every leaf resolves to the same effective config as the generated catalog it replaced (digests
in ``catalog_effective.json``), loads with the structure of its method, and a representative
subset builds tokenizer, data pipeline and model with a tiny local model (no downloads). The
build test swaps only the model path and the data source (a small local JSONL file in the
dataset's own source format); everything else comes from the config as shipped.
"""
from __future__ import annotations

import copy
import hashlib
import json
import re
from itertools import cycle
from pathlib import Path

import pytest
import torch
from datasets import load_dataset
from mmengine.config import Config

from xtuner.dataset.collate_fns import default_collate_fn
from xtuner.dataset.map_fns import DATASET_FORMAT_MAPPING
from xtuner.engine.config import config_data, load_config
from xtuner.entry_point import main as xtuner_main
from xtuner.model import SupervisedFinetune
from xtuner.registry import BUILDER
from xtuner.utils import PROMPT_TEMPLATE
from xtuner.utils.constants import IGNORE_INDEX
from xtuner.utils.errors import ConfigError
from xtuner.utils.paths import config_catalog, configs_dir

ROOT = configs_dir()
BASE = ROOT / "_base_"
DIGESTS = json.loads((Path(__file__).parent / "catalog_effective.json").read_text())
METHODS = sorted(p.stem for p in (BASE / "methods").glob("*.py"))
DATASETS = sorted(p.stem for p in (BASE / "datasets").glob("[!_]*.py"))
# Model bases: one file per model; the other files of a family folder are what models share.
MODELS = {p.stem: p for p in sorted((BASE / "models").glob("*/*.py"))
          if (ROOT / p.parent.name / p.stem).is_dir()}
FAMILIES = sorted({p.parent.name for p in MODELS.values()})
NAME = re.compile(rf"^(?P<model>.+)_(?P<method>{'|'.join(METHODS)})_"
                  rf"(?P<dataset>{'|'.join(DATASETS)})_e(?P<epochs>\d+)$")


def _values(path: Path) -> dict:
    """The merged values of a base or leaf (before rendering)."""
    return Config.fromfile(str(path)).to_dict()


def _leaves() -> dict[str, Path]:
    return {name: path for name, path in config_catalog().items()
            if path.relative_to(ROOT).parts[0] in FAMILIES}


LEAVES = _leaves()


class Case:
    """One catalog leaf: its name's parts and its bases' values."""

    def __init__(self, name: str):
        match = NAME.match(name)
        assert match, f"{name} does not follow MODEL_METHOD_DATASET_eEPOCHS"
        self.name, self.path = name, LEAVES[name]
        self.model, self.method, self.dataset = match["model"], match["method"], match["dataset"]
        self.epochs = int(match["epochs"])
        self.family = MODELS[self.model].parent.name
        self.m = _values(MODELS[self.model])
        self.d = _values(BASE / "datasets" / f"{self.dataset}.py")

    def __repr__(self):
        return self.name


CASES = {name: Case(name) for name in sorted(LEAVES)}


# --------------------------------------------------------------------------- 1. layout
def test_every_combination_exists_under_its_v0_name():
    assert len(MODELS) == 44 and len(METHODS) == 3 and len(DATASETS) == 7
    epochs = {d: _values(BASE / "datasets" / f"{d}.py")["max_epochs"] for d in DATASETS}
    expected = {f"{model}_{method}_{dataset}_e{epochs[dataset]}"
                for model in MODELS for method in METHODS for dataset in DATASETS}
    assert set(LEAVES) == expected
    for case in CASES.values():
        assert case.path == ROOT / case.family / case.model / f"{case.name}.py"


def test_leaves_are_short_and_name_their_bases():
    for case in CASES.values():
        text = case.path.read_text(encoding="utf-8")
        assert len(text.splitlines()) <= 30, case.name
        bases = Config._get_base_files(str(case.path))  # noqa: SLF001 - mmengine's own parser
        resolved = {(case.path.parent / b).resolve() for b in bases}
        assert MODELS[case.model].resolve() in resolved, case.name
        assert (BASE / "datasets" / f"{case.dataset}.py").resolve() in resolved, case.name
        assert (BASE / "methods" / f"{case.method}.py").resolve() in resolved, case.name


def test_config_lines_dropped_by_an_order_of_magnitude():
    # The generated catalog held 170,431 lines of Python.
    lines = sum(len(p.read_text(encoding="utf-8").splitlines()) for p in ROOT.rglob("*.py"))
    assert lines < 17_000, lines


def test_epochs_follow_v0():
    assert {d: _values(BASE / "datasets" / f"{d}.py")["max_epochs"] for d in DATASETS} == {
        "alpaca": 3, "alpaca_zh": 3, "oasst1": 3, "code_alpaca": 3, "colorist": 5,
        "custom_sft": 1, "custom_pretrain": 1}


def test_list_cfg_lists_the_qwen2_5_configs(capsys):
    assert xtuner_main(["list-cfg", "-p", "qwen2_5"]) == 0
    sft = sorted(n for n in LEAVES if n.startswith("qwen2_5_"))
    assert len(sft) == 7 * 3 * 7
    listed = capsys.readouterr().out.splitlines()
    # The pattern matches anywhere in the name (v0): the LLaVA and preference leaves too.
    assert listed == sorted(n for n in config_catalog() if "qwen2_5" in n)
    assert set(sft) <= set(listed)


# --------------------------------------------------------------------------- 2. loading
def _check_config(case: Case, cfg) -> list[str]:
    """Every problem of one config (all reported at once)."""
    errors = []

    def expect(ok, what):
        if not ok:
            errors.append(f"{case.name}: {what}")

    missing = {"model", "tokenizer", "train_dataloader", "optim_wrapper", "param_scheduler",
               "train_cfg", "custom_hooks", "default_hooks"} - set(cfg.keys())
    if missing:
        return [f"{case.name}: missing {sorted(missing)}"]
    m, d = case.m, case.d
    llm, lora = cfg.model.llm, cfg.model.get("lora")
    quant = llm.get("quantization_config")
    for what, node in (("tokenizer", cfg.tokenizer), ("llm", llm)):
        expect(node.pretrained_model_name_or_path == m["pretrained_model_name_or_path"],
               f"{what} path")
        expect(node.get("trust_remote_code", False) is m["trust_remote_code"],
               f"{what} trust_remote_code")
    expect(llm.dtype is torch.bfloat16, "llm dtype")
    if case.method == "qlora":
        expect(quant is not None and quant.load_in_4bit and quant.bnb_4bit_quant_type == "nf4"
               and quant.bnb_4bit_use_double_quant
               and quant.bnb_4bit_compute_dtype is torch.bfloat16, "4-bit NF4 quantization")
    else:
        expect(quant is None, "unexpected quantization_config")
    if case.method in ("lora", "qlora"):
        expect(lora is not None and (lora.r, lora.lora_alpha, lora.lora_dropout) == (64, 16, 0.1)
               and lora.target_modules is None, "LoRA r=64 alpha=16 dropout=0.1 all-linear")
    else:
        expect(lora is None, "unexpected lora")

    opt = cfg.optim_wrapper
    expect(opt.optimizer.lr == {"full": 2e-5}.get(case.method, 2e-4) == cfg.lr, "lr")
    expect((opt.dtype, opt.accumulative_counts, opt.clip_grad.max_norm) == ("bfloat16", 16, 1),
           "AmpOptimWrapper bf16, 16 accumulation steps, max_norm 1")
    expect(cfg.train_cfg.max_epochs == case.epochs == cfg.param_scheduler[1].end, "epochs")
    expect(cfg.default_hooks.checkpoint.interval == 500
           and cfg.default_hooks.checkpoint.max_keep_ckpts == 2, "checkpointing")

    loader = cfg.train_dataloader
    ds = loader.dataset
    expect(loader.batch_size == 1 and ds.max_length == 2048 and ds.pack_to_max_length,
           "batch 1, packed rows of 2048 tokens")
    expect(ds.dataset_map_fn is DATASET_FORMAT_MAPPING[
        {"colorist": "colors", "custom_sft": "openai", "custom_pretrain": "pretrain"}.get(
            case.dataset, case.dataset)], "map fn")
    template = PROMPT_TEMPLATE[m["prompt_template"]]
    if d["use_prompt_template"]:
        expect(ds.template_map_fn.template == template, "template")
    else:
        expect(ds.template_map_fn is None, "pretraining uses no template")
    if d["data_files"]:
        expect(ds.dataset.path == "json" and ds.dataset.data_files.train == cfg.data_path
               and cfg.data_path.startswith("/path/to/"), "local JSON placeholder")
    else:
        expect(ds.dataset.path == d["data_path"], "Hub dataset id")
    varlen = {cfg.model.use_varlen_attn, ds.use_varlen_attn, loader.collate_fn.use_varlen_attn}
    expect(varlen == {m["use_varlen_attn"]}, "use_varlen_attn consistent")
    chat_hook = [h for h in cfg.custom_hooks if h.type.__name__ == "EvaluateChatHook"]
    expect(len(chat_hook) == 1 and len(chat_hook[0].evaluation_inputs) == 2
           and chat_hook[0].get("prompt_template") == (
               template if d["use_prompt_template"] else None),
           "EvaluateChatHook with the config's template")
    return errors


@pytest.mark.parametrize("family", FAMILIES)
def test_every_leaf_loads_as_before_with_the_method_structure(family):
    """Each model's 21 leaves resolve to the effective configs the generated catalog had."""
    errors, effective = [], {}
    for case in CASES.values():
        if case.family != family:
            continue
        cfg = load_config(case.path)
        errors += _check_config(case, cfg)
        effective.setdefault(case.model, []).append(config_data(cfg._cfg_dict))
    for model, configs in effective.items():
        digest = hashlib.sha256(json.dumps(configs, sort_keys=True).encode()).hexdigest()[:16]
        if digest != DIGESTS[model]:
            errors.append(f"{model}: effective configs changed (digest {digest})")
    assert errors == []


def test_a_leaf_that_changes_a_shared_value_changes_it_everywhere(tmp_path):
    base = LEAVES["qwen2_5_0_5b_instruct_qlora_alpaca_e3"]
    leaf = tmp_path / "my_leaf.py"
    leaf.write_text(f"_base_ = [{str(base)!r}]\n"
                    "pretrained_model_name_or_path = '/models/mine'\n"
                    "data_path = 'me/my_data'\nmax_length = 4096\nmax_epochs = 1\n"
                    "lr = 1e-5\nprompt_template = 'llama3_chat'\n"
                    "lora = dict(r=8)\n")
    cfg = load_config(leaf)
    assert cfg.filename == str(leaf)
    for node in (cfg.tokenizer, cfg.model.llm, cfg.custom_hooks[0].tokenizer,
                 cfg.custom_hooks[1].tokenizer, cfg.train_dataloader.dataset.tokenizer):
        assert node.pretrained_model_name_or_path == "/models/mine"
    ds = cfg.train_dataloader.dataset
    assert ds.dataset.path == "me/my_data" and ds.max_length == 4096
    assert ds.template_map_fn.template == PROMPT_TEMPLATE.llama3_chat
    assert cfg.custom_hooks[1].prompt_template == PROMPT_TEMPLATE.llama3_chat
    assert cfg.train_cfg.max_epochs == 1 and cfg.param_scheduler[1].end == 1
    assert cfg.param_scheduler[0].end == pytest.approx(0.03)
    assert cfg.optim_wrapper.optimizer.lr == 1e-5
    assert (cfg.model.lora.r, cfg.model.lora.lora_alpha) == (8, 16)  # merged into the base's


def test_a_leaf_value_no_template_uses_is_an_error(tmp_path):
    leaf = tmp_path / "typo.py"
    leaf.write_text(f"_base_ = [{str(LEAVES['qwen3_8b_lora_alpaca_e3'])!r}]\nmax_lenght = 4096\n")
    with pytest.raises(ConfigError, match=r"sets 'max_lenght', which template 'sft' does not "
                                          r"use \(did you mean 'max_length'\?\)"):
        load_config(leaf)


def test_an_unknown_template_is_an_error(tmp_path):
    leaf = tmp_path / "bad.py"
    leaf.write_text(f"_base_ = [{str(LEAVES['qwen3_8b_lora_alpaca_e3'])!r}]\n"
                    "config_template = 'stf'\n")
    with pytest.raises(ConfigError, match=r"config_template 'stf' does not exist .*"
                                          r"did you mean 'sft'"):
        load_config(leaf)


# --------------------------------------------------------------------------- 4. building
# Test architecture per model: remote-code models (InternLM, Baichuan, ChatGLM, GLM-4) cannot be
# built without their Hub code, so a tiny Llama stands in for them, as for every other
# non-Qwen, non-Mistral family (the config's model dict is used unchanged apart from the path).
def _arch(case: Case) -> str:
    if case.family == "mistral":
        return "mistral"
    if case.model.startswith(("qwen", "deepseek_r1_distill_qwen")):
        return "qwen2"
    return "llama"


SAMPLES = {
    "alpaca": [{"instruction": f"Give tip number {i} for staying healthy.", "input": "",
                "output": f"Tip {i}: sleep well and drink water."} for i in range(3)]
    + [{"instruction": "Translate to French.", "input": "Hello world",
        "output": "Bonjour le monde."}],
    "alpaca_zh": [{"instruction_zh": "把下面的句子翻译成英文。", "input_zh": "今天天气很好",
                   "output_zh": "The weather is nice today."},
                  {"instruction_zh": "中国的首都是哪里？", "input_zh": "",
                   "output_zh": "中国的首都是北京。"}],
    "oasst1": [{"text": "### Human: How are you today?### Assistant: I am fine, thank you!"
                        "### Human: What is 2 + 2?### Assistant: 4."},
               {"text": "### Human: Name a colour.### Assistant: Blue."}],
    "code_alpaca": [{"prompt": "Write a function that adds two numbers.",
                     "completion": "def add(a, b):\n    return a + b\n"},
                    {"prompt": "Print the squares of 0 to 9.",
                     "completion": "for i in range(10):\n    print(i * i)\n"}],
    "colorist": [{"description": "Alice blue: an off-white with a hint of blue.",
                  "color": "#f0f8ff"},
                 {"description": "Pure red: the brightest red there is.", "color": "#ff0000"}],
    "custom_sft": [{"messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "Paris.", "loss": False},
        {"role": "user", "content": "And of China?"},
        {"role": "assistant", "content": "Beijing."}]},
        {"messages": [{"role": "user", "content": "Hello!"},
                      {"role": "assistant", "content": "Hello, world!"}]}],
    "custom_pretrain": [{"text": "The quick brown fox jumps over the lazy dog."},
                        {"text": "大型语言模型的微调需要数据、模型和训练配置。"}],
}


def _build_cases() -> list:
    """One case per family x method (cycling through each family's models), with the
    datasets dealt round-robin so every dataset is built several times."""
    cases, datasets = [], cycle(DATASETS)
    for family in FAMILIES:
        models = [m for m, p in MODELS.items() if p.parent.name == family]
        for i, method in enumerate(METHODS):
            model, dataset = models[(i * 2) % len(models)], next(datasets)
            case = next(c for c in CASES.values()
                        if (c.model, c.method, c.dataset) == (model, method, dataset))
            tag = " (tiny llama stands in for remote code)" if case.m["trust_remote_code"] else ""
            cases.append(pytest.param(case, id=case.name + tag))
    return cases


BUILD_CASES = _build_cases()


def test_build_subset_covers_every_family_method_and_dataset():
    picked = [param.values[0] for param in BUILD_CASES]
    assert {(c.family, c.method) for c in picked} == {(f, m) for f in FAMILIES for m in METHODS}
    assert {c.dataset for c in picked} == set(DATASETS)


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    from xtuner.testing import tiny_llm_and_tokenizer

    root = tmp_path_factory.mktemp("catalog_models")
    texts = [json.dumps(s, ensure_ascii=False) for rows in SAMPLES.values() for s in rows]
    return {arch: tiny_llm_and_tokenizer(root, arch=arch, texts=texts)[0]
            for arch in ("llama", "qwen2", "mistral")}


@pytest.fixture(scope="module")
def data_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("catalog_data")
    files = {}
    for name, rows in SAMPLES.items():
        files[name] = root / f"{name}.jsonl"
        files[name].write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                               encoding="utf-8")
    return files


def _with_path(node, path):
    node = copy.deepcopy(node)
    node["pretrained_model_name_or_path"] = path
    return node


@pytest.mark.parametrize("case", BUILD_CASES)
def test_config_builds_with_a_tiny_model(case, tiny_models, data_files):
    if case.method == "qlora":
        pytest.importorskip("bitsandbytes")  # 4-bit NF4 runs on the CPU with bitsandbytes>=0.48
    cfg = load_config(case.path)
    path = tiny_models[_arch(case)]
    tokenizer_cfg = _with_path(cfg.tokenizer, path)

    # Data: the config's own pipeline, on a local file in the dataset's source format.
    ds_cfg = copy.deepcopy(cfg.train_dataloader.dataset)
    ds_cfg.update(dataset=dict(type=load_dataset, path="json",
                               data_files=dict(train=str(data_files[case.dataset]))),
                  tokenizer=tokenizer_cfg)
    rows = BUILDER.build(ds_cfg)
    assert len(rows) >= 1
    tokenizer = BUILDER.build(tokenizer_cfg)
    text = tokenizer.decode(rows[0]["input_ids"])
    for row in rows:
        assert 0 < len(row["input_ids"]) <= cfg.max_length
        assert sum(label != IGNORE_INDEX for label in row["labels"]) > 0
    if case.d["use_prompt_template"]:
        # The chat template of the config wraps the user turns.
        assert PROMPT_TEMPLATE[case.m["prompt_template"]].INSTRUCTION.split("{input}")[0] in text
    else:
        assert "<|im_start|>" not in text and "quick brown fox" in "".join(
            tokenizer.decode(r["input_ids"]) for r in rows)

    # Model: the config's model dict with only the checkpoint path replaced.
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.llm = _with_path(model_cfg.llm, path)
    torch.manual_seed(0)
    sft = BUILDER.build(model_cfg)
    assert isinstance(sft, SupervisedFinetune)
    trainable = [n for n, p in sft.named_parameters() if p.requires_grad]
    if case.method in ("lora", "qlora"):
        assert trainable and all("lora_" in n for n in trainable)
    else:
        assert len(trainable) == len(list(sft.parameters()))
    if case.method == "qlora":
        import bitsandbytes as bnb

        assert any(isinstance(m, bnb.nn.Linear4bit) for m in sft.modules())
    else:
        assert not any(type(m).__name__ == "Linear4bit" for m in sft.modules())

    batch = default_collate_fn([rows[0]], use_varlen_attn=cfg.use_varlen_attn)["data"]
    sft.train()
    loss = sft(batch, mode="loss")["loss"]
    assert torch.isfinite(loss) and loss.item() > 0


# --------------------------------------------------------------------------- 4. training
def test_xtuner_train_runs_a_leaf_with_its_settings_overridden(tmp_path):
    """``xtuner train NAME`` on a leaf; top-level Settings given on the command line reach the
    model, the data pipeline and the schedule (the leaf is rendered again with them)."""
    import os
    import subprocess
    import sys

    from xtuner.testing import tiny_llm_and_tokenizer

    model_dir, _ = tiny_llm_and_tokenizer(tmp_path, arch="qwen2")
    data = tmp_path / "chat.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in SAMPLES["custom_sft"] * 3))
    work = tmp_path / "work"
    proc = subprocess.run(
        [sys.executable, "-m", "xtuner", "train", "qwen2_5_0_5b_instruct_full_custom_sft_e1",
         "--work-dir", str(work), "--cfg-options", f"pretrained_model_name_or_path={model_dir}",
         f"data_path={data}", "max_length=64", "max_epochs=2", "lr=1e-3",
         "default_hooks.checkpoint.interval=1000", "custom_hooks.1.every_n_iters=1000"],
        cwd=tmp_path, env=dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1"),
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert ("max_epochs=2 reaches param_scheduler.0.end, param_scheduler.1.begin, "
            "param_scheduler.1.end, train_cfg.max_epochs") in log
    assert "max_length=64 reaches" in log and "lr=0.001 reaches optim_wrapper.optimizer.lr" in log
    checkpoint = (work / "last_checkpoint").read_text().strip()
    state = torch.load(checkpoint, weights_only=False, map_location="cpu")
    iters = state["meta"]["iter"]
    assert checkpoint.endswith(f"iter_{iters}.pth") and iters > 0 and iters % 2 == 0
    assert state["optimizer"]["param_groups"][0]["initial_lr"] == 1e-3
    # The cosine decay ends with the second epoch (the warmup is too short to last an iteration).
    assert [s["end"] for s in state["param_schedulers"]] == [iters]
