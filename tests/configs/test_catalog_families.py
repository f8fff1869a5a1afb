"""The LLaVA and preference (DPO, ORPO, reward model) catalog families.

Every leaf renders and carries v0's values; a subset builds model and data with tiny local
stand-ins (Llama/Qwen2 LLMs, CLIP/SigLIP towers built from configs, images drawn in code), the
pre-training stage's checkpoint feeds the fine-tune stage, one LLaVA and one DPO leaf train two
iterations through ``xtuner train``, and a ``copy-cfg`` of a LLaVA leaf is driven by its
Settings. Only the paths (and the tiny tower's image size) are overridden, through the
rendered Settings as ``--cfg-options`` does.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from xtuner.engine.config import load_config, merge_cfg_options
from xtuner.entry_point import main as xtuner_main
from xtuner.registry import BUILDER
from xtuner.utils import PROMPT_TEMPLATE
from xtuner.utils.constants import IMAGE_TOKEN_INDEX
from xtuner.utils.paths import config_catalog, configs_dir

ROOT = configs_dir()
CATALOG = config_catalog()
LLAVA = {n: p for n, p in CATALOG.items() if p.relative_to(ROOT).parts[0] == "llava"}
PREFERENCE = {n: p for n, p in CATALOG.items()
              if p.relative_to(ROOT).parts[0] in ("dpo", "orpo", "reward_model")}
LLMS = {"qwen2_5_7b_instruct": ("qwen", "Qwen/Qwen2.5-7B-Instruct", "qwen_chat"),
        "llama3_1_8b_instruct": ("llama", "meta-llama/Llama-3.1-8B-Instruct", "llama3_chat")}
TOWERS = {"clip_vit_large_p14_336": ("openai/clip-vit-large-patch14-336", 576, True),
          "siglip_so400m_p14_384": ("google/siglip-so400m-patch14-384", 729, False)}
PREF_MODELS = {"qwen2_5_7b_instruct": 151654, "llama3_1_8b_instruct": 128002,
               "internlm2_5_chat_7b": 92527}
ALGOS = {"dpo": ("orpo_dpo_mix_40k", 3, 5e-7), "orpo": ("ultrafeedback", 5, 5e-6),
         "reward": ("ultrafeedback", 1, 2e-5)}
FOLDER = {"dpo": "dpo", "orpo": "orpo", "reward": "reward_model"}
ENV = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")


# --------------------------------------------------------------------------- layout
def test_llava_leaves_follow_v0_names_and_layout():
    expected = {}
    for llm in LLMS:
        for tower in TOWERS:
            folder = ROOT / "llava" / f"{llm}_{tower}"
            expected[f"llava_{llm}_{tower}_e1_pretrain"] = folder
            expected[f"llava_{llm}_qlora_{tower}_lora_e1_finetune"] = folder
    assert {n: p.parent for n, p in LLAVA.items()} == expected
    for path in LLAVA.values():
        assert len(path.read_text(encoding="utf-8").splitlines()) <= 9, path


def test_preference_leaves_cover_every_algorithm_method_and_family():
    expected = {}
    for model in PREF_MODELS:
        for algo, (dataset, epochs, _) in ALGOS.items():
            for method in ("full", "lora", "qlora"):
                name = f"{model}_{algo}_{method}_{dataset}_e{epochs}"
                expected[name] = ROOT / FOLDER[algo] / model / f"{name}.py"
    assert PREFERENCE == expected
    for path in PREFERENCE.values():
        assert len(path.read_text(encoding="utf-8").splitlines()) <= 9, path


def test_list_cfg_lists_the_llava_configs(capsys):
    assert xtuner_main(["list-cfg", "-p", "llava"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert set(LLAVA) <= set(listed) and len(LLAVA) == 8


# --------------------------------------------------------------------------- values
@pytest.mark.parametrize("name", sorted(LLAVA))
def test_llava_leaf_renders_with_v0_values(name):
    cfg = load_config(LLAVA[name])
    llm = next(k for k in LLMS if f"_{k}_" in name)
    tower = next(k for k in TOWERS if k in name)
    family, llm_path, template = LLMS[llm]
    tower_path, tokens, drop = TOWERS[tower]
    m, ds, loader = cfg.model, cfg.train_dataloader.dataset, cfg.train_dataloader
    assert m.llm.pretrained_model_name_or_path == cfg.tokenizer.pretrained_model_name_or_path \
        == llm_path
    assert m.visual_encoder.pretrained_model_name_or_path == tower_path
    assert cfg.image_processor.pretrained_model_name_or_path == tower_path
    assert (m.drop_cls_token, ds.image_tokens, ds.max_length) == (drop, tokens, 2048 - tokens)
    assert ds.template_map_fn.template == PROMPT_TEMPLATE[template]
    assert ds.dataset_map_fn.__name__ == "llava_map_fn"
    assert m.freeze_llm and m.freeze_visual_encoder and m.use_varlen_attn
    assert cfg.train_cfg.max_epochs == 1 and cfg.optim_wrapper.accumulative_counts == 1
    hook = next(h for h in cfg.custom_hooks if h.type.__name__ == "EvaluateChatHook")
    assert hook.evaluation_images is None and hook.image_processor is None
    if name.endswith("_pretrain"):
        assert ds.data_path.endswith("LLaVA-Pretrain/blip_laion_cc_sbu_558k.json")
        assert cfg.optim_wrapper.optimizer.lr == 1e-3 and loader.batch_size == 32
        assert "llm_lora" not in m and "visual_encoder_lora" not in m
        assert "quantization_config" not in m.llm and not ds.pad_image_to_square
        assert not ds.pack_to_max_length and loader.sampler.type.__name__ == "DefaultSampler"
    else:
        assert ds.data_path.endswith("llava_v1_5_mix665k.json") and ds.pad_image_to_square
        assert cfg.optim_wrapper.optimizer.lr == 2e-4 and loader.batch_size == 16
        assert (m.llm_lora.r, m.llm_lora.lora_alpha) == (512, 256)
        assert (m.visual_encoder_lora.r, m.visual_encoder_lora.lora_alpha) == (64, 16)
        q = m.llm.quantization_config
        assert q.load_in_4bit and q.bnb_4bit_quant_type == "nf4"
        assert ds.pack_to_max_length and loader.sampler.type.__name__ == "DefaultSampler"
        # The chain: pretrained_pth is a checkpoint of this LLM + tower's pre-training leaf.
        pretrain = Path(m.pretrained_pth).name  # its work dir
        assert pretrain == f"llava_{llm}_{tower}_e1_pretrain" and pretrain in LLAVA


def test_llava_finetune_without_packing_uses_v0_length_grouped_sampler():
    name = "llava_llama3_1_8b_instruct_qlora_clip_vit_large_p14_336_lora_e1_finetune"
    cfg = load_config(LLAVA[name])
    merge_cfg_options(cfg, {"pack_to_max_length": False})
    sampler = cfg.train_dataloader.sampler
    assert sampler.type.__name__ == "LengthGroupedSampler"
    assert (sampler.length_property, sampler.per_device_batch_size) == ("modality_length", 16)
    assert cfg.train_dataloader.dataset.pack_to_max_length is False


@pytest.mark.parametrize("name", sorted(PREFERENCE))
def test_preference_leaf_renders_with_v0_values(name):
    cfg = load_config(PREFERENCE[name])
    algo = next(a for a in ALGOS if f"_{a}_" in name)
    method = next(m for m in ("full", "lora", "qlora") if f"_{algo}_{m}_" in name)
    model = next(m for m in PREF_MODELS if name.startswith(m))
    m, ds = cfg.model, cfg.train_dataloader.dataset
    assert m.type.__name__ == {"dpo": "DPO", "orpo": "ORPO", "reward": "RewardModel"}[algo]
    lr = 1e-4 if algo == "reward" and method != "full" else ALGOS[algo][2]
    assert cfg.optim_wrapper.optimizer.lr == lr
    assert cfg.train_cfg.max_epochs == ALGOS[algo][1]
    assert (cfg.optim_wrapper.accumulative_counts, cfg.train_dataloader.batch_size) == (16, 1)
    assert (ds.max_length, ds.max_packed_length) == (2048, 4096)
    varlen = cfg.train_dataloader.collate_fn.use_varlen_attn
    assert ds.use_varlen_attn == m.use_varlen_attn == varlen
    assert cfg.train_dataloader.collate_fn.type.__name__ == "preference_collate_fn"
    assert ds.dataset_map_fn.__name__ == "orpo_dpo_mix_40k_map_fn"
    assert (ds.is_dpo, ds.is_reward) == (algo != "reward", algo == "reward")
    if algo == "dpo":
        assert (m.loss_type, m.beta, m.label_smoothing) == ("sigmoid", 0.1, 0.0)
    elif algo == "orpo":
        assert m.beta == 0.1
    else:
        assert (m.loss_type, m.penalty_type) == ("focal", "log_barrier")
        assert m.reward_token_id == ds.reward_token_id == PREF_MODELS[model]
    if method == "full":
        assert "lora" not in m and "quantization_config" not in m.llm
    else:
        assert (m.lora.r, m.lora.lora_alpha) == (64, 16)
        assert ("quantization_config" in m.llm) == (method == "qlora")


# --------------------------------------------------------------------------- building
IMAGE, PATCH = 32, 8
TINY_TOKENS = (IMAGE // PATCH) ** 2


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory):
    """Tiny LLMs, CLIP/SigLIP towers with their image processors, LLaVA data with images."""
    from PIL import Image
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        CLIPVisionModel,
        SiglipImageProcessor,
        SiglipVisionConfig,
        SiglipVisionModel,
    )

    from xtuner.testing import tiny_llm_and_tokenizer

    root = tmp_path_factory.mktemp("families")
    out = {arch: tiny_llm_and_tokenizer(root, arch=arch)[0] for arch in ("llama", "qwen2")}
    kw = dict(hidden_size=24, intermediate_size=48, num_hidden_layers=3, num_attention_heads=4,
              image_size=IMAGE, patch_size=PATCH)
    torch.manual_seed(0)
    CLIPVisionModel(CLIPVisionConfig(**kw)).save_pretrained(root / "clip")
    CLIPImageProcessor(size={"shortest_edge": IMAGE},
                       crop_size={"height": IMAGE, "width": IMAGE}).save_pretrained(root / "clip")
    SiglipVisionModel(SiglipVisionConfig(**kw)).save_pretrained(root / "siglip")
    SiglipImageProcessor(size={"height": IMAGE, "width": IMAGE}).save_pretrained(root / "siglip")
    out.update(clip=str(root / "clip"), siglip=str(root / "siglip"))
    images = root / "images"
    images.mkdir()
    records = []
    for i, (colour, name) in enumerate([((255, 0, 0), "red"), ((0, 0, 255), "blue")] * 2):
        Image.new("RGB", (40 + 8 * i, 32), colour).save(images / f"{i}.png")  # not square
        records.append({"id": i, "image": f"{i}.png", "conversations": [
            {"from": "human", "value": "<image>\nWhat colour is this?"},
            {"from": "gpt", "value": f"It is {name}."}]})
    records.append({"id": 9, "conversations": [{"from": "human", "value": "Hello"},
                                               {"from": "gpt", "value": "Hi."}]})
    out["llava_data"] = root / "llava.jsonl"
    out["llava_data"].write_text("".join(json.dumps(r) + "\n" for r in records))
    out["images"] = str(images)
    pairs = [{"chosen": [{"role": "user", "content": f"Is {a} a colour?"},
                         {"role": "assistant", "content": "Yes."}],
              "rejected": [{"role": "user", "content": f"Is {a} a colour?"},
                           {"role": "assistant", "content": "No, never."}]}
             for a in ("red", "blue", "green", "teal")]
    out["pairs"] = root / "pairs.jsonl"
    out["pairs"].write_text("".join(json.dumps(r) + "\n" for r in pairs))
    return out


def _llava_options(stand_ins, name: str, arch: str) -> dict:
    tower = "siglip" if "siglip" in name else "clip"
    return {"llm_name_or_path": stand_ins[arch], "visual_encoder_name_or_path": stand_ins[tower],
            "data_path": str(stand_ins["llava_data"]), "image_folder": stand_ins["images"],
            "image_tokens": TINY_TOKENS}


def _build_llava(stand_ins, name: str, arch: str, **extra):
    cfg = load_config(LLAVA[name])
    merge_cfg_options(cfg, {**_llava_options(stand_ins, name, arch), **extra})
    dataset = BUILDER.build(cfg.train_dataloader.dataset)
    torch.manual_seed(0)
    model = BUILDER.build(cfg.model)
    return cfg, dataset, model


def _llava_loss(cfg, dataset, model):
    from xtuner.dataset.collate_fns import default_collate_fn

    batch = default_collate_fn([dataset[i] for i in range(len(dataset))],
                               use_varlen_attn=cfg.use_varlen_attn)["data"]
    model.train()
    return model(batch, mode="loss")["loss"]


def test_llava_stages_build_and_chain(stand_ins, tmp_path):
    """Pre-training (CLIP, Llama) trains the projector only; its checkpoint is the fine-tune
    stage's pretrained_pth (SigLIP tower swapped in for the second run)."""
    name = "llava_llama3_1_8b_instruct_clip_vit_large_p14_336_e1_pretrain"
    cfg, dataset, model = _build_llava(stand_ins, name, "llama")
    assert len(dataset) == 5 and cfg.max_length == 2048 - TINY_TOKENS
    sample = dataset[0]
    assert sample["input_ids"].count(IMAGE_TOKEN_INDEX) == 1
    assert tuple(sample["pixel_values"].shape) == (1, 3, IMAGE, IMAGE)
    assert model.tokens_per_image == TINY_TOKENS and model.drops_cls_token()
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"projector"}
    loss = _llava_loss(cfg, dataset, model)
    assert torch.isfinite(loss) and loss.item() > 0
    checkpoint = tmp_path / "iter_1.pth"
    torch.save({"state_dict": model.state_dict()}, checkpoint)
    # As the leaves name it: the pre-training work dir, whose last_checkpoint names the file.
    (tmp_path / "last_checkpoint").write_text(str(checkpoint))

    # The fine-tune leaf's model dict as shipped (QLoRA needs bitsandbytes): here the projector
    # of the run above reaches a Qwen2-sized LLM only when the widths match, so the chained
    # stage uses the same tiny Llama.
    pytest.importorskip("bitsandbytes")
    ft = "llava_llama3_1_8b_instruct_qlora_clip_vit_large_p14_336_lora_e1_finetune"
    cfg, dataset, tuned = _build_llava(stand_ins, ft, "llama", pretrained_pth=str(tmp_path))
    for key, value in model.projector.state_dict().items():
        torch.testing.assert_close(tuned.projector.state_dict()[key], value)
    assert len(dataset) < 5  # packed rows
    names = [n for n, p in tuned.named_parameters() if p.requires_grad]
    assert any(n.startswith("llm.") and "lora_" in n for n in names)
    assert any(n.startswith("visual_encoder.") and "lora_" in n for n in names)
    assert not any(n.startswith(("llm.", "visual_encoder.")) and "lora_" not in n for n in names)
    loss = _llava_loss(cfg, dataset, tuned)
    assert torch.isfinite(loss) and loss.item() > 0


