"""``LLaVAModel``: the oracle is transformers' own ``LlavaForConditionalGeneration`` built
from the same parts, and each sample run alone."""
from __future__ import annotations

import pytest
import torch

from tests.model.gradients import assert_same_loss_and_grads, step_loss_and_grads
from xtuner.utils.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX

IMAGE = 32
PATCH = 8
PATCHES = (IMAGE // PATCH) ** 2  # 16 features per image


def _vision_dir(root, kind: str) -> str:
    from transformers import (
        CLIPVisionConfig,
        CLIPVisionModel,
        SiglipVisionConfig,
        SiglipVisionModel,
    )

    config_cls, model_cls = {"clip": (CLIPVisionConfig, CLIPVisionModel),
                             "siglip": (SiglipVisionConfig, SiglipVisionModel)}[kind]
    path = root / kind
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = model_cls(config_cls(hidden_size=24, intermediate_size=48, num_hidden_layers=3,
                                     num_attention_heads=4, image_size=IMAGE,
                                     patch_size=PATCH))
    model.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def towers(tmp_path_factory):
    root = tmp_path_factory.mktemp("towers")
    return {kind: _vision_dir(root, kind) for kind in ("clip", "siglip")}


def _build(llama_dir, tower_dir, **kw):
    from transformers import AutoModel, AutoModelForCausalLM

    from xtuner.model import LLaVAModel

    kw.setdefault("use_activation_checkpointing", False)
    return LLaVAModel(
        llm=dict(type=AutoModelForCausalLM.from_pretrained,
                 pretrained_model_name_or_path=llama_dir, dtype=torch.float32),
        visual_encoder=dict(type=AutoModel.from_pretrained,
                            pretrained_model_name_or_path=tower_dir),
        use_liger_kernel=False, **kw)


def _images(count: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(count, 3, IMAGE, IMAGE, generator=g)


def _hf_oracle(model, image_token_id: int, drop_cls: bool):
    from xtuner.model.llava_hf import build_llava_hf

    return build_llava_hf(model.llm, model.visual_encoder, model.projector,
                          image_token_id=image_token_id, visual_select_layer=-2,
                          drop_cls_token=drop_cls, image_seq_length=PATCHES)


def _expand(ids: list[int], token: int) -> list[int]:
    out = []
    for i in ids:
        out += [token] * PATCHES if i == IMAGE_TOKEN_INDEX else [i]
    return out


@pytest.mark.parametrize("tower,drop_cls", [("clip", True), ("siglip", False)])
@pytest.mark.parametrize("num_images", [1, 2])
def test_logits_equal_transformers_llava(llama_dir, towers, tower, drop_cls, num_images):
    """One sample with one or two images anywhere in the text: our logits are those of
    transformers' Llava on the same weights (CLIP drops its class token, SigLIP has none)."""
    model = _build(llama_dir, towers[tower]).eval()
    ids = [1, 7, 8, IMAGE_TOKEN_INDEX, 9, 10] + ([11, IMAGE_TOKEN_INDEX, 12] if num_images > 1
                                                  else [])
    pixels = _images(num_images)
    pad = model.llm.config.pad_token_id
    hf = _hf_oracle(model, pad, drop_cls)
    with torch.no_grad():
        ours = model({"input_ids": torch.tensor([ids]), "pixel_values": pixels},
                     mode="predict")[0]["logits"]
        theirs = hf(input_ids=torch.tensor([_expand(ids, pad)]), pixel_values=pixels).logits[0]
    assert ours.shape == theirs.shape == (len(ids) + num_images * (PATCHES - 1),
                                          model.llm.config.vocab_size)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)


def test_projector_keeps_v0s_weight_names(llama_dir, towers):
    model = _build(llama_dir, towers["clip"], freeze_llm=True, freeze_visual_encoder=True)
    # Frozen parts come from their own folders: a checkpoint holds the projector only.
    assert sorted(model.state_dict()) == ["projector.model.0.bias", "projector.model.0.weight",
                                          "projector.model.2.bias", "projector.model.2.weight"]


def test_text_only_batch_keeps_the_vision_side_in_the_graph(llama_dir, towers):
    """No image in the batch: the loss is the LLM's own on the text, and the projector and
    tower still get (zero) gradients, so DDP ranks agree on what was used."""
    model = _build(llama_dir, towers["clip"]).train()
    ids = torch.tensor([[1, 7, 8, 9, 10, 11]])
    labels = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 8, 9, 10, 11]])
    loss = model({"input_ids": ids, "labels": labels}, mode="loss")["loss"]
    plain = model.llm(input_ids=ids, labels=labels).loss
    torch.testing.assert_close(loss, plain)
    loss.backward()
    for name, param in list(model.projector.named_parameters()) + \
            list(model.visual_encoder.named_parameters())[:2]:
        assert param.grad is not None, name
        assert not param.grad.any(), name


