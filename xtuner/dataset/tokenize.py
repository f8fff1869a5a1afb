"""Turn a templated conversation into ``input_ids`` and ``labels`` (XTuner v0's ``encode_fn``).

The layout of one sample, turn by turn::

    [BOS] input [output (+SUFFIX)] [EOS] [SEP]   [BOS] input ...
     -100  -100   trained            trained -100

* BOS starts the sample and every turn that follows an EOS; Qwen tokenizers get none.
* ``output_with_loss=False`` on a turn keeps its output (and EOS) in the context but untrained.
* ``need_eos_token=False`` (templates whose SUFFIX acts as EOS) drops EOS, and the next turn
  then gets no BOS either.
* The result is cut to ``max_length`` (the tail is lost, EOS included), as v0 did.
* A tokenizer without ``eos_token`` is refused (:class:`ConfigError`) as soon as a turn needs
  EOS (v0 asserted for Qwen and crashed with ``TypeError`` otherwise); one without a BOS token
  gets none (v0 crashed with ``TypeError`` unless it was a Qwen class).

Token ids and label masks equal v0's for the same tokenizer and conversation.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from xtuner.utils.constants import DEFAULT_IMAGE_TOKEN, IGNORE_INDEX, IMAGE_TOKEN_INDEX
from xtuner.utils.errors import ConfigError

__all__ = ["encode_fn", "encode_batch", "special_token_ids"]

# v0 keyed these rules on tokenizer class names; transformers 5 names Qwen2's tokenizer
# `Qwen2Tokenizer` (there is no separate fast class any more), so it is listed too.
_NO_BOS_TOKENIZERS = {"QWenTokenizer", "QWen2Tokenizer", "Qwen2Tokenizer", "Qwen2TokenizerFast"}
_CHATGLM_BOS = [64790, 64792]


def special_token_ids(tokenizer) -> tuple[list[int], list[int]]:
    """The BOS and EOS id lists that :func:`encode_fn` puts around turns."""
    name = type(tokenizer).__name__
    if name in _NO_BOS_TOKENIZERS:
        bos: Any = []
    elif name == "ChatGLMTokenizer":
        bos = list(_CHATGLM_BOS)
    else:
        bos = tokenizer.bos_token_id
    eos: Any = tokenizer.eos_token_id
    bos = [] if bos is None else ([bos] if isinstance(bos, int) else list(bos))
    eos = [] if eos is None else ([eos] if isinstance(eos, int) else list(eos))
    return bos, eos


def _encode_input(encode, text: str, with_image_token: bool) -> list[int]:
    if not (with_image_token and DEFAULT_IMAGE_TOKEN in text):
        return encode(text)
    ids: list[int] = []
    chunks = text.split(DEFAULT_IMAGE_TOKEN)
    for i, chunk in enumerate(chunks):
        ids.extend(encode(chunk))
        if i != len(chunks) - 1:
            ids.append(IMAGE_TOKEN_INDEX)
    return ids


def _no_eos_error(tokenizer) -> ConfigError:
    return ConfigError(
        f"the tokenizer ({type(tokenizer).__name__}) has no eos_token, but a conversation turn "
        "needs one (need_eos_token=True); set eos_token in the tokenizer config or pick a "
        "prompt template whose SUFFIX_AS_EOS is True"
    )


def _assemble(conversation: list, encode: Callable[[str], list[int]], bos: list[int],
              eos: list[int], max_length: int | None, input_ids_with_output: bool,
              with_image_token: bool, tokenizer=None) -> dict[str, list[int]]:
    """The sample layout of :func:`encode_fn`; ``encode(text)`` gives the ids of a text piece.

    Which pieces are encoded depends only on the texts and flags, never on the ids, so
    :func:`encode_batch` can collect them with a dry run first.
    """
    if len(conversation) > 1 and not input_ids_with_output:
        # v0 asserted; a prompt-only sample of several turns has no defined layout. A
        # ValueError, which xtuner.dataset.checker reports against the record.
        raise ValueError(
            f"input_ids_with_output=False keeps only the prompt of single-turn samples, but this "
            f"sample has {len(conversation)} turns; set input_ids_with_output=True"
        )
    input_ids: list[int] = []
    labels: list[int] = []
    needs_bos = True
    for turn in conversation:
        if needs_bos:
            input_ids += bos
            labels += [IGNORE_INDEX] * len(bos)
        prompt = _encode_input(encode, turn.get("input") or "", with_image_token)
        input_ids += prompt
        labels += [IGNORE_INDEX] * len(prompt)
        if not input_ids_with_output:
            continue
        trained = turn.get("output_with_loss", True)
        output = turn.get("output") or ""
        if output != "":
            ids = encode(output)
            input_ids += ids
            labels += ids if trained else [IGNORE_INDEX] * len(ids)
        if turn.get("need_eos_token", True):
            if not eos:
                raise _no_eos_error(tokenizer)
            needs_bos = True
            input_ids += eos
            labels += eos if trained else [IGNORE_INDEX] * len(eos)
        else:
            needs_bos = False
        sep = turn.get("sep") or ""
        if sep != "":
            ids = encode(sep)
            input_ids += ids
            labels += [IGNORE_INDEX] * len(ids)
    if max_length is not None and len(input_ids) > max_length:
        input_ids = input_ids[:max_length]
        labels = labels[:max_length]
    return {"input_ids": input_ids, "labels": labels}


def encode_fn(example: dict, tokenizer, max_length: int | None,
              input_ids_with_output: bool = True,
              with_image_token: bool = False) -> dict[str, list[int]]:
    """Tokenize ``example['conversation']`` into ``{'input_ids', 'labels'}``.

    Args:
        example: a record with a ``conversation`` list of turns (``input``, ``output``,
            optional ``need_eos_token`` (default True), ``sep`` (default ''),
            ``output_with_loss`` (default True)).
        tokenizer: a Hugging Face tokenizer.
        max_length: cut both lists to this many tokens (``None``: no cut).
        input_ids_with_output: include outputs (training); False keeps only the prompts of a
            single-turn sample (used for generation-style evaluation).
        with_image_token: encode ``<image>`` in inputs as ``IMAGE_TOKEN_INDEX``.
    """
    bos, eos = special_token_ids(tokenizer)
    return _assemble(example["conversation"],
                     lambda text: tokenizer.encode(text, add_special_tokens=False),
                     bos, eos, max_length, input_ids_with_output, with_image_token, tokenizer)


def encode_batch(examples: list[dict], tokenizer, max_length: int | None,
                 input_ids_with_output: bool = True,
                 with_image_token: bool = False) -> list[dict[str, list[int]]]:
    """:func:`encode_fn` of each example, with one tokenizer call for all their text pieces.

    A fast tokenizer encodes a batch in Rust on all cores, instead of paying Python's
    per-call overhead for every input, output and separator; the ids are the same.
    """
    bos, eos = special_token_ids(tokenizer)
    texts: dict[str, list[int]] = {}

    def collect(text: str) -> list[int]:
        texts.setdefault(text, [])
        return []

    for example in examples:
        _assemble(example["conversation"], collect, bos, eos, None, input_ids_with_output,
                  with_image_token, tokenizer)
    pieces = list(texts)
    if pieces:
        if callable(tokenizer):
            encoded = tokenizer(pieces, add_special_tokens=False)["input_ids"]
        else:  # an object with only `encode` (as encode_fn needs)
            encoded = [tokenizer.encode(piece, add_special_tokens=False) for piece in pieces]
        texts = dict(zip(pieces, encoded))
    return [_assemble(example["conversation"], texts.__getitem__, bos, eos, max_length,
                      input_ids_with_output, with_image_token) for example in examples]
