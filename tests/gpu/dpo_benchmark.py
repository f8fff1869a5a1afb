"""DPO and ORPO at the catalog's shapes on one GPU: QLoRA (NF4; r=64, alpha=16, dropout 0.1
on every linear layer, as the catalog's preference configs; every layer checkpointed), random
weights, the DPO reference = the model with its adapter off, chosen/rejected pairs packed into
one varlen row. Prints tokens/s, the peak memory and the first losses of each run, with the
logits path and with ``chunked_logps=True``.

    python tests/gpu/dpo_benchmark.py [--shape llama3_1_8b] [--tokens 4096] [--work-dir DIR]
                                      [--method dpo orpo] [--logps plain chunked]
                                      [--memory-budget 8GB] [--amp] [--phases]

``--tokens``: the packed row (the catalog's ``max_packed_length``, 4096; 4752 was the first
measurement's row of three pairs). ``--memory-budget``: xtuner's memory plan for that budget
(as ``xtuner train --memory-budget``; paged 8-bit AdamW when the plan takes it), with the
process capped at the budget as a card of that size would be; the plan's line is printed.
``--amp``: bf16 autocast, as ``xtuner train`` runs the catalog's configs (the figures in
xtuner.model.memory_budget were measured without it: float32 activations around the 4-bit
layers). ``--phases``: the peak of each phase of one more step (reference pass, forward,
backward, optimizer step), to find what the estimate misses.
"""
import argparse
import gc
import os
import time

import torch
import transformers
from peft import LoraConfig
from transformers import AutoModelForCausalLM, BitsAndBytesConfig

from xtuner.benchmark.setup import make_random_init_model
from xtuner.dataset.collate_fns import preference_collate_fn
from xtuner.model import DPO
from xtuner.model.orpo import ORPO

SHAPES = {  # the catalog's preference models (InternLM2.5-7B as a Llama of its sizes)
    "llama3_1_8b": ("LlamaConfig", dict(
        hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
        intermediate_size=14336, vocab_size=128256, rope_theta=500000.0)),
    "qwen2_5_7b": ("Qwen2Config", dict(
        hidden_size=3584, num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
        intermediate_size=18944, vocab_size=152064, tie_word_embeddings=False)),
    "internlm2_5_7b": ("LlamaConfig", dict(
        hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
        intermediate_size=14336, vocab_size=92544)),
}
parser = argparse.ArgumentParser()
parser.add_argument("--shape", default="llama3_1_8b", choices=list(SHAPES))
parser.add_argument("--tokens", type=int, default=4096)
parser.add_argument("--work-dir", default="/tmp/dpo_bench")
parser.add_argument("--method", nargs="+", default=["dpo"], choices=["dpo", "orpo"])
parser.add_argument("--logps", nargs="+", default=["plain", "chunked"],
                    choices=["plain", "chunked"])
parser.add_argument("--steps", type=int, default=10)
parser.add_argument("--memory-budget", default=None)
parser.add_argument("--amp", action="store_true",
                    help="bf16 autocast, as xtuner train's AmpOptimWrapper (default: none)")
parser.add_argument("--phases", action="store_true",
                    help="after the run, one more step with the peak of each phase")
args = parser.parse_args()
if args.memory_budget:  # as xtuner train does, before CUDA starts
    os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")

config_class, sizes = SHAPES[args.shape]
config_dir = f"{args.work_dir}/{args.shape}_config"
getattr(transformers, config_class)(**sizes).save_pretrained(config_dir)
path = make_random_init_model(config_dir, args.work_dir)
vocab = sizes["vocab_size"]
g = torch.Generator().manual_seed(0)


def pair(prompt: int, chosen: int, rejected: int) -> dict:
    p, c, r = (torch.randint(10, vocab - 1, (n,), generator=g).tolist()
               for n in (prompt, chosen, rejected))
    return {"chosen_ids": p + c, "chosen_labels": [-100] * prompt + c,
            "rejected_ids": p + r, "rejected_labels": [-100] * prompt + r}


