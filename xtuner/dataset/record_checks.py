"""Per-record checks: does one record fit the format its ``dataset_map_fn`` declares, and is
there something to train on once it is tokenized?

Each check is shared by ``xtuner check-custom-dataset`` (:mod:`.checker`) and training
(:mod:`.raw_check`, :mod:`.huggingface`), so both give every record the same verdict:

* :func:`validate_record`: the raw record (missing or misspelled keys, wrong JSON types,
  empty conversations, roles out of order);
* :func:`check_conversation`: what the map fn returned (an empty conversation is an error, or
  a warning for map fns that drop records on purpose);
* :func:`check_encoded`: the tokenized sample (no trained token: dropped with a warning;
  cut by ``max_length``: warning).

All return :class:`~.problems.Problem` lists and never raise. :func:`missing_template_tokens`
and :func:`template_tokens_problem` are the dataset-wide check of a template whose special
tokens the tokenizer does not have.
"""
from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from typing import Any

from xtuner.utils.constants import IGNORE_INDEX

from .formats import CONVERSATION, MESSAGES, SHAREGPT, DataFormat, guess_formats
from .problems import (
    EMPTY,
    ERROR,
    IMAGE_COUNT,
    MAP_FN,
    MISSING_IMAGE,
    MISSING_KEY,
    NO_TRAINABLE,
    ROLE_ORDER,
    TEMPLATE_TOKENS,
    TOO_LONG,
    TRUNCATED,
    UNKNOWN_KEY,
    UNKNOWN_ROLE,
    UNREADABLE_IMAGE,
    WARNING,
    WRONG_TYPE,
    Problem,
    describe_value,
)

__all__ = ["validate_record", "check_map_fn_output", "check_conversation", "check_encoded",
           "missing_key_problem", "template_of", "missing_template_tokens",
           "template_tokens_added", "template_tokens_problem", "record_images",
           "check_images", "image_placeholders", "check_image_count", "check_image_budget"]

_error, _warning, _got = Problem.error, Problem.warning, describe_value

_TYPE_NAMES = {str: "a string", list: "a list", dict: "an object", bool: "true or false"}


def _typo(missing: str, keys, known=()) -> str | None:
    """A key of ``keys`` (not itself expected) that looks like a misspelling of ``missing``."""
    candidates = [k for k in keys if isinstance(k, str) and k not in known and k != missing]
    matches = difflib.get_close_matches(missing, candidates, n=1, cutoff=0.7)
    return matches[0] if matches else None


def missing_key_problem(where: str, key: str, obj: dict, known=()) -> Problem:
    """``key`` is missing from ``obj`` (at ``where``): names a close misspelling, or the keys
    ``obj`` has."""
    prefix = f"{where}: " if where else ""
    typo = _typo(key, obj, known)
    if typo is not None:
        return _error(MISSING_KEY, f"{prefix}'{key}' (found '{typo}': rename it to '{key}')")
    have = ", ".join(repr(k) for k in obj) or "no keys"
    return _error(MISSING_KEY, f"{prefix}'{key}' (the {'item' if where else 'record'} has "
                               f"{have})")


def _unknown_keys(where: str, obj: dict, known: tuple[str, ...],
                  required: tuple[str, ...]) -> list[Problem]:
    """Warn about keys that are ignored but look like a misspelled optional key.

    A misspelled required key is already reported by :func:`_missing`.
    """
    out = []
    for key in obj:
        if key in known or not isinstance(key, str):
            continue
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.75)
        if close and close[0] not in obj and close[0] not in required:
            out.append(_warning(UNKNOWN_KEY, f"{where}: '{key}' is ignored (did you mean "
                                             f"'{close[0]}'?)"))
    return out


_TURN_KEYS = ("system", "input", "output", "output_with_loss", "need_eos_token", "sep")


def _not_an_object(at: str, first: str, second: str, value: Any) -> Problem:
    return _error(WRONG_TYPE, f"{at} must be an object with '{first}' and '{second}', got "
                              f"{_got(value)}")


