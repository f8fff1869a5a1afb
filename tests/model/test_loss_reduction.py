"""``loss_reduction`` and packed rows: the oracle is transformers' own loss of the samples
run alone, and one batch holding the whole optimizer step."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from loss_runs import IGNORE, build_model, samples, sgd_step_delta

HERE = Path(__file__).parent


def _alone(llm, sample) -> tuple[torch.Tensor, int]:
    """transformers' mean loss of one sample run alone, and its number of targets."""
    ids = torch.tensor([sample["input_ids"]])
    labels = torch.tensor([sample["labels"]])
    return llm(input_ids=ids, labels=labels).loss, int((labels[0, 1:] != IGNORE).sum())


def _reference_step(model_dir, data, reduction) -> dict[str, torch.Tensor]:
    """Minus the gradient of the step's loss computed from each sample run alone."""
    model = build_model(model_dir, "v0")
    means, counts = zip(*(_alone(model.llm, s) for s in data))
    counts = torch.tensor(counts, dtype=torch.float64)
    if reduction == "token":
        weights = counts / counts.sum()
    elif reduction == "sample":
        weights = torch.full_like(counts, 1 / len(data))
    else:  # square: each token weighs 1/sqrt(n), normalised over the step
        weights = counts.sqrt() / counts.sqrt().sum()
    loss = sum(float(w) * m for w, m in zip(weights, means))
    loss.backward()
    return {k: -p.grad for k, p in model.named_parameters()}


@pytest.fixture(scope="module")
def data(tiny_dirs):
    from transformers import AutoConfig

    return samples(AutoConfig.from_pretrained(tiny_dirs["llama"]).vocab_size)


@pytest.mark.parametrize("reduction", ["token", "sample", "square"])
def test_accumulated_micro_batches_give_the_gradient_of_the_whole_step(
        tiny_dirs, data, reduction, tmp_path):
    got = sgd_step_delta(tiny_dirs["llama"], data, str(tmp_path), accumulative_counts=4,
                         loss_reduction=reduction)
    want = _reference_step(tiny_dirs["llama"], data, reduction)
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=1e-4, atol=1e-6, msg=key)


def test_v0_keeps_the_per_micro_batch_mean(tiny_dirs, data, tmp_path):
    """v0 averages the micro-batch means: short samples weigh more than under 'token'."""
    got = sgd_step_delta(tiny_dirs["llama"], data, str(tmp_path), accumulative_counts=4,
                         loss_reduction="v0")
    model = build_model(tiny_dirs["llama"], "v0")
    (sum(_alone(model.llm, s)[0] for s in data) / len(data)).backward()
    for key, p in model.named_parameters():
        torch.testing.assert_close(got[key], -p.grad, rtol=1e-4, atol=1e-6, msg=key)
    token = _reference_step(tiny_dirs["llama"], data, "token")
    key = "llm.lm_head.weight"
    assert not torch.allclose(got[key], token[key], rtol=1e-3, atol=1e-6)


def test_two_cpu_ranks_give_the_gradient_of_one_rank_with_the_whole_batch(
        tiny_dirs, data, tmp_path):
    script = tmp_path / "two_ranks.py"
    out = tmp_path / "delta.pt"
    # Registered first, so it runs last at exit: was the process group (or a DDP wrapper
    # holding it, collected or not) left to interpreter finalization, which can abort a
    # gloo process?
    script.write_text(
        "import atexit, gc, os, sys, torch, torch.distributed as dist\n"
        "from torch.nn.parallel import DistributedDataParallel as DDP\n"
        f"left = {str(tmp_path)!r} + '/left_' + os.environ['RANK']\n"
        "atexit.register(lambda: open(left, 'w').write(str(\n"
        "    (dist.is_initialized(), sum(isinstance(o, DDP) for o in gc.get_objects())))))\n"
        f"sys.path.insert(0, {str(HERE)!r})\n"
        "from loss_runs import samples, sgd_step_delta\n"
        f"data = samples({len_vocab(tiny_dirs)})\n"
        f"delta = sgd_step_delta({tiny_dirs['llama']!r}, data, {str(tmp_path)!r}, "
        "accumulative_counts=2, loss_reduction='token', launcher='pytorch')\n"
        f"if dist.get_rank() == 0: torch.save(delta, {str(out)!r})\n")
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
         "--standalone", str(script)],
        env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert [(tmp_path / f"left_{r}").read_text() for r in (0, 1)] == ["(False, 0)"] * 2
    got = torch.load(out)
    want = _reference_step(tiny_dirs["llama"], data, "token")
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=1e-4, atol=1e-6, msg=key)


