"""The catalog's QLoRA configs at the memory budget their header names, on a card of that size.

    python3 tests/gpu/catalog_budgets.py [NAME ...] [--steps 8] [--cfg-options KEY=VALUE ...]

From the repo root of a GPU machine with the carried wheels (``.whl``, installed into
/tmp/site by ``tests/gpu/common.sh``). For each model shape below it writes the model's
``config.json`` (no download: the weights are random, ``--random-init``, drawn first on the
whole card) and runs ``xtuner benchmark CATALOG_CONFIG --random-init --memory-budget BUDGET``
with the process capped at BUDGET (``tests/gpu/xtuner_cli.py``, ``MEM_LIMIT_GB``), at the
config's own max_length. It prints one markdown row per shape: the budget, the plan, the peak
allocated and tokens/s, the figures README "Fine-tuning on a small GPU" gives per model size.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# name: (catalog config, transformers config class, its arguments, budget in GB: the header's,
# or for a size whose leaves name none the smallest the plan accepts)
SHAPES = {
    "qwen2_5_1_5b": ("qwen2_5_1_5b_instruct_qlora_alpaca_e3", "Qwen2Config", dict(
        hidden_size=1536, num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2,
        intermediate_size=8960, vocab_size=151936, tie_word_embeddings=True), 2.2),
    "qwen3_4b": ("qwen3_4b_qlora_alpaca_e3", "Qwen3Config", dict(
        hidden_size=2560, num_hidden_layers=36, num_attention_heads=32, num_key_value_heads=8,
        head_dim=128, intermediate_size=9728, vocab_size=151936, tie_word_embeddings=True), 4.2),
    "mistral_7b": ("mistral_7b_instruct_v0_3_qlora_alpaca_e3", "MistralConfig", dict(
        hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
        intermediate_size=14336, vocab_size=32768), 8.0),
    "qwen2_5_7b": ("qwen2_5_7b_instruct_qlora_alpaca_e3", "Qwen2Config", dict(
        hidden_size=3584, num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
        intermediate_size=18944, vocab_size=152064, tie_word_embeddings=False), 8.0),
    "llama3_1_8b": ("llama3_1_8b_instruct_qlora_alpaca_e3", "LlamaConfig", dict(
        hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
        intermediate_size=14336, vocab_size=128256, rope_theta=500000.0), 8.0),
    "qwen3_8b": ("qwen3_8b_qlora_alpaca_e3", "Qwen3Config", dict(
        hidden_size=4096, num_hidden_layers=36, num_attention_heads=32, num_key_value_heads=8,
        head_dim=128, intermediate_size=12288, vocab_size=151936, tie_word_embeddings=False),
        8.0),
    "yi1_5_9b": ("yi1_5_9b_chat_qlora_alpaca_e3", "LlamaConfig", dict(
        hidden_size=4096, num_hidden_layers=48, num_attention_heads=32, num_key_value_heads=4,
        intermediate_size=11008, vocab_size=64000), 8.0),
    "gemma2_9b": ("gemma2_9b_it_qlora_alpaca_e3", "Gemma2Config", dict(
        hidden_size=3584, num_hidden_layers=42, num_attention_heads=16, num_key_value_heads=8,
        head_dim=256, intermediate_size=14336, vocab_size=256000), 10.0),
    "qwen2_5_14b": ("qwen2_5_14b_instruct_qlora_alpaca_e3", "Qwen2Config", dict(
        hidden_size=5120, num_hidden_layers=48, num_attention_heads=40, num_key_value_heads=8,
        intermediate_size=13824, vocab_size=152064, tie_word_embeddings=False), 12.6),
}
FIGURES = re.compile(r"^(tokens/s per GPU|peak allocated \(GiB\))\s+([0-9.,]+)", re.M)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--out", default="/tmp/catalog_budgets")
    parser.add_argument("--cfg-options", nargs="*", default=[], metavar="KEY=VALUE",
                        help="more config settings for every run, e.g. "
                             "model.use_torch_compile=True")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run(["bash", "-c", "source tests/gpu/common.sh"], cwd=REPO, check=True)
    env = dict(os.environ, PYTHONPATH=f"/tmp/site:{REPO}", PYTHONUNBUFFERED="1",
               HF_HUB_OFFLINE="1")
    print("| shape | catalog config | budget | plan | peak allocated | tokens/s |")
    print("|---|---|---:|---|---:|---:|")
    for name in args.names:
        config, config_class, kwargs, budget = SHAPES[name]
        model_dir = out / f"{name}_config"
        write_config = (f"import transformers; transformers.{config_class}(**{kwargs!r})"
                        f".save_pretrained({str(model_dir)!r})")
        subprocess.run([sys.executable, "-c", write_config], env=env, check=True)
        work_dir = out / name
        # The random weights first, on the whole card (the GPU draws them fastest; the
        # capped run below finds them in its work dir); removed afterwards (16 GB each).
        build = ("from xtuner.benchmark.setup import make_random_init_model; "
                 f"make_random_init_model({str(model_dir)!r}, {str(work_dir)!r})")
        subprocess.run([sys.executable, "-c", build], cwd=REPO, env=env, check=True,
                       stdout=subprocess.DEVNULL)
        log = out / f"{name}.log"
        with log.open("w") as stream:
            rc = subprocess.run(
                [sys.executable, "tests/gpu/xtuner_cli.py", "benchmark", config, "--random-init",
                 "--memory-budget", f"{budget}GB", "--steps", str(args.steps),
                 "--work-dir", str(work_dir), "--cfg-options",
                 f"model.llm.pretrained_model_name_or_path={model_dir}", *args.cfg_options],
                cwd=REPO, env={**env, "MEM_LIMIT_GB": str(budget)}, stdout=stream,
                stderr=subprocess.STDOUT, timeout=400).returncode
        shutil.rmtree(work_dir, ignore_errors=True)
        text = log.read_text(errors="replace")
        figures = dict(FIGURES.findall(text))
        plan = re.search(r"memory plan for [0-9.]+ \w+: ([^;]+);", text)
        row = [name, config, f"{budget} GB", plan.group(1) if plan else "-",
               f"{figures['peak allocated (GiB)']} GiB" if rc == 0 and figures else f"rc={rc}",
               figures.get("tokens/s per GPU", "-")]
        print("| " + " | ".join(row) + " |", flush=True)
    print(f"logs: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
