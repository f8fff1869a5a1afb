"""The prompt of each chat turn: XTuner templates (v0's layout) or the tokenizer's chat template.

Both conversation kinds answer the same four questions for :class:`~.generation.ChatSession`:
``encode(text)`` (token ids of the whole conversation so far plus the new user turn, ready for
``generate``), ``commit(...)`` (remember the finished turn), ``drop_oldest()`` (forget the oldest
turn when the context is full) and ``reset()``.
"""
from __future__ import annotations

from collections.abc import Mapping

from xtuner.utils.errors import UsageError
from xtuner.utils.templates import PROMPT_TEMPLATE, SYSTEM_TEMPLATE

__all__ = [
    "ChatTemplateConversation",
    "TemplateConversation",
    "resolve_prompt_template",
    "resolve_system_template",
    "system_text",
]


def _lookup(kind: str, name: str, table: Mapping) -> dict:
    from xtuner.utils.errors import did_you_mean

    if name not in table:
        hint = did_you_mean(name, table) or f"; choose one of: {', '.join(table)}"
        raise UsageError(f"unknown {kind} '{name}'{hint}")
    return table[name]


def resolve_prompt_template(name: str) -> dict:
    """The ``PROMPT_TEMPLATE`` entry called ``name``; an unknown name names close matches."""
    return _lookup("prompt template", name, PROMPT_TEMPLATE)


def resolve_system_template(name: str) -> str:
    """The ``SYSTEM_TEMPLATE`` entry called ``name``; an unknown name names close matches."""
    return _lookup("system template", name, SYSTEM_TEMPLATE)


def system_text(system: str | None = None, system_template: str | None = None,
                bot_name: str = "BOT") -> str | None:
    """The system prompt: ``--system`` as given, or a ``SYSTEM_TEMPLATE`` entry formatted with
    ``round=1`` and ``bot_name`` (as v0 did; ``moss_sft`` names the bot). ``None`` when neither.
    """
    if system_template is not None:
        return resolve_system_template(system_template).format(round=1, bot_name=bot_name)
    return system


class TemplateConversation:
    """A conversation rendered with an XTuner ``PROMPT_TEMPLATE`` entry, exactly as v0 did.

    The prompt of round ``r`` (1-based) is::

        SYSTEM.format(system, round=1, bot_name)          # first round only, if a system is set
        + for each earlier round: INSTRUCTION.format(input, round, bot_name) + answer + SEP
        + INSTRUCTION.format(input=text, round=r, bot_name)

    ``answer`` is the generated text as decoded with its special tokens and up to and including
    the stop word that ended it: the ``SUFFIX`` (``<|im_end|>``) or the EOS token a model was
    trained to emit stays in the history, so later rounds look like the training data
    (``output + SUFFIX + SEP``). The whole text is encoded with the tokenizer's special tokens
    each round, so a BOS token appears once, at the start of the conversation; this is what v0
    got by encoding turn 0 with special tokens and re-encoding the decoded sequence (which
    starts with the BOS text) without them.

    Args:
        tokenizer: the model's tokenizer.
        template: a ``PROMPT_TEMPLATE`` entry, or ``None`` to send the user's text as is.
        system: the system prompt (``None``: none). Templates without ``SYSTEM`` ignore it.
        bot_name: fills ``{bot_name}`` in templates that use it.
    """

    def __init__(self, tokenizer, template: Mapping | None, system: str | None = None,
                 bot_name: str = "BOT"):
        self.tokenizer = tokenizer
        self.template = dict(template or {})
        self.instruction = self.template.get("INSTRUCTION", "{input}")
        self.sep = self.template.get("SEP", "")
        self.stop_words = list(self.template.get("STOP_WORDS", []))
        self.bot_name = bot_name
        self.prefix = ""
        if system is not None and "SYSTEM" in self.template:
            self.prefix = self.template["SYSTEM"].format(system=system, round=1,
                                                         bot_name=bot_name)
        self.turns: list[str] = []
        self.round = 1  # round number of the next user turn; keeps counting when turns drop

    def _instruction(self, text: str) -> str:
        return self.instruction.format(input=text, round=self.round, bot_name=self.bot_name)

    def prompt_text(self, text: str) -> str:
        """The whole conversation so far plus ``text`` as the next user turn, as text."""
        return self.prefix + "".join(self.turns) + self._instruction(text)

    def encode(self, text: str) -> list[int]:
        """Token ids of :meth:`prompt_text` (special tokens such as BOS added once, in front)."""
        return self.tokenizer.encode(self.prompt_text(text), add_special_tokens=True)

    def commit(self, text: str, raw_answer: str, answer: str) -> None:
        """Remember a finished round: ``raw_answer`` keeps its stop word / special tokens."""
        del answer  # the raw text is what the model was trained to see
        self.turns.append(self._instruction(text) + raw_answer + self.sep)
        self.round += 1

    def drop_oldest(self) -> bool:
        """Forget the oldest round (the system prompt stays); ``False`` if none is left."""
        if not self.turns:
            return False
        self.turns.pop(0)
        return True

    def save(self) -> tuple[list[str], int]:
        """A copy of the history, for :meth:`load`."""
        return list(self.turns), self.round

    def load(self, saved: tuple[list[str], int]) -> None:
        self.turns, self.round = list(saved[0]), saved[1]

    def reset(self) -> None:
        self.turns.clear()
        self.round = 1


class ChatTemplateConversation:
    """A conversation rendered with the tokenizer's own chat template (a messages list).

    Each round renders ``messages + [user]`` with ``apply_chat_template(tokenize=False,
    add_generation_prompt=True)`` and encodes that text without adding special tokens, which is
    what ``apply_chat_template(tokenize=True)`` does (in transformers 5 that call returns a
    ``BatchEncoding``, not a list; rendering to text first avoids depending on it). The
    assistant's answers are stored without stop words: the template adds its own end-of-turn
    markers.

    Args:
        tokenizer: a tokenizer with a ``chat_template``.
        system: the system prompt (``None``: no system message).
    """

    stop_words: list[str] = []

    def __init__(self, tokenizer, system: str | None = None):
        self.tokenizer = tokenizer
        self.system = system
        self.messages: list[dict] = []
        self.reset()

    def prompt_text(self, text: str) -> str:
        messages = self.messages + [{"role": "user", "content": text}]
        return self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                  add_generation_prompt=True)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(self.prompt_text(text), add_special_tokens=False)

    def commit(self, text: str, raw_answer: str, answer: str) -> None:
        del raw_answer
        self.messages += [{"role": "user", "content": text},
                          {"role": "assistant", "content": answer}]

    def drop_oldest(self) -> bool:
        """Forget the oldest user turn and its answer (a system message stays)."""
        start = 1 if self.system is not None else 0
        if len(self.messages) <= start:
            return False
        end = start + 1
        while end < len(self.messages) and self.messages[end]["role"] != "user":
            end += 1
        del self.messages[start:end]
        return True

    def save(self) -> list[dict]:
        """A copy of the history, for :meth:`load`."""
        return list(self.messages)

    def load(self, saved: list[dict]) -> None:
        self.messages = list(saved)

    def reset(self) -> None:
        self.messages = []
        if self.system is not None:
            self.messages.append({"role": "system", "content": self.system})