def test_packed_multimodal_rows_equal_each_sample_alone(llama_dir, towers):
    """Two image samples and a text-only one packed into one varlen row: each sample's
    logits and loss are those of the sample alone."""
    from xtuner.dataset.collate_fns import default_collate_fn

    model = _build(llama_dir, towers["clip"], use_varlen_attn=True).eval()
    samples = [
        {"input_ids": [1, IMAGE_TOKEN_INDEX, 7, 8, 9], "labels": [-100, -100, -100, 8, 9],
         "pixel_values": _images(1, 1)},
        {"input_ids": [1, 10, 11, 12], "labels": [-100, -100, 11, 12]},
        {"input_ids": [1, 13, IMAGE_TOKEN_INDEX, 14, IMAGE_TOKEN_INDEX, 15, 16],
         "labels": [-100] * 5 + [15, 16], "pixel_values": _images(2, 2)},
    ]
    row = {"input_ids": sum((s["input_ids"] for s in samples), []),
           "labels": sum((s["labels"] for s in samples), []),
           "position_ids": sum((list(range(len(s["input_ids"]))) for s in samples), []),
           "cumulative_len": [0, 5, 9, 16],
           "pixel_values": torch.cat([samples[0]["pixel_values"],
                                      samples[2]["pixel_values"]])}
    packed = default_collate_fn([row], use_varlen_attn=True, return_hf_format=True)
    with torch.no_grad():
        logits = model(packed, mode="predict")[0]["logits"]
        start = 0
        for sample in samples:
            alone = default_collate_fn([sample], return_hf_format=True)
            ref = model(alone, mode="predict")[0]["logits"]
            torch.testing.assert_close(logits[start:start + len(ref)], ref, rtol=1e-4,
                                       atol=1e-5)
            start += len(ref)
        assert start == len(logits)


def test_placeholders_and_images_must_match(llama_dir, towers):
    model = _build(llama_dir, towers["clip"]).eval()
    with pytest.raises(ValueError, match="2 <image> placeholders but 1 images"):
        model({"input_ids": torch.tensor([[1, IMAGE_TOKEN_INDEX, IMAGE_TOKEN_INDEX]]),
               "pixel_values": _images(1)}, mode="predict")


def test_separate_learning_rates_for_projector_tower_and_llm(llama_dir, towers):
    """mmengine's paramwise_cfg gives each part its own learning rate (v0 #813: SigLIP needs
    a smaller one than the projector)."""
    from mmengine.optim import build_optim_wrapper

    model = _build(llama_dir, towers["siglip"])
    wrapper = build_optim_wrapper(model, dict(
        optimizer=dict(type=torch.optim.AdamW, lr=1e-3),
        paramwise_cfg=dict(custom_keys={"visual_encoder": dict(lr_mult=0.1),
                                        "llm": dict(lr_mult=0.5)})))
    lrs = {}
    names = {id(p): n for n, p in model.named_parameters()}
    for group in wrapper.optimizer.param_groups:
        for p in group["params"]:
            lrs[names[id(p)].split(".")[0]] = group["lr"]
    assert lrs == {"llm": pytest.approx(5e-4), "visual_encoder": pytest.approx(1e-4),
                   "projector": pytest.approx(1e-3)}