def _check_turns(turns: list, where: str = "conversation") -> list[Problem]:
    if not turns:
        return [_error(EMPTY, f"'{where}' is an empty list")]
    problems: list[Problem] = []
    for i, turn in enumerate(turns):
        at = f"{where}[{i}]"
        if not isinstance(turn, dict):
            problems.append(_not_an_object(at, "input", "output", turn))
            continue
        for key in ("input", "output"):
            if key not in turn:
                problems.append(missing_key_problem(at, key, turn, _TURN_KEYS))
            elif not isinstance(turn[key], str):
                problems.append(_error(WRONG_TYPE, f"{at}.{key} must be a string, got "
                                                   f"{_got(turn[key])}"))
        if turn.get("system") is not None and not isinstance(turn["system"], str):
            problems.append(_error(WRONG_TYPE, f"{at}.system must be a string, got "
                                               f"{_got(turn['system'])}"))
        for key in ("output_with_loss", "need_eos_token"):
            if key in turn and turn[key] is not None and not isinstance(turn[key], bool):
                problems.append(_error(WRONG_TYPE, f"{at}.{key} must be true or false, got "
                                                   f"{_got(turn[key])}"))
        if turn.get("sep") is not None and not isinstance(turn["sep"], str):
            problems.append(_error(WRONG_TYPE, f"{at}.sep must be a string, got "
                                               f"{_got(turn['sep'])}"))
        problems += _unknown_keys(at, turn, _TURN_KEYS, ("input", "output"))
    return problems


_MESSAGE_KEYS = ("role", "content", "loss")
_ROLES = ("system", "user", "assistant")


def _check_dialogue(items: list, where: str, role_key: str, text_key: str,
                    roles: tuple[str, ...], known: tuple[str, ...]) -> list[Problem]:
    """Shared checks of OpenAI ``messages`` and ShareGPT ``conversations``.

    ``roles`` is ``(system..., asker, answerer)``: the last two take turns.
    """
    if not items:
        return [_error(EMPTY, f"'{where}' is an empty list")]
    asker, answerer = roles[-2], roles[-1]
    problems: list[Problem] = []
    sequence: list[tuple[int, str]] = []
    for i, msg in enumerate(items):
        at = f"{where}[{i}]"
        if not isinstance(msg, dict):
            problems.append(_not_an_object(at, role_key, text_key, msg))
            continue
        role = msg.get(role_key)
        if role_key not in msg:
            problems.append(missing_key_problem(at, role_key, msg, known))
        elif role not in roles:
            shown = repr(role) if isinstance(role, str) else _got(role)
            problems.append(_error(UNKNOWN_ROLE, f"{at}.{role_key} is {shown}; expected "
                                                 + ", ".join(repr(r) for r in roles)))
        else:
            sequence.append((i, role))
        if text_key not in msg:
            problems.append(missing_key_problem(at, text_key, msg, known))
        elif not isinstance(msg[text_key], str):
            problems.append(_error(WRONG_TYPE, f"{at}.{text_key} must be a string, got "
                                               f"{_got(msg[text_key])}"))
        if role_key == "role" and msg.get("loss") is not None:
            loss = msg["loss"]
            if not isinstance(loss, bool):
                problems.append(_error(WRONG_TYPE, f"{at}.loss must be true or false, got "
                                                   f"{_got(loss)}"))
            elif role != "assistant":
                problems.append(_warning(UNKNOWN_KEY, f"{at}.loss is ignored: only assistant "
                                                      "messages are trained"))
        problems += _unknown_keys(at, msg, known, (role_key, text_key))
    if any(p.severity == ERROR for p in problems):
        return problems

    turns = [(i, r) for i, r in sequence if r in (asker, answerer)]
    if not any(r == answerer for _, r in turns):
        return problems + [_error(EMPTY, f"no '{answerer}' message in '{where}': nothing to "
                                         "train on")]
    previous: tuple[int, str] | None = None
    for i, role in turns:
        if role == answerer and previous is None:
            problems.append(_error(ROLE_ORDER, f"{where}[{i}] is '{answerer}' before any "
                                               f"'{asker}' message (it would be skipped)"))
        elif role == answerer and previous[1] == answerer:
            problems.append(_error(ROLE_ORDER, f"{where}[{i}] is '{answerer}' right after "
                                               f"'{answerer}' {where}[{previous[0]}] with no "
                                               f"'{asker}' message between"))
        elif role == asker and previous is not None and previous[1] == asker:
            problems.append(_warning(ROLE_ORDER, f"{where}[{i}] is '{asker}' right after "
                                                 f"'{asker}' {where}[{previous[0]}]: the two "
                                                 "are joined with no separator"))
        previous = (i, role)
    if previous is not None and previous[1] == asker:
        problems.append(_warning(ROLE_ORDER, f"{where}[{previous[0]}] '{asker}' at the end has "
                                             "no answer and is dropped"))
    return problems


