"""Run by ``torch.distributed.run`` (gloo, CPU) from ``test_sequence_parallel.py``.

Each case compares sequence parallelism (``N = 2``) with one process running the whole global
batch (``N = 1``, the oracle, computed in the same process before the groups exist) and
writes ``{case: "ok" | error}`` to ``$SP_RESULTS`` (rank 0).
"""
from __future__ import annotations

import json
import os
import sys
import traceback

import torch
import torch.distributed as dist

from xtuner.dataset.collate_fns import default_collate_fn, preference_collate_fn
from xtuner.engine.runner.loops import step_loss_scale
from xtuner.model import SupervisedFinetune
from xtuner.model.dpo import DPO
from xtuner.model.loss import target_weights
from xtuner.parallel import sequence as sp

SP = 2
VOCAB = 64


def _llm(heads=4, kv_heads=2, seed=0, hidden=32):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=VOCAB, hidden_size=hidden, intermediate_size=48,
                         num_hidden_layers=2, num_attention_heads=heads,
                         num_key_value_heads=kv_heads, max_position_embeddings=256,
                         attn_implementation="sdpa")
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).float()


def _sample(gen, length, packed_lengths=None):
    ids = torch.randint(3, VOCAB, (length,), generator=gen)
    labels = ids.clone()
    labels[: length // 3] = -100  # a prompt
    row = {"input_ids": ids.tolist(), "labels": labels.tolist()}
    if packed_lengths:
        bounds = [0]
        for n in packed_lengths:
            bounds.append(bounds[-1] + n)
        assert bounds[-1] == length
        row["cumulative_len"] = bounds
        row["position_ids"] = [p for n in packed_lengths for p in range(n)]
    return row


def _batches(packed: bool, groups: int, seed=0):
    """One micro-batch per data-parallel group (odd lengths, so padding to 2 is needed)."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for g in range(groups):
        if packed:
            rows = [_sample(gen, 19 + 2 * g, [5, 7 + 2 * g, 7]), _sample(gen, 9, [4, 5])]
        else:
            rows = [_sample(gen, 13 + g), _sample(gen, 8)]
        out.append(default_collate_fn(rows, pad_index=0, use_varlen_attn=packed)["data"])
    return out


def _with_step_scale(batch, reduction, total, divisor=1):
    batch = dict(batch)
    weights = target_weights(batch["labels"], reduction, batch.get("cumulative_len"))
    batch["loss_scale"] = divisor / total if total else 0.0
    batch["num_targets"] = int((weights > 0).sum())
    if reduction != "token":
        batch["loss_weights"] = weights
    return batch


def _grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters()
            if p.grad is not None}


def _reference(build, batches, reduction):
    """The N = 1 oracle: the whole global batch in this process, loss mean over all targets
    (or v0's mean of the micro-batch means)."""
    model = build()
    model.train()
    if reduction == "v0":
        loss = sum(model.compute_loss(b)["loss"] for b in batches) / len(batches)
    else:
        total = sum(float(target_weights(b["labels"], reduction,
                                         b.get("cumulative_len")).sum()) for b in batches)
        loss = sum(model.compute_loss(_with_step_scale(b, reduction, total))["loss"]
                   for b in batches)
    loss.backward()
    return float(loss.detach()), _grads(model)


def _sequence_parallel(build, batches, reduction):
    """N = 2: this rank's data-parallel group's batch, the train loop's scale, gradients
    averaged over all ranks as DDP does."""
    model = build()
    model.train()
    batch = batches[sp.get_data_parallel_rank()]
    if reduction != "v0":
        local = float(target_weights(batch["labels"], reduction,
                                     batch.get("cumulative_len")).sum())
        batch = dict(batch)
        weights = target_weights(batch["labels"], reduction, batch.get("cumulative_len"))
        batch["loss_scale"] = step_loss_scale(local, 1)
        batch["num_targets"] = int((weights > 0).sum())
        if reduction != "token":
            batch["loss_weights"] = weights
    out = model.compute_loss(batch)
    out["loss"].backward()
    world = dist.get_world_size()
    loss = out["loss"].detach().clone()
    dist.all_reduce(loss)
    grads = _grads(model)
    for g in grads.values():
        dist.all_reduce(g)
        g /= world
    return float(loss) / world, grads, out, batch


def _compare(ref, got, rtol=1e-5, atol=1e-6):
    ref_loss, ref_grads = ref
    loss, grads = got[:2]
    assert abs(loss - ref_loss) <= atol + rtol * abs(ref_loss), (loss, ref_loss)
    assert ref_grads.keys() == grads.keys()
    for name in ref_grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=rtol, atol=atol,
                                   msg=name)


def case_all_to_all_round_trip():
    sp.init_sequence_parallel(SP)
    group = sp.get_sequence_parallel_group()
    rank = sp.get_sequence_parallel_rank()
    torch.manual_seed(100 + dist.get_rank())
    x = torch.randn(2, 4, 3, 5, requires_grad=True)  # (B, H, S/N, D)
    y = sp.all_to_all(x, group, scatter_dim=1, gather_dim=2)  # (B, H/N, S, D)
    assert y.shape == (2, 4 // SP, 3 * SP, 5)
    parts = [torch.empty_like(x) for _ in range(SP)]
    dist.all_gather(parts, x.detach(), group=group)
    heads = slice(rank * 4 // SP, (rank + 1) * 4 // SP)
    torch.testing.assert_close(y.detach(), torch.cat([p[:, heads] for p in parts], dim=2),
                               rtol=0, atol=0)
    back = sp.all_to_all(y, group, scatter_dim=2, gather_dim=1)
    torch.testing.assert_close(back.detach(), x.detach(), rtol=0, atol=0)
    # the gradient of <all_to_all(x), w> is the inverse all-to-all of w
    w = torch.randn_like(y)
    (y * w).sum().backward()
    torch.testing.assert_close(x.grad, sp.all_to_all(w, group, 2, 1), rtol=0, atol=0)


def case_v0_helpers():
    """v0's split/gather helpers and the attention pre/post all-to-alls."""
    sp.init_sequence_parallel(SP)
    group, rank = sp.get_sequence_parallel_group(), sp.get_sequence_parallel_rank()
    x = torch.arange(12.0).reshape(2, 6).requires_grad_()
    part = sp.split_forward_gather_backward(x, 1, group)
    torch.testing.assert_close(part, x.detach()[:, rank * 3:(rank + 1) * 3])
    (part * (rank + 1)).sum().backward()  # the gradient of the whole: each rank's part
    torch.testing.assert_close(x.grad, torch.tensor([[1.0] * 3 + [2.0] * 3] * 2))
    whole = sp.gather_forward_split_backward(part.detach().requires_grad_(), 1, group)
    torch.testing.assert_close(whole, x.detach())
    q = torch.randn(1, 3, 4, 2)  # (B, S/N, heads, D)
    q2, _, _ = sp.pre_process_for_sequence_parallel_attn(q, q, q)
    assert q2.shape == (1, 6, 2, 2)
    torch.testing.assert_close(sp.post_process_for_sequence_parallel_attn(q2), q)


def _sft_case(packed, reduction="token", kv_heads=2, checkpointing=False):
    groups = dist.get_world_size() // SP  # data-parallel groups once the groups exist
    batches = _batches(packed, groups)

    def build():
        return SupervisedFinetune(_llm(kv_heads=kv_heads), use_varlen_attn=packed,
                                  use_activation_checkpointing=checkpointing,
                                  loss_reduction=reduction)

    return batches, build


def _run_sft(packed, reduction="token", kv_heads=2, checkpointing=False):
    batches, build = _sft_case(packed, reduction, kv_heads, checkpointing)
    sp.init_sequence_parallel(1)
    ref = _reference(build, batches, reduction)
    sp.init_sequence_parallel(SP)
    got = _sequence_parallel(build, batches, reduction)
    _compare(ref, got)
    # every rank logs the loss of its whole micro-batch: what one process logs for it
    model = build()
    model.eval()  # evaluation runs without sequence parallelism
    with torch.no_grad():
        plain = model.compute_loss(got[3])["log_loss"]
    torch.testing.assert_close(got[2]["log_loss"], plain, rtol=1e-5, atol=1e-6)


def case_packed_rows_token_loss():
    _run_sft(packed=True)


def case_padded_rows_token_loss():
    _run_sft(packed=False)


def case_packed_rows_one_kv_head_sample_loss():
    # activation checkpointing too: the recomputed forward repeats the all-to-alls
    _run_sft(packed=True, reduction="sample", kv_heads=1, checkpointing=True)


def case_padded_rows_v0_loss():
    _run_sft(packed=False, reduction="v0", kv_heads=1)


def case_heads_that_do_not_split_are_a_config_error():
    from xtuner.utils.errors import ConfigError

    sp.init_sequence_parallel(SP)
    try:
        SupervisedFinetune(_llm(heads=3, kv_heads=1, hidden=48), use_activation_checkpointing=False)
    except ConfigError as exc:
        assert "3 attention heads" in str(exc) and "\n" not in str(exc), exc
    else:
        raise AssertionError("no ConfigError")


def _pairs(packed, groups, seed=1):
    gen = torch.Generator().manual_seed(seed)
    out = []
    for g in range(groups):
        instances = []
        for n in (7 + g, 10):
            prompt = torch.randint(3, VOCAB, (n,), generator=gen).tolist()
            chosen = torch.randint(3, VOCAB, (4,), generator=gen).tolist()
            rejected = torch.randint(3, VOCAB, (5 + g,), generator=gen).tolist()
            instances.append({
                "chosen_ids": prompt + chosen,
                "chosen_labels": [-100] * n + chosen,
                "rejected_ids": prompt + rejected,
                "rejected_labels": [-100] * n + rejected,
            })
        out.append(preference_collate_fn(instances, use_varlen_attn=packed)["data"])
    return out


def _run_dpo(packed, loss_type):
    groups = dist.get_world_size() // SP  # data-parallel groups once the groups exist
    batches = _pairs(packed, groups)

    def build():
        if loss_type == "orpo":
            from xtuner.model.orpo import ORPO

            return ORPO(_llm(), use_varlen_attn=packed, use_activation_checkpointing=False)
        return DPO(_llm(), ref_llm=_llm(seed=1), loss_type=loss_type, use_varlen_attn=packed,
                   use_activation_checkpointing=False)

    sp.init_sequence_parallel(1)
    model = build()
    model.train()
    outs = [model.compute_loss(b) for b in batches]
    loss = sum(o["loss"] for o in outs) / len(outs)
    loss.backward()
    ref = (float(loss), _grads(model))
    sp.init_sequence_parallel(SP)
    got = _sequence_parallel(build, batches, "v0")
    _compare(ref, got)
    # every rank of a group logs the metrics of its whole batch
    plain = outs[sp.get_data_parallel_rank()]
    for key in ("chosen_rewards", "rejected_rewards", "reward_margin"):
        torch.testing.assert_close(got[2][key], plain[key].detach(), rtol=1e-5, atol=1e-6)


def case_dpo_padded_pairs():
    _run_dpo(False, "sigmoid")


def case_dpo_packed_pairs_ipo():
    _run_dpo(True, "ipo")


def case_orpo_packed_pairs():
    _run_dpo(True, "orpo")


def _llava_batches(packed: bool, groups: int):
    from xtuner.utils.constants import IMAGE_TOKEN_INDEX as IMG

    gen = torch.Generator().manual_seed(2)
    out = []
    for g in range(groups):
        samples = [
            {"input_ids": [1, IMG, 7, 8, 9 + g], "labels": [-100, -100, -100, 8, 9 + g]},
            {"input_ids": [1, 10, 11, 12, 13], "labels": [-100, -100, 11, 12, 13]},
            {"input_ids": [1, 13, IMG, 14, IMG, 15, 16], "labels": [-100] * 5 + [15, 16]},
        ]
        images = torch.randn(3, 3, 32, 32, generator=gen)
        if packed:
            lengths = [len(x["input_ids"]) for x in samples]
            rows = [{"input_ids": sum((x["input_ids"] for x in samples), []),
                     "labels": sum((x["labels"] for x in samples), []),
                     "position_ids": [p for n in lengths for p in range(n)],
                     "cumulative_len": [0, 5, 10, 17], "pixel_values": images}]
        else:
            samples[0]["pixel_values"], samples[2]["pixel_values"] = images[:1], images[1:]
            rows = samples
        out.append(default_collate_fn(rows, pad_index=0, use_varlen_attn=packed)["data"])
    return out


def _run_llava(packed):
    from transformers import CLIPVisionConfig, CLIPVisionModel

    from xtuner.model import LLaVAModel

    batches = _llava_batches(packed, dist.get_world_size() // SP)

    def build():
        tower_config = CLIPVisionConfig(hidden_size=24, intermediate_size=48,
                                        num_hidden_layers=2, num_attention_heads=4,
                                        image_size=32, patch_size=8)
        torch.manual_seed(5)
        tower = CLIPVisionModel(tower_config)
        return LLaVAModel(llm=_llm(), visual_encoder=tower, use_varlen_attn=packed,
                          use_activation_checkpointing=False, use_liger_kernel=False)

    sp.init_sequence_parallel(1)
    ref = _reference(build, batches, "token")
    sp.init_sequence_parallel(SP)
    _compare(ref, _sequence_parallel(build, batches, "token"))


def case_llava_packed_rows():
    _run_llava(True)


def case_llava_padded_rows():
    _run_llava(False)


def case_image_text_qwen2_vl_packed_rows():
    """A Hugging Face image-text model (Qwen2-VL: 3-D mrope positions, split on their last
    dimension) on a packed row of image and text samples."""
    from xtuner.dataset.image_text import ImageTextJsonlDataset, image_text_collate_fn
    from xtuner.model.image_text import ImageTextFinetune, build_image_text_model

    root = os.environ["SP_IMAGE_TEXT_ASSETS"]
    data, path = f"{root}/data", f"{root}/model"
    sources = [dict(anno_path=f"{data}/media.jsonl", media_root=data),
               dict(anno_path=f"{data}/text.jsonl")]
    dataset = ImageTextJsonlDataset(sources, path, max_length=400, seed=1)
    groups = dist.get_world_size() // SP
    batches = [image_text_collate_fn([dataset[i]], return_hf_format=True)
               for i in range(groups)]

    def build():
        torch.manual_seed(0)
        return ImageTextFinetune(dict(type=build_image_text_model,
                                      pretrained_model_name_or_path=path),
                                 processor=path, use_activation_checkpointing=False,
                                 freeze_vision=False)

    sp.init_sequence_parallel(1)
    ref = _reference(build, batches, "token")
    sp.init_sequence_parallel(SP)
    _compare(ref, _sequence_parallel(build, batches, "token"))


def case_encoder_llm_time_series():
    """An encoder + LLM model (wav2vec2 features over context tokens), packed and padded."""
    import tempfile

    import numpy as np
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer, Wav2Vec2Config

    from xtuner.dataset.media import (
        TS_TOKENS,
        TimeSeriesTokenizeFunction,
        add_special_tokens,
        media_collate_fn,
    )
    from xtuner.model.encoder_llm import EncoderLLM

    llm = os.environ["SP_ENCODER_LLM"]
    tokenizer = add_special_tokens(AutoTokenizer.from_pretrained(llm), TS_TOKENS)
    config = Wav2Vec2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                            intermediate_size=32, conv_dim=(8, 8), conv_stride=(5, 4),
                            conv_kernel=(10, 8), num_conv_pos_embeddings=8,
                            num_conv_pos_embedding_groups=2, apply_spec_augment=False,
                            mask_time_prob=0.0, layerdrop=0.0, feat_extract_norm="layer",
                            do_stable_layer_norm=True)
    media_root = tempfile.mkdtemp()
    fn = TimeSeriesTokenizeFunction(tokenizer, encoder_config=config, media_root=media_root)
    samples = []
    for i, length in enumerate((130, 0, 257)):
        content = "Hello there"
        if length:
            np.save(f"{media_root}/{i}.npy", np.sin(np.arange(length) / (i + 2)))
            content = [{"type": "time_series_url", "time_series_url": {"url": f"{i}.npy"}},
                       {"type": "text", "text": "What frequency?<TS_CONTEXT>"}]
        sample = fn({"messages": [{"role": "user", "content": content},
                                  {"role": "assistant", "content": f"Answer {i}."}]})
        samples.append({"input_ids": sample["input_ids"], "labels": sample["labels"],
                        "media": [fn.load(r) for r in sample["media"]]})

    for packed in (True, False):
        batches = [media_collate_fn(samples, use_varlen_attn=packed)["data"]
                   for _ in range(dist.get_world_size() // SP)]

        def build(packed=packed):
            torch.manual_seed(0)
            encoder = AutoModel.from_config(config)
            return EncoderLLM(llm=dict(type=AutoModelForCausalLM.from_pretrained,
                                       pretrained_model_name_or_path=llm),
                              encoder=encoder, tokenizer=tokenizer, use_varlen_attn=packed,
                              freeze_encoder=False, use_activation_checkpointing=False)

        sp.init_sequence_parallel(1)
        ref = _reference(build, batches, "token")
        sp.init_sequence_parallel(SP)
        _compare(ref, _sequence_parallel(build, batches, "token"))


def main(cases):
    import datetime

    # Four processes share two cores on a CI runner: a collective can wait a while.
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=300))
    torch.set_num_threads(1)
    results = {}
    for name in cases:
        try:
            globals()[f"case_{name}"]()
            results[name] = "ok"
        except Exception:  # noqa: BLE001 -- reported per case to the test
            results[name] = traceback.format_exc()[-3000:]
        finally:
            sp.init_sequence_parallel(1)
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, results)
    if dist.get_rank() == 0:
        merged = {name: next((r[name] for r in gathered if r[name] != "ok"), "ok")
                  for name in cases}
        with open(os.environ["SP_RESULTS"], "w") as f:
            json.dump(merged, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1:])
