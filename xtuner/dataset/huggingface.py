"""``process_hf_dataset``: XTuner v0's text pipeline on a Hugging Face ``datasets`` dataset.

load -> ``dataset_map_fn`` (source format to XTuner's ``conversation``) -> ``template_map_fn``
(chat template) -> tokenize (:func:`encode_fn`) -> drop samples with nothing to train ->
pack into rows of ``max_length`` (:func:`pack_dataset`).

The result is cached on disk (:mod:`.cache`): a second run of the same config loads it.
Every record gets the verdict ``xtuner check-custom-dataset`` gives it, from the same checks
(:mod:`.record_checks`): an error stops the run with the checker's ``file:line`` (or
``file:row N``) line, a warning is logged with the first such line. Raw records of local JSON,
JSON Lines, parquet and ``save_to_disk`` data are checked before loading (:mod:`.raw_check`);
the map fn's output, the template and the tokenized sample are checked as they are made
(:mod:`.guarded_map`). ``skip_bad_records=True`` / ``XTUNER_SKIP_BAD_RECORDS=1`` drops bad
records instead, counted in the log, without writing copies of the data files. Data of which
no sample is left stops with one line saying how many records were read and why each kind
was dropped; an empty dataset never reaches the trainer or the cache.

In a distributed run only rank 0 processes; the other ranks wait on a gloo barrier with a
long timeout (``XTUNER_DATASET_TIMEOUT`` minutes, default 60) instead of NCCL's 30 minutes
and then load rank 0's cache folder (or, with the cache off, receive the pickled result), so
slow preprocessing never trips a collective timeout.
"""
from __future__ import annotations

import logging
import os
from datetime import timedelta
from functools import partial

from mmengine import print_log

from xtuner.registry import BUILDER, MAP_FUNC
from xtuner.utils.constants import IGNORE_INDEX
from xtuner.utils.errors import ConfigError

from .cache import (
    cache_disabled_by_env,
    cache_root,
    cached_or_none,
    dataset_cache_key,
    load_processed,
    save_processed,
    skip_bad_records_by_env,
)
from .guarded_map import GuardedStage, Step, add_row_ids, drop_row_ids, run_stage
from .packing import pack_dataset, pack_dataset_v0
from .problems import (
    EMPTY,
    MAP_FN,
    NO_TRAINABLE,
    TEMPLATE,
    TOKENIZE,
    Tally,
    no_usable_sample,
)
from .raw_check import load_checked, row_of_dataset
from .record_checks import (
    check_conversation,
    check_encoded,
    missing_template_tokens,
    template_of,
    template_tokens_added,
    template_tokens_problem,
)
from .sources import local_sources
from .specs import declared_format, template_name_of
from .tokenize import encode_batch, encode_fn

__all__ = ["process_hf_dataset", "build_origin_dataset", "map_workers"]


def build(obj):
    """Build a config dict (``dict(type=..., ...)``) with ``BUILDER``; pass objects through.

    A ``datasets.DatasetDict`` is a dict too, so only dicts with a ``type`` are built.
    """
    if isinstance(obj, dict) and "type" in obj:
        return BUILDER.build(obj)
    return obj


def resolve_map_fn(fn):
    """Accept a function, a ``MAP_FUNC`` name, a dotted path, or a config dict."""
    if fn is None or callable(fn):
        return fn
    if isinstance(fn, dict):
        return BUILDER.build(fn)
    if isinstance(fn, str):
        found = MAP_FUNC.get(fn)
        if found is not None:
            return found
        from mmengine.utils import get_object_from_string

        found = get_object_from_string(fn)
        if found is None:
            raise ConfigError(f"dataset_map_fn '{fn}' is neither a registered map fn nor an "
                              "importable dotted path")
        return found
    raise ConfigError(f"dataset_map_fn must be a function, a name or a dict, not {type(fn)}")