def _structure(record: Any, fmt: DataFormat) -> list[Problem]:
    """Problems of ``record`` as a record of ``fmt``, before any map fn runs."""
    if not isinstance(record, dict):
        return [_error(WRONG_TYPE, f"a record must be a JSON object, got {_got(record)}")]
    problems: list[Problem] = []
    for key, expected in fmt.fields.items():
        if key not in record:
            problems.append(missing_key_problem("", key, record, tuple(fmt.fields)))
        elif expected is not None and not isinstance(record[key], expected):
            problems.append(_error(WRONG_TYPE, f"'{key}' must be {_TYPE_NAMES[expected]}, got "
                                               f"{_got(record[key])}"))
    if problems:
        return problems
    if fmt.layout == CONVERSATION:
        problems += _check_turns(record["conversation"])
    elif fmt.layout == MESSAGES:
        problems += _check_dialogue(record["messages"], "messages", "role", "content", _ROLES,
                                    _MESSAGE_KEYS)
    elif fmt.layout == SHAREGPT:
        problems += _check_dialogue(record["conversations"], "conversations", "from", "value",
                                    fmt.speakers, ("from", "value"))
    return problems


def validate_record(record: Any, fmt: DataFormat) -> list[Problem]:
    """Check one raw record against the format its map fn expects.

    When required keys are missing but the record is a valid record of another common format,
    the single problem says which ``dataset_map_fn`` the data needs.
    """
    problems = _structure(record, fmt)
    missing = [k for k in fmt.fields if isinstance(record, dict) and k not in record]
    if missing:
        for other in guess_formats(record):
            if other.name != fmt.name and not any(p.severity == ERROR
                                                  for p in _structure(record, other)):
                return [_error(MAP_FN, f"the record has no '{missing[0]}' but is a valid "
                                       f"'{other.name}' record: set "
                                       f"dataset_map_fn={other.map_fn}")]
    return problems



def check_map_fn_output(result: Any, name: str) -> list[Problem]:
    """Problems of what map fn ``name`` returned: it must be ``{'conversation': [turn, ...]}``
    whose turns hold strings."""
    if not isinstance(result, dict) or not isinstance(result.get("conversation"), list):
        return [_error(MAP_FN, f"{name} returned {_got(result)}; expected "
                               "{'conversation': [...]}")]
    problems = []
    for i, turn in enumerate(result["conversation"]):
        if not isinstance(turn, dict):
            problems.append(_error(MAP_FN, f"{name} returned conversation[{i}] = {_got(turn)}; "
                                           "expected an object"))
            continue
        for key in ("system", "input", "output"):
            value = turn.get(key)
            if value is not None and not isinstance(value, str):
                problems.append(_error(MAP_FN, f"{name} returned conversation[{i}].{key} = "
                                               f"{_got(value)}; expected a string"))
    return problems


def check_conversation(result: Any, name: str, fmt: DataFormat) -> list[Problem]:
    """Problems of what map fn ``name`` returned for a record of ``fmt``: the shape
    (:func:`check_map_fn_output`), then an empty conversation, which drops the record: an
    error, or a warning when ``fmt.may_drop`` (the map fn drops such records on purpose)."""
    problems = check_map_fn_output(result, name)
    if not problems and not result["conversation"]:
        severity = WARNING if fmt.may_drop else ERROR
        problems.append(Problem(severity, EMPTY, f"{name} returned an empty conversation; the "
                                                 "record is dropped"))
    return problems


def check_encoded(labels: list[int], max_length: int | None,
                  input_ids_with_output: bool = True) -> list[Problem]:
    """Problems of a tokenized sample (``labels`` before any cut to ``max_length``).

    A sample with no trained token (every output empty or ``loss: false``, or every trained
    token beyond ``max_length``) is dropped with a warning, as v0 dropped it: the record is
    well-formed, the settings leave nothing to learn from it. One that ``max_length`` cuts is
    a warning too.
    """
    length = len(labels)
    limit = max_length if max_length is not None else length
    trained_all = sum(1 for label in labels if label != IGNORE_INDEX)
    trained = sum(1 for label in labels[:limit] if label != IGNORE_INDEX)
    if input_ids_with_output:
        if trained_all == 0:
            return [_warning(NO_TRAINABLE, "every output is empty or has loss=false; the "
                                           "sample is dropped")]
        if trained == 0:
            return [_warning(NO_TRAINABLE, f"the sample has {length} tokens and all "
                                           f"{trained_all} trained ones lie beyond "
                                           f"max_length={max_length}; it is dropped")]
    if length > limit:
        return [_warning(TRUNCATED, f"{length} tokens; max_length={limit} cuts the last "
                                    f"{length - limit} ({trained_all - trained} trained)")]
    return []


