"""DPO at real shapes on one GPU: QLoRA (NF4, r=64 on every linear layer, every layer
checkpointed) of a Llama-3-8B-shaped
model, random weights, the reference = the model with its adapter off, chosen/rejected pairs
packed three to a varlen row (4,752 tokens); prints tokens/s, peak memory and the first losses.
    python tests/gpu/dpo_benchmark.py [WORK_DIR] [--chunked]
``--chunked``: ``chunked_logps=True`` (log-probabilities through the output head a chunk of
target tokens at a time, without the batch's logits).
"""
import sys
import time

import torch
from peft import LoraConfig
from transformers import AutoModelForCausalLM, BitsAndBytesConfig, LlamaConfig

from xtuner.benchmark.setup import make_random_init_model
from xtuner.dataset.collate_fns import preference_collate_fn
from xtuner.model import DPO

args = [a for a in sys.argv[1:] if a != "--chunked"]
chunked = "--chunked" in sys.argv[1:]
work = args[0] if args else "/tmp/dpo_bench"
config_dir = f"{work}/llama3_8b_config"
LlamaConfig(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
            intermediate_size=14336, vocab_size=128256, max_position_embeddings=8192,
            rope_theta=500000.0).save_pretrained(config_dir)
path = make_random_init_model(config_dir, work)
model = DPO(
    llm=dict(type=AutoModelForCausalLM.from_pretrained, pretrained_model_name_or_path=path,
             dtype=torch.bfloat16,
             quantization_config=BitsAndBytesConfig(
                 load_in_4bit=True, bnb_4bit_compute_dtype=torch.bfloat16,
                 bnb_4bit_use_double_quant=True, bnb_4bit_quant_type="nf4")),
    lora=LoraConfig(r=64, lora_alpha=16, lora_dropout=0.0, target_modules=None,
                    task_type="CAUSAL_LM"),
    use_varlen_attn=True, use_activation_checkpointing=True, beta=0.1,
    loss_type="sigmoid", chunked_logps=chunked).cuda()
g = torch.Generator().manual_seed(0)


def pair(prompt: int, chosen: int, rejected: int) -> dict:
    p = torch.randint(10, 128000, (prompt,), generator=g).tolist()
    c = torch.randint(10, 128000, (chosen,), generator=g).tolist()
    r = torch.randint(10, 128000, (rejected,), generator=g).tolist()
    return {"chosen_ids": p + c, "chosen_labels": [-100] * prompt + c,
            "rejected_ids": p + r, "rejected_labels": [-100] * prompt + r}


pairs = [pair(256, 700, 600), pair(300, 500, 700), pair(200, 400, 340)]  # 4,752 tokens
batch = preference_collate_fn(pairs, use_varlen_attn=True)["data"]
tokens = batch["input_ids"].numel()
batch = {k: (v.cuda() if torch.is_tensor(v) else [x.cuda() for x in v]
             if isinstance(v, list) else v) for k, v in batch.items()}
trainable = [p for p in model.parameters() if p.requires_grad]
opt = torch.optim.AdamW(trainable, lr=5e-5)
model.train()
losses = []


def step():
    out = model(batch, mode="loss")
    out["loss"].backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    losses.append(float(out["loss"]))


for _ in range(3):
    step()
torch.cuda.synchronize()
torch.cuda.reset_peak_memory_stats()
t = time.time()
steps = 10
for _ in range(steps):
    step()
torch.cuda.synchronize()
dt = time.time() - t
print(f"RESULT dpo qlora 8B chunked_logps={chunked}: {tokens} tokens per row (3 pairs), "
      f"tokens/s={tokens * steps / dt:.0f} "
      f"step={dt / steps * 1000:.0f}ms peak_mem={torch.cuda.max_memory_allocated() / 2**30:.1f}GiB "
      f"losses={[round(x, 4) for x in losses[:4]]}")