def test_siglip_leaf_builds(stand_ins):
    name = "llava_qwen2_5_7b_instruct_siglip_so400m_p14_384_e1_pretrain"
    cfg, dataset, model = _build_llava(stand_ins, name, "qwen2")
    assert model.tokens_per_image == TINY_TOKENS and not model.drops_cls_token()
    assert type(model.visual_encoder).__name__ == "SiglipVisionModel"
    loss = _llava_loss(cfg, dataset, model)
    assert torch.isfinite(loss) and loss.item() > 0


@pytest.mark.parametrize("name,arch", [
    ("qwen2_5_7b_instruct_dpo_lora_orpo_dpo_mix_40k_e3", "qwen2"),
    ("llama3_1_8b_instruct_orpo_full_ultrafeedback_e5", "llama"),
    ("qwen2_5_7b_instruct_reward_qlora_ultrafeedback_e1", "qwen2"),
    ("internlm2_5_chat_7b_reward_lora_ultrafeedback_e1", "llama"),  # tiny Llama for remote code
])
def test_preference_leaf_builds(stand_ins, name, arch):
    from datasets import load_dataset

    from xtuner.dataset.collate_fns import preference_collate_fn

    if "qlora" in name:
        pytest.importorskip("bitsandbytes")
    cfg = load_config(PREFERENCE[name])
    options = {"pretrained_model_name_or_path": stand_ins[arch], "max_length": 64}
    if "reward" in name:
        options["reward_token_id"] = 3
    merge_cfg_options(cfg, options)
    ds_cfg = cfg.train_dataloader.dataset
    ds_cfg.update(dataset=dict(type=load_dataset, path="json",
                               data_files=dict(train=str(stand_ins["pairs"]))), num_proc=1)
    if cfg.model.llm.get("trust_remote_code"):
        cfg.model.llm.trust_remote_code = False
        cfg.tokenizer.trust_remote_code = False
    rows = BUILDER.build(ds_cfg)
    assert len(rows) >= 1
    torch.manual_seed(0)
    model = BUILDER.build(cfg.model)
    batch = preference_collate_fn([rows[0]], use_varlen_attn=cfg.use_varlen_attn)["data"]
    model.train()
    loss = model(batch, mode="loss")["loss"]
    assert torch.isfinite(loss)