pairs, total = [], 0
while total < args.tokens:  # pairs of a 1:2 prompt:response split until the row is full
    room = args.tokens - total
    prompt, response = min(256, room // 4), min(600, room // 4)
    if prompt < 8 or response < 8:
        break
    pairs.append(pair(prompt, response, response))
    total += 2 * (prompt + response)
batch = preference_collate_fn(pairs, use_varlen_attn=True)["data"]
tokens = batch["input_ids"].numel()
batch = {k: (v.cuda() if torch.is_tensor(v) else [x.cuda() for x in v]
             if isinstance(v, list) else v) for k, v in batch.items()}


def phase_peaks(model, opt, loss_of) -> None:
    """One more step, printing the allocated memory at its start and the peak of each phase:
    the reference pass alone, the whole forward (reference and policy), backward, optimizer
    step -- where the estimate's parts (xtuner.model.memory_budget) can be checked."""
    gib = 2**30

    def measured(label, run):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        result = run()
        torch.cuda.synchronize()
        print(f"PHASE {label}: peak {torch.cuda.max_memory_allocated() / gib:.2f} GiB, "
              f"held after {torch.cuda.memory_allocated() / gib:.2f} GiB", flush=True)
        return result

    print(f"PHASE start: {torch.cuda.memory_allocated() / gib:.2f} GiB allocated", flush=True)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=args.amp):
        inputs, labels, bounds = model._pair_inputs(batch)
        logps_of = model._logps_of(inputs, labels, bounds)
        if hasattr(model, "_with_reference"):  # DPO
            measured("reference pass", lambda: model._with_reference(logps_of))
    loss = measured("forward (reference and policy)", lambda: loss_of(batch))
    measured("backward", loss.backward)
    measured("optimizer step", opt.step)
    opt.zero_grad(set_to_none=True)


def run(method: str, chunked: bool) -> None:
    kw = dict(beta=0.1, loss_type="sigmoid") if method == "dpo" else dict(beta=0.1)
    model = (DPO if method == "dpo" else ORPO)(
        llm=dict(type=AutoModelForCausalLM.from_pretrained, pretrained_model_name_or_path=path,
                 dtype=torch.bfloat16,
                 quantization_config=BitsAndBytesConfig(
                     load_in_4bit=True, bnb_4bit_compute_dtype=torch.bfloat16,
                     bnb_4bit_use_double_quant=True, bnb_4bit_quant_type="nf4")),
        lora=LoraConfig(r=64, lora_alpha=16, lora_dropout=0.1, target_modules=None,
                        task_type="CAUSAL_LM"),
        use_varlen_attn=True, use_activation_checkpointing=True, chunked_logps=chunked,
        **kw).cuda().train()
    trained = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trained, lr=5e-5)
    if args.memory_budget:
        from xtuner.model.checkpointing import parse_memory
        from xtuner.model.memory_budget import (
            MemorySizes,
            apply_memory_plan,
            available_levers,
            plan_memory,
        )

        budget = parse_memory(args.memory_budget)
        torch.cuda.set_per_process_memory_fraction(
            min(1.0, budget / torch.cuda.get_device_properties(0).total_memory))
        plan = plan_memory(MemorySizes.of(model), tokens, args.memory_budget,
                           available_levers(model, "AdamW"))
        apply_memory_plan(model, plan)
        print(f"PLAN {method}: {plan.describe()}", flush=True)
        if "optimizer_8bit" in plan.levers:
            import bitsandbytes

            opt = bitsandbytes.optim.PagedAdamW8bit(trained, lr=5e-5)
    def loss_of(batch, model=model):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=args.amp):
            return model(batch, mode="loss")["loss"]

    losses = []
    for i in range(3 + args.steps):
        if i == 3:  # after the warm-up
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            t = time.time()
        loss = loss_of(batch)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss))
    torch.cuda.synchronize()
    dt = time.time() - t
    print(f"RESULT {method} qlora {args.shape} chunked_logps={model.chunked_logps} "
          f"budget={args.memory_budget}: {tokens} tokens a row "
          f"({len(pairs)} pairs), tokens/s={tokens * args.steps / dt:.0f} "
          f"step={dt / args.steps * 1000:.0f}ms "
          f"peak_mem={torch.cuda.max_memory_allocated() / 2**30:.2f}GiB "
          f"losses={[round(x, 4) for x in losses[:4]]} amp={args.amp}", flush=True)
    if args.phases:
        phase_peaks(model, opt, loss_of)
    del model, opt
    gc.collect()
    torch.cuda.empty_cache()


for method in args.method:
    for logps in args.logps:
        run(method, logps == "chunked")
