"""Apply a chat prompt template to an XTuner ``conversation``.

A dataset map function produces ``{"conversation": [{"system"?, "input", "output", ...}, ...]}``;
:func:`template_map_fn` wraps each turn's ``input`` with the template's ``SYSTEM`` and
``INSTRUCTION``, appends ``SUFFIX`` to each ``output`` and records ``need_eos_token`` and ``sep``
for the tokenizer step. See :mod:`xtuner.utils.templates` for the template fields.
"""
from collections.abc import Mapping
from functools import partial
from typing import Any

from mmengine.utils.misc import get_object_from_string

from xtuner.utils.errors import ConfigError, DataError, did_you_mean

__all__ = ["template_map_fn", "template_map_fn_factory", "resolve_template"]


def template_map_fn(example: Mapping[str, Any], template: Mapping[str, Any]) -> dict:
    """Render every turn of ``example["conversation"]`` with ``template``.

    Per turn ``i`` (0-based), as XTuner v0 does:

    * ``input`` becomes ``INSTRUCTION.format(input=input, round=i + 1)``; a missing or ``None``
      input is formatted as ``""`` (so the instruction wrapper is still emitted).
    * A non-empty ``system`` is rendered with ``SYSTEM`` and put before the input. The ``system``
      key itself is kept in the turn, unchanged.
    * If the template has a non-empty ``SUFFIX`` it is appended to ``output``.
    * ``need_eos_token`` is set to ``not SUFFIX_AS_EOS`` and ``sep`` to ``SEP`` (default ``""``),
      overriding any value the turn had.

    Other keys (``output_with_loss``, ...) pass through. The input example is not modified.

    Args:
        example: A row with a ``conversation`` list (a missing one counts as empty).
        template: A ``PROMPT_TEMPLATE`` entry (``ConfigDict`` or plain dict).

    Returns:
        ``{"conversation": [...]}`` with the rendered turns.

    Raises:
        DataError: A turn has a system prompt but the template has no ``SYSTEM`` field
            (e.g. ``minicpm``). v0 crashed here with a bare ``AttributeError``.
    """
    instruction = template["INSTRUCTION"]
    system_fmt = template.get("SYSTEM")
    suffix = template.get("SUFFIX")
    need_eos_token = not template.get("SUFFIX_AS_EOS", False)
    sep = template.get("SEP", "")

    conversation = []
    for i, original in enumerate(example.get("conversation", [])):
        turn = dict(original)
        text = turn.get("input")
        if text is None:
            text = ""
        # str.format ignores unused keyword arguments, so `round` is harmless for templates
        # whose INSTRUCTION has no {round} placeholder.
        rendered = instruction.format(input=text, round=i + 1)

        system = turn.get("system")
        if system is not None and system != "":
            if system_fmt is None:
                raise DataError(
                    f"conversation turn {i} has a system prompt but the prompt template "
                    f"(INSTRUCTION={instruction!r}) has no SYSTEM field; drop the 'system' key "
                    "in the dataset map fn or pick a template that has SYSTEM"
                )
            rendered = system_fmt.format(system=system) + rendered
        turn["input"] = rendered

        if suffix:
            turn["output"] = turn.get("output", "") + suffix
        turn["need_eos_token"] = need_eos_token
        turn["sep"] = sep
        conversation.append(turn)
    return {"conversation": conversation}


def resolve_template(template: Any) -> Mapping[str, Any]:
    """Turn a dotted path (or a bare ``PROMPT_TEMPLATE`` name) into the template mapping.

    Every place that takes a template (the data pipeline, ``EvaluateChatHook``) accepts the
    same three forms through this function.

    Raises:
        ConfigError: an unknown name or path, or something that is not a template.
    """
    if isinstance(template, str):
        name = template
        if "." not in name:
            from xtuner.utils.templates import PROMPT_TEMPLATE

            if name not in PROMPT_TEMPLATE:
                raise ConfigError(
                    f"unknown prompt template {name!r}{did_you_mean(name, PROMPT_TEMPLATE)}; "
                    "expected one of "
                    f"{sorted(PROMPT_TEMPLATE)} or a dotted path such as "
                    "'xtuner.utils.PROMPT_TEMPLATE.qwen_chat'"
                )
            return PROMPT_TEMPLATE[name]
        # A config dumped by mmengine stores the template as this dotted string; v0 resolved it
        # the same way when resuming.
        template = get_object_from_string(name)
        if template is None:
            raise ConfigError(
                f"cannot resolve prompt template {name!r}: no importable object at that dotted "
                "path; use e.g. 'xtuner.utils.PROMPT_TEMPLATE.qwen_chat'"
            )
    if not isinstance(template, Mapping) or "INSTRUCTION" not in template:
        raise ConfigError(
            f"prompt template must be a mapping with at least an INSTRUCTION field (see "
            f"xtuner.utils.PROMPT_TEMPLATE), got {template!r}"
        )
    return template


def template_map_fn_factory(template: Mapping[str, Any] | str) -> partial:
    """Bind ``template`` to :func:`template_map_fn` for ``datasets.Dataset.map``.

    Args:
        template: A ``PROMPT_TEMPLATE`` entry, its dotted path as written into a dumped config
            (``'xtuner.utils.PROMPT_TEMPLATE.qwen_chat'``) or a bare template name
            (``'qwen_chat'``).

    Returns:
        ``functools.partial(template_map_fn, template=<resolved template>)``.

    Raises:
        ConfigError: The string cannot be resolved, or the result is not a template.
    """
    return partial(template_map_fn, template=resolve_template(template))
