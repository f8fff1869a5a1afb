"""Image-text-to-text models through the Python training API (issue #17's multimodal half).

A tiny random Qwen2-VL (transformers' own class), a tokenizer trained in-process and its
Qwen2-VL processor are built offline; images are made with PIL. The oracles are transformers
itself (the processor's tokenization of the whole rendered chat, the model's own forward on
``pixel_values`` with its own 3-D positions, plain ``from_pretrained`` + ``generate`` on the
export), each sample run alone (for packed rows) and one process (for torchrun).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.model.gradients import assert_same_loss_and_grads
from tests.train.test_trainer_api import _env, _log, _one_line_error, _run
from xtuner.utils.constants import IGNORE_INDEX

EXAMPLE = Path(__file__).with_name("example_image_text.py")


def _assets(root: Path, arch: str) -> Path:
    from xtuner.testing.tiny_image_text import (
        build_tiny_internvl,
        build_tiny_qwen2_vl,
        write_image_text_data,
    )

    if arch == "internvl":
        build_tiny_internvl(root / "model")
    else:
        build_tiny_qwen2_vl(root / "model", version="2.5" if arch == "qwen2_5_vl" else "2")
    write_image_text_data(root / "data")
    return root


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> Path:
    """A tiny Qwen2-VL (3-D mrope positions) and its data."""
    return _assets(tmp_path_factory.mktemp("image_text_assets"), "qwen2_vl")


@pytest.fixture(scope="module")
def internvl_assets(tmp_path_factory) -> Path:
    """A tiny InternVL (1-D positions, image tiles, start/end image tokens), same data."""
    return _assets(tmp_path_factory.mktemp("internvl_assets"), "internvl")


@pytest.fixture(scope="module")
def qwen2_5_vl_assets(tmp_path_factory) -> Path:
    """A tiny Qwen2.5-VL (window attention in the vision tower), same data."""
    return _assets(tmp_path_factory.mktemp("qwen2_5_vl_assets"), "qwen2_5_vl")


@pytest.fixture(params=["qwen2_vl", "qwen2_5_vl", "internvl"])
def arch_assets(request) -> Path:
    return request.getfixturevalue({"qwen2_vl": "assets", "qwen2_5_vl": "qwen2_5_vl_assets",
                                    "internvl": "internvl_assets"}[request.param])


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_labels_cover_exactly_the_assistant_tokens(arch_assets):
    """The ids are the processor's own for the whole rendered chat; the trained tokens are
    each assistant reply plus the template's end of turn, nothing else."""
    from PIL import Image

    from xtuner.dataset.image_text import ImageTextTokenizeFunction, load_processor

    processor = load_processor(str(arch_assets / "model"))
    fn = ImageTextTokenizeFunction(processor, media_root=str(arch_assets / "data"))
    data = arch_assets / "data"
    records = _records(data / "media.jsonl") + _records(data / "text.jsonl")
    assert any(len(fn.messages(r)[1]) == 2 for r in records)  # two images in one turn
    for record in records:
        sample = fn(record)
        messages, paths = fn.messages(record)
        text = processor.apply_chat_template(messages, tokenize=False)
        images = [Image.open(p).convert("RGB") for p in paths] or None
        expected = processor(text=[text], images=images)["input_ids"][0]
        assert sample["input_ids"] == list(expected)
        runs, current = [], []
        for token, label in zip(sample["input_ids"], sample["labels"]):
            if label != IGNORE_INDEX:
                assert label == token
                current.append(token)
            elif current:
                runs.append(current)
                current = []
        runs += [current] if current else []
        replies = [m["content"] for m in record["messages"] if m["role"] == "assistant"]
        assert [processor.tokenizer.decode(r) for r in runs] == [
            f"{reply}<|im_end|>\n" for reply in replies]
        assert processor.image_token_id not in [t for r in runs for t in r]


def _model(assets, **kwargs):
    from xtuner.model.image_text import ImageTextFinetune, build_image_text_model

    path = str(assets / "model")
    kwargs.setdefault("use_activation_checkpointing", False)
    return ImageTextFinetune(dict(type=build_image_text_model,
                                  pretrained_model_name_or_path=path),
                             processor=path, **kwargs)