# --------------------------------------------------------------------------- images (LLaVA)


def record_images(record: Any) -> list:
    """The image files of a LLaVA record, in the order of their ``<image>`` placeholders
    (``image``: one path, a list of paths, or absent)."""
    value = record.get("image") if isinstance(record, dict) else None
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def check_images(record: Any, image_folder: str, open_images: bool = True) -> list[Problem]:
    """Problems of a LLaVA record's image files under ``image_folder``: a path that is not a
    string, a file that does not exist, and (``open_images``) one PIL cannot decode.

    Training checks existence only when the dataset is built (fast on a million records);
    ``xtuner check-custom-dataset`` also decodes every image, as a sample read in training
    does.
    """
    import os

    value = record.get("image") if isinstance(record, dict) else None
    if value is not None and not isinstance(value, (str, list)):
        return [_error(WRONG_TYPE, f"'image' must be a path or a list of paths, got "
                                   f"{_got(value)}")]
    several = isinstance(value, list)
    problems: list[Problem] = []
    for i, path in enumerate(record_images(record)):
        at = f"image[{i}]" if several else "image"
        if not isinstance(path, str):
            problems.append(_error(WRONG_TYPE, f"{at} must be a path, got {_got(path)}"))
            continue
        full = os.path.join(image_folder, path)
        if not os.path.isfile(full):
            problems.append(_error(MISSING_IMAGE, f"{at} '{path}' is not in the image_folder "
                                                  f"{image_folder}"))
        elif open_images:
            from PIL import Image

            try:
                with Image.open(full) as image:
                    image.load()
            except (OSError, ValueError, SyntaxError) as exc:  # what PIL raises on bad files
                problems.append(_error(UNREADABLE_IMAGE, f"{at} '{path}' cannot be read as an "
                                                         f"image ({exc})"))
    return problems


def image_placeholders(conversation: Any) -> int:
    """``<image>`` placeholders of a templated conversation: each one of an ``input`` becomes
    one ``IMAGE_TOKEN_INDEX`` when tokenized (``with_image_token=True``)."""
    from xtuner.utils.constants import DEFAULT_IMAGE_TOKEN

    if not isinstance(conversation, list):
        return 0
    return sum(turn.get("input").count(DEFAULT_IMAGE_TOKEN) for turn in conversation
               if isinstance(turn, Mapping) and isinstance(turn.get("input"), str))


def check_image_count(placeholders: int, images: int) -> list[Problem]:
    """More ``<image>`` placeholders than images stops training when the sample is read (an
    error); fewer leaves the extra images unused (a warning, as in v0)."""
    if placeholders > images:
        return [_error(IMAGE_COUNT, f"{placeholders} <image> placeholder"
                                    f"{'s' * (placeholders != 1)} after the map fn but {images} "
                                    f"image{'s' * (images != 1)}; each <image> needs its image")]
    if placeholders < images:
        unused = images - placeholders
        return [_warning(IMAGE_COUNT, f"{images} image{'s' * (images != 1)} but "
                                      f"{placeholders} <image> placeholder"
                                      f"{'s' * (placeholders != 1)} after the map fn; the last "
                                      f"{unused} {'are' if unused != 1 else 'is'} not used")]
    return []


def check_image_budget(text_tokens: int, placeholders: int, image_tokens: int,
                       max_length: int, packed: bool) -> list[Problem]:
    """A sample longer than a LLaVA row once each placeholder is ``image_tokens`` features.

    ``text_tokens`` counts each placeholder as one token (after the cut to ``max_length``);
    the row holds ``max_length + image_tokens`` (the text budget plus one image, as v0 sized
    ``max_length``). Packing cannot place such a sample (an error); unpacked, it is a warning.
    """
    length = text_tokens + placeholders * (image_tokens - 1)
    budget = max_length + image_tokens
    if length <= budget:
        return []
    detail = (f"{length} tokens with {placeholders} image{'s' * (placeholders != 1)} of "
              f"{image_tokens} tokens ({text_tokens - placeholders} text tokens) exceed the row "
              f"budget max_length + image_tokens = {budget}")
    if packed:
        return [_error(TOO_LONG, f"{detail}; packing cannot place the sample: shorten it or "
                                 "raise max_length")]
    return [_warning(TOO_LONG, detail)]