# --------------------------------------------------------------------------- copy-cfg
def test_copy_cfg_of_a_llava_leaf_is_driven_by_its_settings(tmp_path):
    name = "llava_qwen2_5_7b_instruct_qlora_clip_vit_large_p14_336_lora_e1_finetune"
    assert xtuner_main(["copy-cfg", name, str(tmp_path)]) == 0
    copy = tmp_path / f"{name}_copy.py"
    text = copy.read_text(encoding="utf-8")
    assert "_base_" not in text
    assert len(re.findall(r"^#\s+PART [1-5]  ", text, flags=re.M)) == 5
    text = text.replace("data_path = './data/llava_data/LLaVA-Instruct-150K/"
                        "llava_v1_5_mix665k.json'", "data_path = '/data/mine.jsonl'")
    text = text.replace("image_tokens = 576", "image_tokens = 64")
    text = text.replace("max_length = int(2048 - image_tokens)", "max_length = 1000")
    copy.write_text(text, encoding="utf-8")
    cfg = load_config(copy)
    ds = cfg.train_dataloader.dataset
    assert (ds.data_path, ds.max_length, ds.image_tokens) == ("/data/mine.jsonl", 1000, 64)
    assert Config.fromfile(str(copy)).model.pretrained_pth.endswith(
        "llava_qwen2_5_7b_instruct_clip_vit_large_p14_336_e1_pretrain")


