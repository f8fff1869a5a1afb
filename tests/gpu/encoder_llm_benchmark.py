"""Encoder + LLM at real shapes on one GPU: a Wav2Vec2-base-shaped encoder and a 7B-shape
Llama, random init, bf16, packed varlen rows of 8192 tokens; prints tokens/s and peak memory.
    python tests/gpu/encoder_llm_benchmark.py proj|lora
"""
import sys
import time

import torch
import transformers
from transformers import (
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    Wav2Vec2Config,
    Wav2Vec2Model,
)

from xtuner.dataset.media import (
    TS_TOKENS,
    add_special_tokens,
    encoder_output_length,
    media_collate_fn,
)
from xtuner.demo import TINY_LLM_PATH
from xtuner.model.encoder_llm import EncoderLLM

print("torch", torch.__version__, "transformers", transformers.__version__,
      torch.cuda.get_device_name())
mode = sys.argv[1]
torch.manual_seed(0)
enc_cfg = Wav2Vec2Config(apply_spec_augment=False, mask_time_prob=0.0, layerdrop=0.0)
llm_cfg = LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=32, vocab_size=32000,
                      max_position_embeddings=8192)
t = time.time()
with torch.device("cuda"):
    torch.set_default_dtype(torch.bfloat16)
    llm = LlamaForCausalLM(llm_cfg)
    encoder = Wav2Vec2Model(enc_cfg)
    torch.set_default_dtype(torch.float32)
print(f"built in {time.time() - t:.0f}s")
tok = add_special_tokens(AutoTokenizer.from_pretrained(TINY_LLM_PATH), TS_TOKENS)
kw = {}
if mode == "lora":
    from peft import LoraConfig
    kw = dict(llm_lora=LoraConfig(r=64, lora_alpha=16, target_modules=None),
              use_activation_checkpointing=True)
else:
    kw = dict(use_activation_checkpointing=False)
model = EncoderLLM(llm=llm, encoder=encoder, tokenizer=tok, use_varlen_attn=True,
                   use_liger_kernel=False, **kw).cuda()
trainable = [p for p in model.parameters() if p.requires_grad]
print("trainable params", sum(p.numel() for p in trainable))
samples_len = 160000  # 10 s at 16 kHz
n = encoder_output_length(enc_cfg, samples_len)
s, c, e = tok.convert_tokens_to_ids(TS_TOKENS)
q = tok.encode("What happens in this recording?", add_special_tokens=False)
a = tok.encode("A dog barks twice.", add_special_tokens=False)
sample_ids = q + [s] + [c] * n + [e] + a
per_row = 8192 // len(sample_ids)
g = torch.Generator().manual_seed(0)
instances = [{"input_ids": sample_ids, "labels": [-100] * (len(sample_ids) - len(a)) + a,
              "media": [torch.randn(samples_len, generator=g)]} for _ in range(per_row)]
batch = media_collate_fn(instances, use_varlen_attn=True)["data"]
tokens = batch["input_ids"].numel()
print(f"{per_row} samples of {len(sample_ids)} tokens ({n} signal features) = {tokens} "
      "tokens per row")
batch = {k: (v.cuda() if torch.is_tensor(v) else [x.cuda() for x in v]
             if isinstance(v, list) else v) for k, v in batch.items()}
opt = torch.optim.AdamW(trainable, lr=1e-5)
model.train()
def step():
    loss = model(batch, mode="loss")["loss"]
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss
for _ in range(3):
    step()
torch.cuda.synchronize()
torch.cuda.reset_peak_memory_stats()
t = time.time()
steps = 10
for _ in range(steps):
    loss = step()
torch.cuda.synchronize()
dt = time.time() - t
print(f"RESULT mode={mode} tokens/s={tokens * steps / dt:.0f} step={dt / steps * 1000:.0f}ms "
      f"peak_mem={torch.cuda.max_memory_allocated() / 2**30:.1f}GiB loss={float(loss):.3f}")