def len_vocab(tiny_dirs) -> int:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(tiny_dirs["llama"]).vocab_size


PRETRAIN_TEXTS = [
    "The model reads the input, predicts the next token, and the loss goes down.",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 2024 3.14",
    "def add(a, b):\n    return a + b\n",
    "你好，世界！这是一个用于测试的小型分词器。",
    "Colours: red, green, blue, yellow, purple, orange.",
]


@pytest.mark.parametrize("use_varlen_attn", [True, False])
def test_packed_pretraining_text_trains_no_target_across_samples(tiny_dirs, use_varlen_attn):
    """Pre-training text with a tokenizer that adds no BOS (Qwen's): every token of a sample
    is trained, so without care its first token would be a target of the sample before it.
    Each packed sample's loss must equal the sample run alone; with varlen attention its
    logits too."""
    from datasets import Dataset
    from transformers import AutoTokenizer

    from xtuner.dataset import process_hf_dataset
    from xtuner.dataset.collate_fns import default_collate_fn
    from xtuner.dataset.map_fns import pretrain_map_fn

    model_dir = tiny_dirs["qwen2"]
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    assert tokenizer.bos_token is None
    kw = dict(tokenizer=tokenizer, max_length=512, dataset_map_fn=pretrain_map_fn,
              template_map_fn=None, shuffle_before_pack=False, cache=False, map_num_proc=1)
    raw = Dataset.from_list([{"text": t} for t in PRETRAIN_TEXTS])
    alone = process_hf_dataset(raw, pack_to_max_length=False, **kw)
    packed = process_hf_dataset(raw, pack_to_max_length=True, use_varlen_attn=True, **kw)
    assert len(packed) == 1  # everything in one row
    batch = default_collate_fn([packed[0]], use_varlen_attn=use_varlen_attn, pad_index=0,
                               return_hf_format=True)
    model = build_model(model_dir, "token")
    model.use_varlen_attn = use_varlen_attn
    if use_varlen_attn:
        from xtuner.model.attention import register_varlen_attention

        model.llm.set_attn_implementation(register_varlen_attention())
    model.eval()
    with torch.no_grad():
        logits = model(batch, mode="predict")[0]["logits"]
        bounds = (batch["cumulative_len"][0] if use_varlen_attn
                  else batch["sample_bounds"][0]).tolist()
        labels = batch["labels"][0]
        sums, counts = [], []
        by_ids = {tuple(s["input_ids"]): s for s in alone}
        for start, end in zip(bounds[:-1], bounds[1:]):
            sample = by_ids[tuple(batch["input_ids"][0, start:end].tolist())]
            mean, n = _alone(model.llm, sample)
            # The packed row's targets inside this sample: as many as alone, same loss.
            seg_labels = labels[start:end]
            assert int((seg_labels[1:] != IGNORE).sum()) == n
            ce = torch.nn.functional.cross_entropy(
                logits[start:end - 1], seg_labels[1:], ignore_index=IGNORE, reduction="sum")
            if use_varlen_attn:
                torch.testing.assert_close(ce / n, mean, rtol=1e-5, atol=1e-5)
                ids = torch.tensor([sample["input_ids"]])
                torch.testing.assert_close(logits[start:end], model.llm(ids).logits[0],
                                           rtol=1e-4, atol=1e-5)
            sums.append(mean * n)
            counts.append(n)
        # The first label of every sample is ignored: nothing crosses a boundary.
        assert len(bounds) == len(PRETRAIN_TEXTS) + 1
        assert all(labels[b] == IGNORE for b in bounds[1:-1])
        # And the model's own loss of the row is the token mean of the samples alone.
        if use_varlen_attn:
            torch.testing.assert_close(model(batch, mode="loss")["loss"],
                                       sum(sums) / sum(counts), rtol=1e-5, atol=1e-5)
