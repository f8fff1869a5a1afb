"""Per-record checks: does one raw record fit the format its ``dataset_map_fn`` expects?

:func:`validate_record` looks at a record before any map fn runs (missing or misspelled keys,
wrong JSON types, empty conversations, roles out of order); :func:`check_map_fn_output` looks
at what a map fn returned. Both return :class:`~.problems.Problem` lists and never raise.
"""
from __future__ import annotations

import difflib
from typing import Any

from .formats import CONVERSATION, MESSAGES, SHAREGPT, DataFormat, guess_formats
from .problems import (
    EMPTY,
    ERROR,
    MAP_FN,
    MISSING_KEY,
    ROLE_ORDER,
    UNKNOWN_KEY,
    UNKNOWN_ROLE,
    WRONG_TYPE,
    Problem,
    describe_value,
)

__all__ = ["validate_record", "check_map_fn_output", "missing_key_problem"]

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