def test_packed_row_equals_each_sample_alone_and_transformers_own_forward(arch_assets):
    """Logits and loss of a packed row (images, two-image and text-only samples) equal those
    of each sample alone, which equal transformers' forward on the processor's output (its
    own mrope positions and image features)."""
    from xtuner.dataset.image_text import ImageTextJsonlDataset, image_text_collate_fn

    data = arch_assets / "data"
    sources = [dict(anno_path=str(data / "media.jsonl"), media_root=str(data)),
               dict(anno_path=str(data / "text.jsonl"))]
    packed = ImageTextJsonlDataset(sources, str(arch_assets / "model"), max_length=400,
                                   seed=1)
    alone = ImageTextJsonlDataset(sources, str(arch_assets / "model"), max_length=400,
                                  pack_to_max_length=False)
    row = max(range(len(packed)), key=lambda i: len(packed.rows[i]))
    members = packed.rows[row]
    assert len(members) >= 3
    assert any(packed.samples[i]["images"] for i in members)
    assert any(not packed.samples[i]["images"] for i in members)
    model = _model(arch_assets).eval()
    hf = model.llm
    batch = image_text_collate_fn([packed[row]], return_hf_format=True)
    with torch.no_grad():
        logits = hf(**{k: v for k, v in model._model_inputs(batch).items()
                       if k != "labels"}).logits[0]
        packed_loss = model.compute_loss(batch)["loss"]
    bounds = batch["cumulative_len"][0].tolist()
    processor = packed.tokenize_fns[0].processor
    losses, counts = [], []
    for k, i in enumerate(members):
        one = image_text_collate_fn([alone[alone.order.index(i)]], return_hf_format=True)
        with torch.no_grad():
            own = hf(**{k2: v for k2, v in model._model_inputs(one).items()
                        if k2 != "labels"}).logits[0]
            losses.append(float(model.compute_loss(one)["loss"]))
        counts.append(int((one["labels"][0, 1:] != IGNORE_INDEX).sum()))
        torch.testing.assert_close(logits[bounds[k]:bounds[k + 1]], own, atol=1e-4,
                                   rtol=1e-4)
        sample = packed.samples[i]
        from PIL import Image

        images = [Image.open(p).convert("RGB") for p in sample["images"]] or None
        inputs = processor(text=[sample["text"]], images=images, return_tensors="pt")
        with torch.no_grad():
            reference = hf(**inputs).logits[0]
        torch.testing.assert_close(own, reference, atol=1e-4, rtol=1e-4)
    expected = sum(loss * n for loss, n in zip(losses, counts)) / sum(counts)
    assert float(packed_loss) == pytest.approx(expected, rel=1e-5)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, assets) -> dict:
    """``python example_image_text.py``: 6 steps of 4 packed rows, HF export every 2 steps
    (newest 2 kept)."""
    tmp = tmp_path_factory.mktemp("fit")
    _run([sys.executable, str(EXAMPLE)],
         _env(tmp / "work", EXAMPLE_ASSETS=str(assets), EXAMPLE_TOTAL_STEP="6",
              EXAMPLE_HF_INTERVAL="2"), tmp)
    return {"work": tmp / "work", "log": _log(tmp / "work")}


