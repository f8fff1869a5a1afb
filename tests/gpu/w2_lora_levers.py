"""W2's step without the optimizer, by what each LoRA layer does: float32 adapters under fp16
autocast (peft's default, and XTuner v0's) against 16-bit adapters, with and without LoRA
dropout, every layer checkpointed or none. One model, switched in place between variants.

    python3 tests/gpu/w2_lora_levers.py MODEL_DIR [--steps 10] [--liger auto|False] [--compile]
                                         [--fused-lora True|False]
                                         [--variants fp32+drop fp16+drop fp16 fp32]

MODEL_DIR: a Llama-3-8B-shaped folder (tests/gpu/v0_reference/make_model_and_data.py). Prints,
per variant, the step time (forward + backward, synchronised), the host time to launch it
(the step is launch-bound when the two are close) and the peak memory.
"""
import argparse
import time

import torch
from peft import LoraConfig
from transformers import AutoModelForCausalLM, BitsAndBytesConfig

from xtuner.benchmark.synthetic import SyntheticPackedDataset
from xtuner.dataset.collate_fns import default_collate_fn
from xtuner.model import SupervisedFinetune

parser = argparse.ArgumentParser()
parser.add_argument("model_dir")
parser.add_argument("--steps", type=int, default=10)
parser.add_argument("--liger", default="auto")
parser.add_argument("--compile", action="store_true", help="torch.compile each decoder layer")
parser.add_argument("--fused-lora", default="True", choices=["True", "False"])
parser.add_argument("--variants", nargs="+", default=["fp32+drop", "fp16+drop", "fp16", "fp32"],
                    help="adapter dtype, +drop for LoRA dropout 0.1")
args = parser.parse_args()

model = SupervisedFinetune(
    llm=dict(type=AutoModelForCausalLM.from_pretrained,
             pretrained_model_name_or_path=args.model_dir, dtype=torch.float16,
             quantization_config=BitsAndBytesConfig(
                 load_in_4bit=True, bnb_4bit_compute_dtype=torch.float16,
                 bnb_4bit_use_double_quant=True, bnb_4bit_quant_type="nf4")),
    lora=LoraConfig(r=64, lora_alpha=16, lora_dropout=0.1, task_type="CAUSAL_LM"),
    use_varlen_attn=True, use_activation_checkpointing=True,
    use_liger_kernel={"auto": "auto", "False": False}[args.liger],
    use_torch_compile=args.compile, fused_lora=args.fused_lora == "True").cuda().train()
rows = SyntheticPackedDataset(model.llm.config.vocab_size, 2048, 4)
batch = model.data_preprocessor(default_collate_fn([rows[0]], use_varlen_attn=True), True)
trained = [p for p in model.parameters() if p.requires_grad]
dropouts = [(m, name) for m in model.modules() if hasattr(m, "lora_dropout")
            for name in m.lora_dropout]
kept_dropouts = {id(m): dict(m.lora_dropout) for m, _ in dropouts}


def set_variant(adapters16: bool, dropout: bool, checkpointing: bool) -> None:
    for p in trained:
        p.data = p.data.to(torch.float16 if adapters16 else torch.float32)
    for m, name in dropouts:
        m.lora_dropout[name] = (kept_dropouts[id(m)][name] if dropout
                                else torch.nn.Identity())
    if checkpointing:
        model.gradient_checkpointing_enable()
    else:
        model.gradient_checkpointing_disable()


def measure(label: str) -> None:
    for p in trained:
        p.grad = None
    times, host = [], []
    for i in range(3 + args.steps):
        torch.cuda.synchronize()
        if i == 3:
            torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.float16):
            loss = model(**batch, mode="loss")["loss"]
        (loss * 1024).backward()
        launched = time.perf_counter()
        torch.cuda.synchronize()
        done = time.perf_counter()
        for p in trained:
            p.grad = None
        if i >= 3:
            times.append(done - t)
            host.append(launched - t)
    step = sum(times) / len(times)
    host_ms = sum(host) / len(host) * 1000
    print(f"RESULT {label:42s} step={step * 1000:6.1f}ms host={host_ms:6.1f}ms "
          f"tokens/s={2048 / step:6.0f} peak={torch.cuda.max_memory_allocated() / 2**30:5.2f}GiB "
          f"loss={float(loss):.4f}", flush=True)


for checkpointing in (False, True):
    for variant in args.variants:
        set_variant(variant.startswith("fp16"), variant.endswith("+drop"), checkpointing)
        measure(f"{'compiled ' if args.compile else ''}fused={args.fused_lora} adapters={variant} "
                f"ckpt={'all' if checkpointing else 'none'}")