@pytest.mark.parametrize("use_lora", [False, True])
def test_huggingface_export_loads_in_plain_transformers(llama_dir, towers, tmp_path, use_lora):
    """`--save-format huggingface`: plain transformers loads model and processor, the
    processor expands <image> itself, and the logits on a real image are the trained
    model's (LoRA merged)."""
    from mmengine.config import Config
    from peft import LoraConfig
    from PIL import Image
    from transformers import (
        AutoProcessor,
        AutoTokenizer,
        CLIPImageProcessor,
        LlavaForConditionalGeneration,
    )

    from xtuner.model.llava_hf import save_llava

    lora = dict(type=LoraConfig, r=8, lora_alpha=16, target_modules=None,
                task_type="CAUSAL_LM") if use_lora else None
    model = _build(llama_dir, towers["clip"], llm_lora=lora).eval()
    if use_lora:  # make the adapters matter
        for name, p in model.llm.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(p, std=0.02)
    cfg = Config(dict(
        tokenizer=dict(type=AutoTokenizer.from_pretrained, pretrained_model_name_or_path=llama_dir),
        image_processor=dict(type=CLIPImageProcessor, size={"shortest_edge": IMAGE},
                             crop_size={"height": IMAGE, "width": IMAGE}),
        model=dict(llm=dict(pretrained_model_name_or_path=llama_dir))))
    image = Image.new("RGB", (IMAGE, IMAGE), (200, 30, 30))
    processor = CLIPImageProcessor(size={"shortest_edge": IMAGE},
                                   crop_size={"height": IMAGE, "width": IMAGE})
    pixels = processor(images=[image], return_tensors="pt")["pixel_values"]
    tok = AutoTokenizer.from_pretrained(llama_dir)
    ids = tok.encode("USER: ", add_special_tokens=True) + [IMAGE_TOKEN_INDEX] + \
        tok.encode("\nWhat is it? ASSISTANT:", add_special_tokens=False)
    with torch.no_grad():
        ours = model({"input_ids": torch.tensor([ids]), "pixel_values": pixels},
                     mode="predict")[0]["logits"]
    save_llava(model, cfg, tmp_path / "hf", "huggingface", dtype=torch.float32)

    hf = LlavaForConditionalGeneration.from_pretrained(tmp_path / "hf").eval()
    hf_processor = AutoProcessor.from_pretrained(tmp_path / "hf")
    inputs = hf_processor(images=[image], text="USER: <image>\nWhat is it? ASSISTANT:",
                          return_tensors="pt")
    image_id = hf.config.image_token_id
    assert int((inputs["input_ids"] == image_id).sum()) == PATCHES
    collapsed = [i for j, i in enumerate(inputs["input_ids"][0].tolist())
                 if i != image_id or inputs["input_ids"][0, j - 1] != image_id]
    assert [IMAGE_TOKEN_INDEX if i == image_id else i for i in collapsed] == ids
    with torch.no_grad():
        theirs = hf(**inputs).logits[0, :, :ours.shape[-1]]
    torch.testing.assert_close(theirs, ours, rtol=1e-4, atol=1e-4)
    out = hf.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 3