def _generate(folder: Path, assets: Path) -> torch.Tensor:
    from PIL import Image
    from transformers import AutoModelForImageTextToText

    from xtuner.dataset.image_text import load_processor

    model = AutoModelForImageTextToText.from_pretrained(folder)
    processor = load_processor(str(folder))  # AutoProcessor wherever torchvision is installed
    messages = [{"role": "user", "content": [{"type": "image"},
                                             {"type": "text", "text": "What colour is this?"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    image = Image.open(assets / "data/images/red.png").convert("RGB")
    inputs = processor(text=[text], images=[image], return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=6, do_sample=False)
    assert out.shape[1] > inputs["input_ids"].shape[1]
    return model


def test_fit_trains_the_loss_falls_and_hf_exports_load(trained, assets):
    log = trained["log"]
    assert sorted(log) == list(range(1, 25))  # 6 steps x 4 rows
    first = sum(log[i][0] for i in range(1, 5)) / 4
    last = sum(log[i][0] for i in range(21, 25)) / 4
    assert last < first - 0.5, log
    work = trained["work"]
    # hf_interval=2, hf_max_keep=2: hf-2 was written and removed, hf-4 and hf-6 remain.
    assert sorted(p.name for p in work.glob("hf-*")) == ["hf-4", "hf-6"]
    model = _generate(work / "hf_model", assets)
    state = torch.load(work / "iter_24.pth", map_location="cpu",
                       weights_only=False)["state_dict"]
    exported = model.state_dict()
    up_proj = "model.language_model.layers.0.mlp.up_proj.weight"
    for name in ("model.visual.merger.mlp.0.weight", up_proj, "lm_head.weight"):
        torch.testing.assert_close(exported[name], state["llm." + name], msg=name)
    # The frozen vision tower is the starting one.
    from transformers import AutoModelForImageTextToText

    start = AutoModelForImageTextToText.from_pretrained(assets / "model").state_dict()
    key = "model.visual.blocks.0.attn.qkv.weight"
    torch.testing.assert_close(exported[key], start[key])
    assert not torch.equal(exported["lm_head.weight"], start["lm_head.weight"])

    # `xtuner convert pth_to_hf` writes the same folder from the training checkpoint, after
    # comparing the written model's logits (plain transformers) with the trained model's.
    out = work / "converted"
    proc = subprocess.run([sys.executable, "-m", "xtuner", "convert", "pth_to_hf",
                           str(work / "example_image_text.py"), str(work / "iter_24.pth"),
                           str(out), "--dtype", "fp32"], env=_env(work), cwd=work,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert "Parity check passed on a chat with an image and one without" in proc.stdout
    converted = _generate(out, assets).state_dict()
    for name in ("model.visual.merger.mlp.0.weight", up_proj, "lm_head.weight"):
        torch.testing.assert_close(converted[name], exported[name], msg=name)


def test_pth_to_hf_parity_check_catches_a_wrong_export(trained, monkeypatch, capsys,
                                                        tmp_path):
    """A written folder whose output head differs from the trained one by one row fails the
    converter's check: one line, exit 2, nothing left at the output path."""
    from safetensors.torch import load_file, save_file

    from xtuner.entry_point import main as xtuner
    from xtuner.model.image_text import ImageTextFinetune

    to_hf = ImageTextFinetune.to_hf

    def tampering_to_hf(self, cfg, save_dir, *args, **kwargs):
        to_hf(self, cfg, save_dir, *args, **kwargs)
        for weights in Path(save_dir).glob("*.safetensors"):
            state = load_file(str(weights))
            if "lm_head.weight" in state:
                state["lm_head.weight"][0] += 1.0
                save_file(state, str(weights), metadata={"format": "pt"})

    monkeypatch.setattr(ImageTextFinetune, "to_hf", tampering_to_hf)
    work = trained["work"]
    monkeypatch.chdir(work)
    for key, value in _env(work).items():
        if key.startswith("EXAMPLE_") or key == "HF_HUB_OFFLINE":
            monkeypatch.setenv(key, value)
    out = tmp_path / "converted"
    assert xtuner(["convert", "pth_to_hf", str(work / "example_image_text.py"),
                   str(work / "iter_24.pth"), str(out), "--dtype", "fp32"]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("xtuner convert pth_to_hf")]
    assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
    assert "parity check failed: the written image-text model gives logits" in lines[0]
    assert not out.exists()


def test_pth_to_hf_frees_the_trained_model_before_loading_the_written_one(trained, monkeypatch,
                                                                          tmp_path):
    """The parity check loads the written model only once nothing keeps the trained one."""
    import transformers

    from tests.trained_model_watch import watch_trained_model_at_load
    from xtuner.entry_point import main as xtuner

    alive_at_load = watch_trained_model_at_load(monkeypatch,
                                                transformers.AutoModelForImageTextToText)
    work = trained["work"]
    monkeypatch.chdir(work)
    for key, value in _env(work).items():
        if key.startswith("EXAMPLE_") or key == "HF_HUB_OFFLINE":
            monkeypatch.setenv(key, value)
    assert xtuner(["convert", "pth_to_hf", str(work / "example_image_text.py"),
                   str(work / "iter_24.pth"), str(tmp_path / "converted"), "--dtype",
                   "fp32"]) == 0
    assert alive_at_load == [False]


def test_lora_with_a_trained_vision_tower_exports_merged(tmp_path, assets):
    """LoRA on the language model, the vision tower trained in full: the export (adapters
    merged) gives the trained model's logits and loads with plain transformers."""
    from xtuner.dataset.image_text import ImageTextJsonlDataset, image_text_collate_fn

    work = tmp_path / "work"
    _run([sys.executable, str(EXAMPLE)],
         _env(work, EXAMPLE_ASSETS=str(assets), EXAMPLE_TOTAL_STEP="2", EXAMPLE_LORA="1",
              EXAMPLE_FREEZE_VISION="0"), tmp_path)
    from peft import LoraConfig

    model = _model(assets, lora=LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0),
                   freeze_vision=False).eval()
    state = torch.load(work / "iter_8.pth", map_location="cpu", weights_only=False)
    model.load_state_dict(state["state_dict"])
    assert any("lora_A" in k for k in state["state_dict"])
    assert any("visual.modules_to_save" in k for k in state["state_dict"])  # trained in full
    exported = _generate(work / "hf_model", assets).eval()
    data = assets / "data"
    ds = ImageTextJsonlDataset([dict(anno_path=str(data / "media.jsonl"),
                                     media_root=str(data))], str(assets / "model"),
                               max_length=256, pack_to_max_length=False)
    batch = image_text_collate_fn([ds[1]], return_hf_format=True)
    with torch.no_grad():
        inputs = {k: v for k, v in model._model_inputs(batch).items() if k != "labels"}
        trained_logits = model.llm(**inputs).logits
        sample = ds.samples[ds.order[1]]
        from PIL import Image

        images = [Image.open(p).convert("RGB") for p in sample["images"]]
        processor = ds.tokenize_fns[0].processor
        ref = exported(**processor(text=[sample["text"]], images=images,
                                   return_tensors="pt")).logits
    torch.testing.assert_close(ref, trained_logits, atol=1e-4, rtol=1e-4)


def test_internvl_trains_and_exports(tmp_path, internvl_assets):
    """InternVL through fit(): the export loads with plain transformers and generates."""
    work = tmp_path / "work"
    _run([sys.executable, str(EXAMPLE)],
         _env(work, EXAMPLE_ASSETS=str(internvl_assets), EXAMPLE_TOTAL_STEP="2"), tmp_path)
    assert sorted(_log(work)) == list(range(1, 9))
    model = _generate(work / "hf_model", internvl_assets)
    assert type(model).__name__ == "InternVLForConditionalGeneration"


def test_torchrun_two_processes_match_one_process(tmp_path, assets):
    """2 ranks x 2 accumulated rows == 1 rank x 4 rows on the same global batch, with the
    vision tower training (text-only rows run a blank image, so DDP sees every weight)."""
    env = dict(EXAMPLE_ASSETS=str(assets), EXAMPLE_TOTAL_STEP="2",
               EXAMPLE_FREEZE_VISION="0")
    _run([sys.executable, str(EXAMPLE)], _env(tmp_path / "one", **env), tmp_path)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
           "--standalone", str(EXAMPLE)]
    _run(cmd, _env(tmp_path / "two", **env), tmp_path)
    one, two = _log(tmp_path / "one"), _log(tmp_path / "two")
    assert sorted(one) == list(range(1, 9)) and sorted(two) == list(range(1, 5))
    for j in two:
        assert two[j][0] == pytest.approx(one[2 * j - 1][0], abs=2e-4), (j, two, one)
        if two[j][1] is not None:
            assert two[j][1] == pytest.approx(one[2 * j][1], rel=1e-3), (j, two, one)
    assert any(two[j][1] for j in two)


# -- validation (no training) ------------------------------------------------------------

def _fields(assets, **over):
    from xtuner.train import (
        DataloaderConfig,
        DatasetConfig,
        ImageTextModelConfig,
        ImageTextTokenizeFnConfig,
    )

    data = assets / "data"
    fields = dict(
        model_cfg=ImageTextModelConfig(path=str(assets / "model")),
        dataset_config_list=[{"dataset": DatasetConfig(anno_path=str(data / "media.jsonl"),
                                                       media_root=str(data)),
                              "tokenize_fn": ImageTextTokenizeFnConfig()}],
        dataloader_cfg=DataloaderConfig(pack_max_length=256), total_step=2)
    fields.update(over)
    return fields


def test_bad_settings_are_one_line_errors(assets, tmp_path):
    from xtuner.train import (
        DataloaderConfig,
        DatasetConfig,
        ImageTextModelConfig,
        TokenizeFnConfig,
        Trainer,
        TrainerConfig,
    )
    from xtuner.utils.errors import DataError

    msg = _one_line_error(ImageTextModelConfig, path="x", freeze_visoin=False)
    assert "unknown field 'freeze_visoin'" in msg and "'freeze_vision'" in msg
    msg = _one_line_error(TrainerConfig, **_fields(
        assets, dataloader_cfg=DataloaderConfig(pack_max_length=256, pack_level="hard")))
    assert "pack_level='hard' would cut samples inside their images" in msg
    msg = _one_line_error(TrainerConfig, **_fields(
        assets, model_cfg=ImageTextModelConfig(path="x", use_varlen_attn=False)))
    assert "needs model_cfg.use_varlen_attn=True" in msg
    # Without packing, one sample per row needs no varlen attention.
    TrainerConfig(**_fields(assets, model_cfg=ImageTextModelConfig(path="x",
                                                                    use_varlen_attn=False),
                            dataloader_cfg=DataloaderConfig(pack_level="none")))
    item = {"dataset": DatasetConfig(anno_path="x.jsonl"),
            "tokenize_fn": TokenizeFnConfig(template="qwen_chat")}
    msg = _one_line_error(TrainerConfig, **_fields(assets, dataset_config_list=[item]))
    assert "'tokenize_fn' a ImageTextTokenizeFnConfig for a ImageTextModelConfig" in msg
    assert "hf_interval must be >= 1" in _one_line_error(
        TrainerConfig, **_fields(assets, hf_interval=0))
    assert "hf_max_keep needs hf_interval" in _one_line_error(
        TrainerConfig, **_fields(assets, hf_max_keep=2))
    cfg = Trainer(**_fields(assets, hf_interval=5, hf_max_keep=3)).build_config()
    hook = cfg.custom_hooks[-1]
    assert (hook["interval"], hook["max_keep"]) == (5, 3)

    # A record whose image is missing: one line naming file:line and the fix.
    bad = tmp_path / "bad.jsonl"
    record = _records(assets / "data/media.jsonl")[0]
    record["messages"][0]["content"][0]["image_url"]["url"] = "images/nope.png"
    bad.write_text(json.dumps(_records(assets / "data/text.jsonl")[0]) + "\n"
                   + json.dumps(record) + "\n")
    from xtuner.dataset.image_text import ImageTextJsonlDataset

    with pytest.raises(DataError) as info:
        ImageTextJsonlDataset([dict(anno_path=str(bad), media_root=str(assets / "data"))],
                              str(assets / "model"), max_length=256)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{bad}:2: image 'images/nope.png' not found")
    assert "media_root" in msg


def test_activation_checkpointing_keeps_loss_and_gradients(assets):
    """Checkpointing (vision blocks and decoder layers) changes neither the loss nor the
    gradients, with the vision tower trained, in full and with LoRA."""
    from peft import LoraConfig

    from xtuner.dataset.image_text import ImageTextJsonlDataset, image_text_collate_fn

    data = assets / "data"
    ds = ImageTextJsonlDataset([dict(anno_path=str(data / "media.jsonl"), media_root=str(data))],
                               str(assets / "model"), max_length=256)
    batch = image_text_collate_fn([ds[0]], return_hf_format=True)
    for lora in (None, LoraConfig(r=4, lora_dropout=0.0)):
        runs = []
        for checkpointing in (False, True):
            torch.manual_seed(0)  # the same LoRA initialisation
            model = _model(assets, lora=lora, freeze_vision=False,
                           use_activation_checkpointing=checkpointing)
            loss = model.compute_loss(batch)["loss"]
            loss.backward()
            runs.append((loss.detach(), {n: p.grad for n, p in model.named_parameters()
                                         if p.grad is not None}))
        assert model.is_checkpointing_activations
        assert model.reentrant_checkpointing is False  # the image-text default
        torch.testing.assert_close(runs[0][0], runs[1][0])
        assert runs[0][1].keys() == runs[1][1].keys()
        assert any("visual" in n for n in runs[0][1])
        for name, grad in runs[0][1].items():
            torch.testing.assert_close(runs[1][1][name], grad, msg=name)


def test_checkpointing_runs_no_backward_through_a_frozen_vision_tower(assets):
    """LoRA on the language model, the tower frozen: with checkpointing (non-reentrant, the
    image-text default) no backward pass reaches the tower, as without checkpointing, and
    the loss and gradients are the same."""
    from peft import LoraConfig

    from xtuner.dataset.image_text import ImageTextJsonlDataset, image_text_collate_fn

    data = assets / "data"
    ds = ImageTextJsonlDataset([dict(anno_path=str(data / "media.jsonl"), media_root=str(data))],
                               str(assets / "model"), max_length=256)
    batch = image_text_collate_fn([ds[0]], return_hf_format=True)
    runs = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = _model(assets, lora=LoraConfig(r=4, lora_dropout=0.0), freeze_vision=True,
                       use_activation_checkpointing=checkpointing)
        tower = next(m for n, m in model.llm.named_modules() if n.endswith(model.vision_name))
        backward_calls = []
        for block in tower.modules():
            if block is not tower and hasattr(block, "gradient_checkpointing"):
                block.register_full_backward_hook(lambda *a, calls=backward_calls: calls.append(1))
                break
        loss = model.compute_loss(batch)["loss"]
        loss.backward()
        assert backward_calls == [], checkpointing
        runs.append((loss.item(), {n: p.grad.clone() for n, p in model.named_parameters()
                                   if p.grad is not None}))
    assert_same_loss_and_grads(*runs)
