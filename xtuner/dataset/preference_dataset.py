"""Preference data (chosen/rejected pairs) for ``DPO``, ``ORPO`` and ``RewardModel``: XTuner
v0's ``build_preference_dataset`` and its JSONL format.

Each record is ``{"prompt": [messages], "chosen": [messages], "rejected": [messages]}`` with
OpenAI-style messages (``{"role": ..., "content": ...}``); usually ``chosen`` and
``rejected`` are one assistant message each. A pair is rendered with the tokenizer's own chat
template (``apply_chat_template``), as v0 did:

* DPO/ORPO (``is_dpo=True``): ``prompt + chosen`` and ``prompt + rejected`` are tokenized; the
  prompt's tokens (the prompt rendered with the generation prompt) are not targets.
* reward models (``is_reward=True``): ``reward_token_id`` is appended to each sequence; its
  label is 0 for the chosen sequence and 1 for the rejected one, every other label is ignored.

Sequences longer than ``max_length`` are cut there (v0). With ``use_varlen_attn`` the pairs are
packed into rows of at most ``max_packed_length`` tokens (``[c1, r1, c2, r2, ...]``, a pair
never split, ``position_ids`` restarting at every sequence, ``cumulative_len``), planned by
best-fit decreasing (:func:`~xtuner.dataset.packing.plan_packed_rows`) where v0 filled rows
greedily in order; a pair longer than a row is dropped, as in v0.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from mmengine import print_log

from xtuner.utils.constants import IGNORE_INDEX
from xtuner.utils.errors import ConfigError, DataError

from .huggingface import build, build_origin_dataset, map_workers, resolve_map_fn
from .map_fns.dataset_map_fns.intel_orca_dpo_map_fn import intel_orca_dpo_map_fn
from .map_fns.dataset_map_fns.orpo_dpo_mix_40k_map_fn import orpo_dpo_mix_40k_map_fn
from .packing import plan_packed_rows

__all__ = ["build_preference_dataset", "load_jsonl_dataset", "tokenize_pair", "pack_pairs",
           "check_preference_record", "intel_orca_dpo_map_fn", "orpo_dpo_mix_40k_map_fn"]

PAIR_COLUMNS = ("chosen_ids", "rejected_ids", "chosen_labels", "rejected_labels")


def load_jsonl_dataset(data_files=None, data_dir=None, suffix=None):
    """Read preference JSONL files into one ``datasets.Dataset`` (v0's loader).

    Args:
        data_files: a path or a list of paths.
        data_dir: read every file of this folder instead (those ending with ``suffix`` if
            given).
        suffix: e.g. ``'.jsonl'``.

    Raises:
        ConfigError: neither or both of ``data_files`` and ``data_dir`` given, or a missing path.
        DataError: a line that is not a JSON object, named ``file:line``.
    """
    from datasets import Dataset

    if (data_files is None) == (data_dir is None):
        raise ConfigError("load_jsonl_dataset: give exactly one of data_files and data_dir")
    if data_dir is not None:
        if not os.path.isdir(data_dir):
            raise ConfigError(f"load_jsonl_dataset: data_dir {data_dir} is not a folder")
        data_files = sorted(str(p) for p in Path(data_dir).iterdir()
                            if p.is_file() and (suffix is None or p.name.endswith(suffix)))
    elif isinstance(data_files, (str, os.PathLike)):
        data_files = [data_files]
    records = []
    for path in data_files:
        if not os.path.isfile(path):
            raise ConfigError(f"load_jsonl_dataset: data file {path} does not exist")
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
                if not isinstance(record, dict):
                    raise DataError(f"{path}:{number}: expected a JSON object with prompt, "
                                    f"chosen and rejected, got {type(record).__name__}")
                check_preference_record(record, f"{path}:{number}")
                records.append(record)
    return Dataset.from_list(records)


def _check_messages(value, key: str, where: str) -> None:
    if not isinstance(value, list) or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str)
            and isinstance(m.get("content"), str) for m in value):
        raise DataError(f"{where}: '{key}' must be a list of messages "
                        '{"role": ..., "content": ...} (OpenAI format)')


def check_preference_record(record: dict, where: str) -> None:
    """Raise a one-line ``DataError`` naming ``where`` unless ``record`` is a preference pair
    (``prompt``, ``chosen`` and ``rejected`` message lists, ``chosen``/``rejected`` not
    empty)."""
    missing = [k for k in ("prompt", "chosen", "rejected") if k not in record]
    if missing:
        raise DataError(f"{where}: a preference record needs 'prompt', 'chosen' and "
                        f"'rejected'; missing {', '.join(map(repr, missing))}")
    for key in ("prompt", "chosen", "rejected"):
        _check_messages(record[key], key, where)
    for key in ("chosen", "rejected"):
        if not record[key]:
            raise DataError(f"{where}: '{key}' has no message")


def tokenize_pair(pair: dict, tokenizer, max_length: int, is_reward: bool = False,
                  reward_token_id: int = -1) -> dict:
    """Token ids and labels of a pair's chosen and rejected sequences (v0's ``tokenize``).

    Returns ``chosen_ids``, ``rejected_ids``, ``chosen_labels`` and ``rejected_labels``.
    """
    def render(messages, generation_prompt):
        text = tokenizer.apply_chat_template(messages, tokenize=False,
                                             add_generation_prompt=generation_prompt)
        return tokenizer.encode(text, add_special_tokens=False)

    prompt_ids = render(pair["prompt"], True)
    chosen_ids = render(pair["prompt"] + pair["chosen"], False)[:max_length]
    rejected_ids = render(pair["prompt"] + pair["rejected"], False)[:max_length]
    if is_reward:
        return {"chosen_ids": chosen_ids + [reward_token_id],
                "rejected_ids": rejected_ids + [reward_token_id],
                "chosen_labels": [IGNORE_INDEX] * len(chosen_ids) + [0],
                "rejected_labels": [IGNORE_INDEX] * len(rejected_ids) + [1]}
    cut = min(len(prompt_ids), max_length)
    return {"chosen_ids": chosen_ids, "rejected_ids": rejected_ids,
            "chosen_labels": [IGNORE_INDEX] * cut + chosen_ids[cut:],
            "rejected_labels": [IGNORE_INDEX] * cut + rejected_ids[cut:]}


def _tokenize_batch(batch: dict, tokenizer, max_length: int, is_reward: bool,
                    reward_token_id: int) -> dict:
    out: dict[str, list] = {k: [] for k in PAIR_COLUMNS}
    for i in range(len(batch["prompt"])):
        pair = {k: batch[k][i] for k in ("prompt", "chosen", "rejected")}
        check_preference_record(pair, f"preference record {batch['_index'][i]}")
        for key, value in tokenize_pair(pair, tokenizer, max_length, is_reward,
                                        reward_token_id).items():
            out[key].append(value)
    return out


def pack_pairs(dataset, max_packed_length: int, shuffle: bool = True, seed: int = 0):
    """Pack tokenized pairs into rows ``[c1, r1, c2, r2, ...]`` of at most
    ``max_packed_length`` tokens, each pair whole; pairs longer than that are dropped.

    Returns a ``datasets.Dataset`` of ``input_ids``, ``labels``, ``position_ids`` and
    ``cumulative_len`` rows.
    """
    import numpy as np
    from datasets import Dataset

    if shuffle:
        dataset = dataset.shuffle(seed=seed).flatten_indices()
    columns = dataset.select_columns(list(PAIR_COLUMNS))[:]
    lengths = np.array([len(c) + len(r) for c, r in zip(columns["chosen_ids"],
                                                         columns["rejected_ids"])], dtype=int)
    keep = np.flatnonzero(lengths <= max_packed_length)
    if len(keep) < len(lengths):
        print_log(f"Dropped {len(lengths) - len(keep)} of {len(lengths)} pairs longer than "
                  f"max_packed_length={max_packed_length}", logger="current")
    rows: dict[str, list] = {"input_ids": [], "labels": [], "position_ids": [],
                             "cumulative_len": []}
    for row in plan_packed_rows(lengths[keep], max_packed_length):
        ids, labels, positions, bounds = [], [], [], [0]
        for i in keep[row]:
            for side in ("chosen", "rejected"):
                seq = columns[f"{side}_ids"][i]
                ids += seq
                labels += columns[f"{side}_labels"][i]
                positions += range(len(seq))
                bounds.append(bounds[-1] + len(seq))
        rows["input_ids"].append(ids)
        rows["labels"].append(labels)
        rows["position_ids"].append(positions)
        rows["cumulative_len"].append(bounds)
    tokens = int(lengths[keep].sum())
    count = len(rows["input_ids"])
    print_log(f"Packed {len(keep)} pairs ({tokens} tokens) into {count} rows of at most "
              f"{max_packed_length} tokens: packing efficiency "
              f"{tokens / max(1, count * max_packed_length):.1%}", logger="current")
    return Dataset.from_dict(rows)


def _has_targets(batch: dict) -> list[bool]:
    return [any(t != IGNORE_INDEX for t in c) and any(t != IGNORE_INDEX for t in r)
            for c, r in zip(batch["chosen_labels"], batch["rejected_labels"])]


def _build(dataset, tokenizer, max_length, dataset_map_fn, is_reward, reward_token_id,
           num_proc, pack, max_packed_length, shuffle_before_pack, seed):
    tokenizer = build(tokenizer)
    dataset = build_origin_dataset(dataset, split="train")
    workers = map_workers(num_proc, len(dataset))
    map_fn = resolve_map_fn(dataset_map_fn)
    if map_fn is not None:
        dataset = dataset.map(map_fn, num_proc=workers, desc="Map fn")
    missing = [k for k in ("prompt", "chosen", "rejected") if k not in dataset.column_names]
    if missing:
        raise DataError(f"preference records need 'prompt', 'chosen' and 'rejected' columns; "
                        f"the data has {', '.join(dataset.column_names)} (set dataset_map_fn "
                        "for other layouts)")
    dataset = dataset.add_column("_index", list(range(len(dataset))))
    tokenized = dataset.map(
        _tokenize_batch, batched=True, num_proc=workers, remove_columns=dataset.column_names,
        fn_kwargs=dict(tokenizer=tokenizer, max_length=max_length, is_reward=is_reward,
                       reward_token_id=reward_token_id), desc="Tokenizing pairs")
    usable = tokenized.filter(_has_targets, batched=True)
    if len(usable) < len(tokenized):
        print_log(f"Dropped {len(tokenized) - len(usable)} of {len(tokenized)} pairs whose "
                  f"chosen or rejected response has no token left within max_length="
                  f"{max_length}", logger="current")
    if not len(usable):
        raise DataError(f"no preference pair has a response within max_length={max_length}")
    if pack:
        return pack_pairs(usable, max_packed_length, shuffle=shuffle_before_pack, seed=seed)
    return usable


def _on_rank0(build_fn: Callable):
    """Build on rank 0 of a distributed run and send the result to the others (v0)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return build_fn()
    result = [build_fn() if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(result, src=0)
    return result[0]


def build_preference_dataset(dataset, tokenizer, max_length: int,
                             dataset_map_fn=None, is_dpo: bool = True, is_reward: bool = False,
                             reward_token_id: int = -1, num_proc: int = 32,
                             use_varlen_attn: bool = False, max_packed_length: int = 16384,
                             shuffle_before_pack: bool = True, max_response_length: int = 4096,
                             is_reference: bool = False, pack_to_max_length: bool | None = None,
                             seed: int = 0):
    """Tokenized preference pairs (v0's signature), packed for varlen attention if asked.

    Args:
        dataset: a ``datasets`` dataset or its config (``load_dataset``,
            :func:`load_jsonl_dataset`); a ``DatasetDict``'s ``train`` split is used.
        tokenizer: the tokenizer or its config; its chat template renders the messages.
        max_length: the most tokens of one sequence (chosen or rejected).
        dataset_map_fn: turns records into ``prompt``/``chosen``/``rejected`` messages
            (``orpo_dpo_mix_40k_map_fn``, ``intel_orca_dpo_map_fn``, a registered name...).
        is_dpo: DPO/ORPO labels (response tokens are targets).
        is_reward: reward-model labels (``reward_token_id`` appended, labelled 0/1).
        reward_token_id: the reward token (required with ``is_reward``).
        num_proc: at most this many processes for the map fn and tokenization.
        use_varlen_attn: pack pairs into rows (``pack_to_max_length`` defaults to it).
        max_packed_length: the most tokens of a packed row (v0 configs use ``2 * max_length``).
        shuffle_before_pack: shuffle the pairs (with ``seed``) before packing.
        max_response_length: v0's POLAR option, used with ``is_reference`` only.
        is_reference: v0's POLAR reference-answer layout (not supported).
        pack_to_max_length: pack the pairs (requires ``use_varlen_attn``: pairs in one row
            must not attend to each other).
        seed: the shuffle seed.
    """
    if is_dpo == is_reward:
        raise ConfigError("build_preference_dataset: set exactly one of is_dpo and is_reward "
                          f"(got is_dpo={is_dpo}, is_reward={is_reward})")
    if is_reward and (reward_token_id is None or reward_token_id < 0):
        raise ConfigError("build_preference_dataset: is_reward=True needs reward_token_id (the "
                          "token appended to every sequence, e.g. an unused special token)")
    if is_reference:
        raise ConfigError("build_preference_dataset: is_reference=True (v0's POLAR "
                          "reference-answer layout) is not supported; use prompt/chosen/"
                          "rejected records")
    pack = use_varlen_attn if pack_to_max_length is None else bool(pack_to_max_length)
    if pack and not use_varlen_attn:
        raise ConfigError("build_preference_dataset: pack_to_max_length=True needs "
                          "use_varlen_attn=True (packed sequences must not attend to each "
                          "other)")
    return _on_rank0(lambda: _build(dataset, tokenizer, max_length, dataset_map_fn, is_reward,
                                    reward_token_id, num_proc, pack, max_packed_length,
                                    shuffle_before_pack, seed))
