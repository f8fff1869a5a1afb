"""Image-text fine-tuning through the Python Trainer API at real shapes on one GPU.

A Qwen2-VL-2B-shaped ``Qwen2VLForConditionalGeneration`` (random init from a config; no
hub access needed), a tokenizer trained in-process, Qwen2-VL's processor; 448x448 PIL images
(256 image tokens each) mixed with pure-text records, packed into rows of
``--pack-max-length`` tokens, loss on assistant turns, vision tower frozen, full fine-tuning
of the rest in bf16 (``--lora`` for LoRA). Runs ``Trainer(...).fit()`` (the example's path),
then prints tokens/s (language-model tokens, after the warm-up steps), peak GPU memory, the
first and last losses, and checks that the HF export loads with plain
``AutoModelForImageTextToText`` + ``AutoProcessor`` and generates.

    python tests/gpu/trainer_image_text_benchmark.py                 # one H200, < 4 min
    python tests/gpu/trainer_image_text_benchmark.py --device cpu --tiny   # smoke test
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def _args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--tiny", action="store_true", help="tiny shapes (smoke test)")
    parser.add_argument("--work-dir", default="/tmp/image_text_bench")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps")
    parser.add_argument("--pack-max-length", type=int, default=None)
    parser.add_argument("--lora", action="store_true")
    parser.add_argument("--checkpointing", action="store_true",
                        help="activation checkpointing on every layer")
    return parser.parse_args(argv)


def _write_data(root: Path, num_media: int, num_text: int, image_side: int) -> None:
    """Records with long assistant replies (so rows hold text as well as images)."""
    import random

    from PIL import Image

    rng = random.Random(0)
    words = ("red green blue yellow picture colour shape line light dark small large "
             "the a of and is in on with this that it").split()
    (root / "images").mkdir(parents=True, exist_ok=True)
    for i in range(8):
        Image.effect_noise((image_side, image_side), 40 + 10 * i).convert("RGB").save(
            root / "images" / f"{i}.png")

    def reply(n):
        return " ".join(rng.choice(words) for _ in range(n))

    with open(root / "media.jsonl", "w", encoding="utf-8") as f:
        for i in range(num_media):
            content = [{"type": "image_url", "image_url": {"url": f"images/{i % 8}.png"}},
                       {"type": "text", "text": "Describe this picture."}]
            f.write(json.dumps({"messages": [
                {"role": "user", "content": content},
                {"role": "assistant", "content": reply(rng.randint(80, 400))}]}) + "\n")
    with open(root / "text.jsonl", "w", encoding="utf-8") as f:
        for _ in range(num_text):
            f.write(json.dumps({"messages": [
                {"role": "user", "content": reply(30)},
                {"role": "assistant", "content": reply(rng.randint(100, 600))}]}) + "\n")


def main(argv=None) -> int:
    args = _args(argv)
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before torch looks for a GPU
    import torch
    from mmengine.hooks import Hook

    from xtuner.engine.hooks import ThroughputHook
    from xtuner.engine.runner.build import build_runner
    from xtuner.testing.tiny_image_text import QWEN2_VL_2B_SHAPES, build_tiny_qwen2_vl
    from xtuner.train import (
        AdamWConfig,
        CELossConfig,
        DataloaderConfig,
        DatasetConfig,
        ImageTextModelConfig,
        ImageTextTokenizeFnConfig,
        LRConfig,
        Trainer,
    )

    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device; use --device cpu --tiny for a smoke test", file=sys.stderr)
        return 2
    work = Path(args.work_dir)
    tiny = args.tiny
    steps = args.steps or (2 if tiny else 24)
    pack = args.pack_max_length or (512 if tiny else 8192)
    shapes = {} if tiny else dict(QWEN2_VL_2B_SHAPES)
    side = 112 if tiny else 448  # 448x448: 32x32 patches, 256 image tokens
    model_dir = work / "model"
    t0 = time.perf_counter()
    build_tiny_qwen2_vl(model_dir, save_weights=tiny, max_pixels=side * side,
                        min_pixels=56 * 56, **shapes)
    data = work / "data"
    _write_data(data, num_media=16 if tiny else 300, num_text=8 if tiny else 80,
                image_side=side)
    lora = None
    if args.lora:
        from peft import LoraConfig

        lora = LoraConfig(r=64, lora_alpha=16, lora_dropout=0.0)
    dtype = "float32" if args.device == "cpu" else "bfloat16"
    trainer = Trainer(
        load_from=str(model_dir) if tiny else None,  # real shapes: random init
        model_cfg=ImageTextModelConfig(path=str(model_dir), dtype=dtype, lora=lora,
                                       use_activation_checkpointing=args.checkpointing),
        dataset_config_list=[
            {"dataset": DatasetConfig(name="media", anno_path=str(data / "media.jsonl"),
                                      media_root=str(data)),
             "tokenize_fn": ImageTextTokenizeFnConfig()},
            {"dataset": DatasetConfig(name="text", anno_path=str(data / "text.jsonl")),
             "tokenize_fn": ImageTextTokenizeFnConfig()}],
        dataloader_cfg=DataloaderConfig(pack_max_length=pack, num_workers=0 if tiny else 4),
        optim_cfg=AdamWConfig(lr=1e-5, foreach=False),
        lr_cfg=LRConfig(lr_type="cosine", warmup_ratio=0.0),
        loss_cfg=CELossConfig(mode="eager"),
        global_batch_size=1, total_step=steps, work_dir=str(work / "work"), log_interval=1,
        checkpoint_interval=None, seed=0)

    class Measure(Hook):
        """Tokens, time and peak memory of the iterations after the warm-up ones.

        Runs before mmengine's LoggerHook, which resets the CUDA peak statistics each time it
        logs, and stops the clock at the last iteration (the HF export after the run is not
        training time)."""

        priority = "NORMAL"
        warmup = 1 if tiny else 4

        def __init__(self):
            self.tokens, self.start, self.end, self.losses, self.peak = 0, None, None, [], 0

        def before_train_iter(self, runner, batch_idx, data_batch=None):
            if runner.iter == self.warmup:
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                self.start = time.perf_counter()

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            self.losses.append(float(outputs["loss"]))  # float() waits for the step
            if torch.cuda.is_available():
                torch.cuda.synchronize()
                self.peak = max(self.peak, torch.cuda.max_memory_allocated())
            if self.start is not None:
                self.tokens += sum(ThroughputHook.sample_lengths(data_batch["data"]))
                self.end = time.perf_counter()

    cfg = trainer.prepared_config()
    cfg.default_hooks.checkpoint.save_last = False  # a 2B model's optimizer state: minutes
    runner = build_runner(cfg)
    measure = Measure()
    runner.register_hook(measure)
    setup = time.perf_counter() - t0
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    runner.train()
    elapsed = (measure.end - measure.start) if measure.start is not None else 0.0
    print(f"setup (model, data, runner): {setup:.1f}s")
    if measure.tokens and elapsed > 0:
        timed = len(measure.losses) - Measure.warmup
        print(f"tokens/s: {measure.tokens / elapsed:.0f} over {timed} steps of up to {pack} "
              "tokens")
    if torch.cuda.is_available():
        print(f"peak memory: {measure.peak / 2**30:.1f} GiB allocated")
    print(f"losses: first {measure.losses[:3]}, last {measure.losses[-3:]}")

    # The export loads with plain transformers (AutoProcessor where torchvision is
    # installed) and generates.
    from PIL import Image
    from transformers import AutoModelForImageTextToText

    from xtuner.dataset.image_text import load_processor

    folder = work / "work" / "hf_model"
    model = AutoModelForImageTextToText.from_pretrained(folder, dtype="auto").to(
        args.device)
    processor = load_processor(str(folder))
    messages = [{"role": "user", "content": [{"type": "image"},
                                             {"type": "text", "text": "Describe it."}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[text], images=[Image.open(data / "images/0.png").convert("RGB")],
                       return_tensors="pt").to(args.device)
    out = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    new = out.shape[1] - inputs["input_ids"].shape[1]
    print(f"export: {type(model).__name__} + {type(processor).__name__} generated {new} "
          f"tokens")
    return 0 if new > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