# --------------------------------------------------------------------------- training
def _train(tmp_path, name, options):
    work = tmp_path / "work"
    proc = subprocess.run(
        [sys.executable, "-m", "xtuner", "train", name, "--work-dir", str(work),
         "--cfg-options", *options, "default_hooks.checkpoint.interval=1000"],
        cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    checkpoint = (work / "last_checkpoint").read_text().strip()
    state = torch.load(checkpoint, weights_only=False, map_location="cpu")
    return state


def test_xtuner_train_runs_a_llava_leaf(stand_ins, tmp_path):
    name = "llava_qwen2_5_7b_instruct_clip_vit_large_p14_336_e1_pretrain"
    data = tmp_path / "two.jsonl"
    data.write_text("".join(stand_ins["llava_data"].read_text().splitlines(True)[:2]))
    options = {**_llava_options(stand_ins, name, "qwen2"), "data_path": str(data)}
    state = _train(tmp_path, name, [f"{k}={v}" for k, v in options.items()] + [
        "batch_size=1", "dataloader_num_workers=0", "custom_hooks.1.max_new_tokens=4"])
    assert state["meta"]["iter"] == 2
    assert state["state_dict"] and all(k.startswith("projector.") for k in state["state_dict"])


def test_xtuner_train_runs_a_dpo_leaf(stand_ins, tmp_path):
    name = "llama3_1_8b_instruct_dpo_full_orpo_dpo_mix_40k_e3"
    pairs = tmp_path / "two_pairs.jsonl"
    pairs.write_text("".join(stand_ins["pairs"].read_text().splitlines(True)[:2]))
    # A pair is longer than half a row here, so each of the two pairs is one row: 2 iterations.
    state = _train(tmp_path, name, [
        f"pretrained_model_name_or_path={stand_ins['llama']}", "max_length=64",
        "max_packed_length=64", "max_epochs=1", "accumulative_counts=1", "data_path=json",
        f"train_dataloader.dataset.dataset.data_files={pairs}",
        "train_dataloader.dataset.num_proc=1", "custom_hooks.1.max_new_tokens=4"])
    assert state["meta"]["iter"] == 2
