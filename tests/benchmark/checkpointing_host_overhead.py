"""Host time that activation checkpointing adds to a training step, by kind.

A tiny LoRA model on 32 tokens does so little arithmetic that a step's time is the host's
work per operation -- the regime of a launch-bound GPU step (QLoRA). Prints milliseconds per
forward + backward without checkpointing, with torch's non-reentrant checkpoint
(``reentrant_checkpointing=False``) and with the reentrant one (the default), each layer
checkpointed.

    python tests/benchmark/checkpointing_host_overhead.py [--layers 8] [--steps 20]
"""
from __future__ import annotations

import argparse
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()

    import torch
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, LlamaConfig

    from xtuner.model import SupervisedFinetune

    torch.set_num_threads(1)
    config = LlamaConfig(hidden_size=64, intermediate_size=128, num_attention_heads=4,
                         num_key_value_heads=4, vocab_size=256,
                         num_hidden_layers=args.layers)
    with tempfile.TemporaryDirectory() as folder:
        AutoModelForCausalLM.from_config(config).save_pretrained(folder)
        ids = torch.randint(5, 256, (1, 32), generator=torch.Generator().manual_seed(0))
        data = {"input_ids": ids, "labels": ids}
        kinds = {"none": (False, False), "non-reentrant": (True, False),
                 "reentrant": (True, True)}
        for name, (checkpointing, reentrant) in [*kinds.items()] * 2:  # second round counts
            model = SupervisedFinetune(
                llm=dict(type=AutoModelForCausalLM.from_pretrained,
                         pretrained_model_name_or_path=folder),
                lora=LoraConfig(r=8, lora_alpha=16, lora_dropout=0.1),
                use_activation_checkpointing=checkpointing,
                reentrant_checkpointing=reentrant, use_varlen_attn=False).train()
            for step in range(args.steps + 5):
                if step == 5:
                    start = time.perf_counter()
                model(data, mode="loss")["loss"].backward()
            elapsed = (time.perf_counter() - start) / args.steps
            print(f"{name:14s} {elapsed * 1e3:6.2f} ms a step ({args.layers} layers)")


if __name__ == "__main__":
    main()