def map_workers(requested: int | None, num_rows: int) -> int | None:
    """Processes worth starting for ``num_rows`` rows (``None`` means in-process).

    v0 always asked for 32 processes; on a small machine or a small dataset, starting them
    costs more than the work.
    """
    if not requested or requested <= 1:
        return None
    workers = min(requested, os.cpu_count() or 1, num_rows // 2000)
    return workers if workers > 1 else None


def build_origin_dataset(dataset, split: str | None):
    """Build the ``dataset`` config and pick ``split`` from a ``DatasetDict``."""
    from datasets import DatasetDict, concatenate_datasets

    dataset = build(dataset)
    if isinstance(dataset, DatasetDict):
        if split is None:
            return concatenate_datasets(list(dataset.values()))
        if split not in dataset:
            raise ConfigError(f"the dataset has no split '{split}' (it has: "
                              f"{', '.join(dataset)})")
        return dataset[split]
    return dataset


def _has_trainable_token(labels: list[list[int]]) -> list[bool]:
    return [row.count(IGNORE_INDEX) < len(row) for row in labels]


def _is_nonempty(conversations: list[list]) -> list[bool]:
    return [len(conversation) > 0 for conversation in conversations]


def _cut(encoded: dict, max_length: int | None) -> dict:
    if max_length is None or len(encoded["input_ids"]) <= max_length:
        return encoded
    return {**encoded, "input_ids": encoded["input_ids"][:max_length],
            "labels": encoded["labels"][:max_length]}


def _check_tokenized(encoded: dict, max_length: int | None, input_ids_with_output: bool):
    return check_encoded(encoded["labels"], max_length, input_ids_with_output)


def _where(dataset_cfg, split) -> str:
    sources, _ = local_sources(dataset_cfg, split)
    if not sources:
        return "the dataset"
    paths = list(dict.fromkeys(s.path for s in sources))
    return ", ".join(paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")


_TEMPLATE_SAMPLES = 1000  # templated samples measured for the missing-template-token warning


def _warn_missing_template_tokens(dataset, template_fn, tokenizer, tally: Tally) -> None:
    """Log what ``xtuner check-custom-dataset`` warns about a template whose special tokens
    the tokenizer lacks, with the tokens added per sample measured on the first samples."""
    missing = missing_template_tokens(template_of(template_fn), tokenizer)
    if not missing or "conversation" not in dataset.column_names or len(dataset) == 0:
        return
    head = dataset.select(range(min(len(dataset), _TEMPLATE_SAMPLES)))["conversation"]
    added = sum(template_tokens_added(conversation, missing) for conversation in head)
    problem = template_tokens_problem(template_name_of(template_fn), missing, added, len(head))
    tally.warn(str(problem))


def _process(dataset, do_dataset_tokenization=True, tokenizer=None, max_length=None,
             dataset_map_fn=None, template_map_fn=None, max_dataset_length=None, split="train",
             remove_unused_columns=False, rename_maps=(), shuffle_before_pack=True,
             pack_to_max_length=True, use_varlen_attn=False, input_ids_with_output=True,
             with_image_token=False, map_num_proc=32, seed=0, skip_bad_records=False,
             packing="whole", tally: Tally | None = None):
    if packing not in ("whole", "v0"):
        raise ConfigError(f"packing={packing!r}: use 'whole' (samples kept whole, the "
                          "default) or 'v0' (XTuner v0's cut stream)")
    if use_varlen_attn and not pack_to_max_length:
        raise ConfigError("use_varlen_attn=True needs pack_to_max_length=True")
    if pack_to_max_length and split not in ("train", None):
        raise ConfigError(f"pack_to_max_length=True is for the train split, not '{split}'")
    if pack_to_max_length and max_length is None:
        raise ConfigError("pack_to_max_length=True needs max_length")

    map_fn = resolve_map_fn(dataset_map_fn)
    # Why records were dropped, for the error when none is left, and the warnings logged.
    tally = Tally() if tally is None else tally
    source = dataset
    read = None
    if do_dataset_tokenization:
        # Bad records surface here as file:line messages, not as an Arrow cast error from
        # deep inside `datasets`.
        dataset, locate, read = load_checked(dataset, split, map_fn, skip_bad_records,
                                             tally)
    else:
        dataset, locate = build_origin_dataset(dataset, split), row_of_dataset
    if read is None:
        read = len(dataset)
    dataset = add_row_ids(dataset)
    if max_dataset_length is not None and len(dataset) > max_dataset_length:
        dataset = dataset.shuffle(seed=seed).select(range(max_dataset_length))

    num_proc = map_workers(map_num_proc, len(dataset))
    stage = partial(run_stage, locate=locate, skip=skip_bad_records, num_proc=num_proc,
                    tally=tally)
    steps = []
    if map_fn is not None:
        name = getattr(map_fn, "__name__", None) or type(map_fn).__name__
        # The verdicts of `xtuner check-custom-dataset`: a wrong shape or an empty
        # conversation is an error, unless the format's map fn drops records on purpose.
        steps.append(Step(map_fn, MAP_FN, name,
                          check=partial(check_conversation, name=name,
                                        fmt=declared_format(map_fn))))
    template_fn = build(template_map_fn) if template_map_fn is not None else None
    if template_fn is not None:
        steps.append(Step(template_fn, TEMPLATE, "template_map_fn"))
    if steps:
        # One pass for both: the map fn's output goes straight into the template instead of
        # being written to Arrow and read back.
        dataset = stage(dataset, GuardedStage(*steps),
                        desc="Map and apply template" if len(steps) == 2 else "Map dataset")
    if "conversation" in dataset.column_names:
        before = len(dataset)
        dataset = dataset.filter(_is_nonempty, input_columns=["conversation"], batched=True,
                                 num_proc=num_proc, desc="Drop empty")
        tally.dropped[EMPTY] += before - len(dataset)

    for old, new in rename_maps:
        dataset = dataset.rename_column(old, new)

    if pack_to_max_length and not remove_unused_columns:
        print_log("pack_to_max_length=True needs remove_unused_columns=True; removing them",
                  logger="current", level=logging.WARNING)
        remove_unused_columns = True

    if do_dataset_tokenization:
        tokenizer = build(tokenizer)
        if template_fn is not None:
            _warn_missing_template_tokens(dataset, template_fn, tokenizer, tally)
        # Encoded whole and cut after the checks, so they see what max_length cuts off.
        options = dict(tokenizer=tokenizer, max_length=None,
                       input_ids_with_output=input_ids_with_output,
                       with_image_token=with_image_token)
        tokenize = Step(partial(encode_fn, **options), TOKENIZE, "the tokenizer",
                        batch_fn=partial(encode_batch, **options),
                        check=partial(_check_tokenized, max_length=max_length,
                                      input_ids_with_output=input_ids_with_output),
                        finish=partial(_cut, max_length=max_length))
        dataset = stage(dataset, GuardedStage(tokenize), desc="Tokenize",
                        remove_columns=dataset.column_names if remove_unused_columns else None)
    dataset = drop_row_ids(dataset)
    if input_ids_with_output and "labels" in dataset.column_names:
        # The samples the tokenize step warned about (`no trainable token`), or, for data
        # tokenized beforehand, any sample without a trained label.
        before = len(dataset)
        dataset = dataset.filter(_has_trainable_token, input_columns=["labels"], batched=True,
                                 num_proc=num_proc, desc="Drop samples without trained tokens")
        tally.dropped[NO_TRAINABLE] += before - len(dataset)
        if len(dataset) < before and not do_dataset_tokenization:
            tally.warn(f"dropped {before - len(dataset)} samples with no trained token")
    if len(dataset) == 0:
        # An empty training set never reaches the trainer (nor the cache).
        raise no_usable_sample(read, _where(source, split), +tally.dropped)

    if pack_to_max_length:
        # In this process: gathering rows is Arrow I/O, and on 1M alpaca records two worker
        # processes took 246 s where one took 169 s (2-core machine).
        if packing == "v0":
            if shuffle_before_pack:
                dataset = dataset.shuffle(seed=seed).flatten_indices()
            dataset, stats = pack_dataset_v0(dataset, max_length)
        else:
            dataset, stats = pack_dataset(dataset, max_length, shuffle=shuffle_before_pack,
                                          seed=seed)
        print_log(str(stats).capitalize(), logger="current")
    elif "input_ids" in dataset.column_names and "length" not in dataset.column_names:
        dataset = dataset.map(lambda x: {"length": len(x["input_ids"])}, num_proc=num_proc,
                              desc="Measure")
    if "length" in dataset.column_names:
        # LengthGroupedSampler reads `dataset.length`, as in v0.
        dataset.length = dataset["length"]
    return dataset


def process_hf_dataset(dataset, do_dataset_tokenization=True, tokenizer=None, max_length=None,
                       dataset_map_fn=None, template_map_fn=None, max_dataset_length=None,
                       split="train", remove_unused_columns=False, rename_maps=(),
                       shuffle_before_pack=True, pack_to_max_length=True, use_varlen_attn=False,
                       input_ids_with_output=True, with_image_token=False, map_num_proc=32,
                       seed=0, cache=True, skip_bad_records=False, packing="whole"):
    """Build the training dataset a config describes (XTuner v0's signature).

    Args:
        dataset: a ``datasets`` dataset or a config dict building one (e.g.
            ``dict(type=load_dataset, path='json', data_files=...)``).
        do_dataset_tokenization: tokenize (False for an already tokenized dataset).
        tokenizer: a tokenizer or its config dict.
        max_length: cut samples to this many tokens; the row size when packing.
        dataset_map_fn: converts a source record to ``{'conversation': [...]}``.
        template_map_fn: applies a chat template (``template_map_fn_factory(template=...)``).
        max_dataset_length: keep a random (seeded) subset of this size.
        split: the split to use from a ``DatasetDict`` (None: all, concatenated).
        remove_unused_columns: keep only the tokenized columns (forced when packing).
        rename_maps: ``[(old, new), ...]`` column renames after templating.
        shuffle_before_pack: shuffle (seeded) before packing.
        pack_to_max_length: pack whole samples into rows of at most ``max_length`` tokens.
        use_varlen_attn: samples in a row do not attend to each other (needs packing).
        input_ids_with_output: include outputs in ``input_ids`` (training).
        with_image_token: encode ``<image>`` as ``IMAGE_TOKEN_INDEX``.
        map_num_proc: upper bound on preprocessing processes.
        seed: seed of the subset selection and of the pre-packing shuffle.
        cache: reuse / store the result under ``$XTUNER_CACHE_DIR`` (default
            ``~/.cache/xtuner/datasets``), keyed on the data files' content and every setting
            that changes the rows. ``XTUNER_DATASET_CACHE=0`` turns it off too.
        skip_bad_records: drop raw records that fail the format checks (counted in the log)
            instead of raising :class:`DataError`; ``XTUNER_SKIP_BAD_RECORDS=1`` too.
        packing: ``'whole'`` (default): samples stay whole, rows planned by best-fit
            decreasing; ``'v0'``: XTuner v0's packing (samples concatenated and the stream
            cut every ``max_length`` tokens, the tail dropped), to reproduce a v0 run.
    """
    kwargs = dict(
        dataset=dataset, do_dataset_tokenization=do_dataset_tokenization, tokenizer=tokenizer,
        max_length=max_length, dataset_map_fn=dataset_map_fn, template_map_fn=template_map_fn,
        max_dataset_length=max_dataset_length, split=split,
        remove_unused_columns=remove_unused_columns, rename_maps=rename_maps,
        shuffle_before_pack=shuffle_before_pack, pack_to_max_length=pack_to_max_length,
        use_varlen_attn=use_varlen_attn, input_ids_with_output=input_ids_with_output,
        with_image_token=with_image_token, map_num_proc=map_num_proc, seed=seed,
        skip_bad_records=bool(skip_bad_records or skip_bad_records_by_env()), packing=packing)
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return _process_cached(kwargs, cache)[1]
    return _process_on_rank0(kwargs, cache)


def _process_cached(kwargs, cache: bool):
    """``(cache folder or None, dataset)``: load the cached result or process and store it."""
    if not cache or cache_disabled_by_env():
        return None, _process(**kwargs)
    sources, reason = local_sources(kwargs["dataset"], kwargs["split"])
    if sources is None:
        print_log(f"the processed dataset is not cached: {reason}", logger="current")
        return None, _process(**kwargs)
    # Built once here: the key needs its vocabulary and _process reuses it.
    tokenizer = build(kwargs["tokenizer"])
    kwargs = {**kwargs, "tokenizer": tokenizer}
    key, material = dataset_cache_key(kwargs, sources, tokenizer)
    folder = cache_root() / key
    dataset = cached_or_none(key)
    if dataset is None:
        tally = Tally()
        dataset = _process(**kwargs, tally=tally)
        save_processed(dataset, folder, material, sources=[s.path for s in sources],
                       warnings=tally.warnings)
        print_log(f"saved processed dataset to {folder} ({len(dataset)} rows)",
                  logger="current")
    return folder, dataset


def _process_on_rank0(kwargs, cache: bool):
    import torch.distributed as dist

    minutes = float(os.environ.get("XTUNER_DATASET_TIMEOUT", 60))
    group = dist.new_group(backend="gloo", timeout=timedelta(minutes=minutes))
    rank = dist.get_rank()
    folder, dataset = _process_cached(kwargs, cache) if rank == 0 else (None, None)
    dist.monitored_barrier(group=group, timeout=timedelta(minutes=minutes))
    where = [str(folder) if folder is not None else None]
    dist.broadcast_object_list(where, src=0, group=group)
    if rank != 0 and where[0] is not None:
        # Rank 0 has just verified or written the folder: sizes suffice here.
        dataset, _ = load_processed(where[0], check_hashes=False)
    loaded = [None] * dist.get_world_size()
    dist.all_gather_object(loaded, dataset is not None, group=group)
    if not all(loaded):
        # Caching off, or a rank that cannot see rank 0's cache (another node's disk):
        # send the pickled dataset.
        result = [dataset if rank == 0 else None]
        dist.broadcast_object_list(result, src=0, group=group)
        if dataset is None:
            dataset = result[0]
    dist.destroy_process_group(group)
    return dataset