def test_qlora_llava_exports_merged_into_its_16_bit_base(llama_dir, towers, tmp_path):
    """A QLoRA-trained LLaVA (4-bit LLM + LoRA, which v0 refused to export) is written as a
    plain transformers Llava whose LLM is the 16-bit base with peft's own merge of the adapter:
    its logits on an image equal a LLaVA built around that merged LLM."""
    pytest.importorskip("bitsandbytes")
    from mmengine.config import Config
    from peft import LoraConfig, PeftModel
    from transformers import (
        AutoModel,
        AutoModelForCausalLM,
        AutoTokenizer,
        BitsAndBytesConfig,
        CLIPImageProcessor,
        LlavaForConditionalGeneration,
    )

    from xtuner.model import LLaVAModel
    from xtuner.model.llava_hf import save_llava

    llm_cfg = dict(type=AutoModelForCausalLM.from_pretrained,
                   pretrained_model_name_or_path=llama_dir, dtype=torch.float32,
                   quantization_config=dict(type=BitsAndBytesConfig, load_in_4bit=True,
                                            bnb_4bit_compute_dtype=torch.float32,
                                            bnb_4bit_quant_type="nf4"))
    model = LLaVAModel(llm=llm_cfg, visual_encoder=AutoModel.from_pretrained(towers["clip"]),
                       llm_lora=dict(type=LoraConfig, r=8, lora_alpha=16, target_modules=None,
                                     task_type="CAUSAL_LM"),
                       use_activation_checkpointing=False, use_liger_kernel=False).eval()
    for name, p in model.llm.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.02)
    cfg = Config(dict(
        tokenizer=dict(type=AutoTokenizer.from_pretrained, pretrained_model_name_or_path=llama_dir),
        image_processor=dict(type=CLIPImageProcessor, size={"shortest_edge": IMAGE},
                             crop_size={"height": IMAGE, "width": IMAGE}),
        model=dict(llm=llm_cfg)))
    model.llm.save_pretrained(tmp_path / "adapter")  # what the run trained
    save_llava(model, cfg, tmp_path / "hf", "huggingface", dtype=torch.float32)

    base = AutoModelForCausalLM.from_pretrained(llama_dir, dtype=torch.float32)
    merged = PeftModel.from_pretrained(base, tmp_path / "adapter").merge_and_unload()
    reference = LLaVAModel(llm=merged, visual_encoder=model.visual_encoder,
                           use_activation_checkpointing=False, use_liger_kernel=False).eval()
    reference.projector = model.projector
    hf = LlavaForConditionalGeneration.from_pretrained(tmp_path / "hf").eval()
    ids = [1, 7, IMAGE_TOKEN_INDEX, 9]
    pixels = _images(1)
    with torch.no_grad():
        want = reference({"input_ids": torch.tensor([ids]), "pixel_values": pixels},
                         mode="predict")[0]["logits"]
        image_id = hf.config.image_token_id
        got = hf(input_ids=torch.tensor([_expand(ids, image_id)]),
                 pixel_values=pixels).logits[0, :, :want.shape[-1]]
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("train_tower", [False, True], ids=["frozen_tower", "trained_tower"])
def test_activation_checkpointing_keeps_the_loss_and_every_gradient(llama_dir, towers,
                                                                     train_tower):
    """Checkpointing on (the LLM's layers with the default reentrant kind, a trained tower's
    with the non-reentrant one) gives the loss and gradients of no checkpointing: LoRA on
    the LLM with frozen embeddings, the projector, and the tower when it trains."""
    from peft import LoraConfig

    ids = torch.tensor([[1, 7, IMAGE_TOKEN_INDEX, 8, 9, 10, 11]])
    labels = torch.tensor([[IGNORE_INDEX] * 4 + [9, 10, 11]])
    results = []
    for checkpointing in (False, True):
        torch.manual_seed(0)  # the projector and the adapters (B drawn too: all get grads)
        model = _build(llama_dir, towers["clip"], use_activation_checkpointing=checkpointing,
                       freeze_visual_encoder=not train_tower,
                       llm_lora=dict(type=LoraConfig, r=8, lora_alpha=16, target_modules=None,
                                     init_lora_weights=False, task_type="CAUSAL_LM")).train()
        assert model.is_checkpointing_activations is checkpointing
        # (the tower's layers after visual_select_layer=-2 and its last norm get no gradient)
        loss, grads = step_loss_and_grads(
            model, {"input_ids": ids, "labels": labels, "pixel_values": _images(1)})
        assert all(g.abs().sum() > 0 for g in grads.values())
        assert any(n.startswith("visual_encoder") for n in grads) is train_tower
        assert any("lora_A" in n for n in grads) and any(n.startswith("projector") for n in grads)
        results.append((loss, grads))
    assert_same_loss_and_grads(*results)