# --------------------------------------------------------------------------- template tokens

# A special-token-looking marker of a template: <|im_end|>, <｜end▁of▁sentence｜>, <eoh>,
# <reserved_102>, </s>; not the plain-text <<SYS>> of llama2_chat.
_MARKER = re.compile(r"(?<!<)<(?:[|｜][^<>\s]+?[|｜]|/?[^<>\s{}|｜]+)>(?!>)")
_TEMPLATE_TEXT_FIELDS = ("SYSTEM", "INSTRUCTION", "SUFFIX", "SEP")


def template_of(template_fn: Callable | None) -> Mapping | None:
    """The prompt template bound into a built ``template_map_fn`` (a ``partial``), if any."""
    template = getattr(template_fn, "keywords", {}).get("template")
    return template if isinstance(template, Mapping) else None


def _markers(template: Mapping, keys: tuple[str, ...]) -> dict[str, None]:
    found: dict[str, None] = {}
    for key in keys:
        value = template.get(key)
        for text in [value] if isinstance(value, str) else (value or ()):
            if isinstance(text, str):
                found.update(dict.fromkeys(_MARKER.findall(text)))
    return found


def missing_template_tokens(template: Mapping | None, tokenizer) -> dict[str, int]:
    """Special-token markers of ``template`` that ``tokenizer`` has no token for, each with
    the tokens it is split into instead, less the one it should have been.

    Only a template that ends a reply with a marker (``SUFFIX`` or ``STOP_WORDS``, e.g.
    ``<|eot_id|>``) is checked, and only when the tokenizer lacks that end marker: such a
    template is built around its model's special tokens, while markers of templates like
    ``default`` or ``zephyr`` (``<|User|>``) are plain text by design, and a tokenizer that has
    the end marker is the template's own (``internlm_chat``'s ``<|User|>`` is text there too).
    """
    if template is None or tokenizer is None or not hasattr(tokenizer, "encode"):
        return {}
    get_vocab = getattr(tokenizer, "get_vocab", None)
    vocab = get_vocab() if callable(get_vocab) else {}

    def pieces(marker: str) -> int:
        if marker in vocab:
            return 1
        return len(tokenizer.encode(marker, add_special_tokens=False))

    ends = _markers(template, ("SUFFIX", "STOP_WORDS"))
    if not ends or all(pieces(marker) == 1 for marker in ends):
        return {}
    missing = {}
    for marker in _markers(template, _TEMPLATE_TEXT_FIELDS + ("STOP_WORDS",)):
        n = pieces(marker)
        if n > 1:
            missing[marker] = n - 1
    return missing


def template_tokens_added(conversation: Any, missing: Mapping[str, int]) -> int:
    """Tokens a templated ``conversation`` gains because of ``missing`` markers."""
    if not missing or not isinstance(conversation, list):
        return 0
    added = 0
    for turn in conversation:
        if not isinstance(turn, Mapping):
            continue
        for key in ("system", "input", "output", "sep"):
            text = turn.get(key)
            if isinstance(text, str) and "<" in text:
                added += sum(text.count(marker) * cost for marker, cost in missing.items())
    return added


def template_tokens_problem(template_name: str | None, missing: Mapping[str, int],
                            added: int, samples: int) -> Problem | None:
    """The warning for a template whose special tokens the tokenizer lacks, with the
    measured cost: tokens added per sample on average over ``samples`` samples."""
    if not missing:
        return None
    name = f"'{template_name}'" if template_name else "the prompt template"
    per_sample = added / samples if samples else 0.0
    return _warning(TEMPLATE_TOKENS, (
        f"template {name} uses {len(missing)} special token{'s' * (len(missing) != 1)} the "
        f"tokenizer does not have ({', '.join(missing)}); each is split into ordinary tokens, "
        f"adding {per_sample:.1f} tokens per sample (measured over {samples} "
        f"sample{'s' * (samples != 1)}); use the template made for this tokenizer's model, "
        "or add the tokens to the tokenizer"))
