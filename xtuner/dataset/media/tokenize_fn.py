"""``MediaTokenizeFunction``: chat records that point at media files -> token ids, labels and
media references (the role of the seed's ``CachableTokenizeFunction``).

A record is ``{"messages": [...]}`` in the OpenAI style; a message's ``content`` is a string
or a list of parts: ``{"type": "text", "text": "...<PLACEHOLDER>..."}`` and media parts of the
subclass's :attr:`~MediaTokenizeFunction.media_type`, e.g. ``{"type": "time_series_url",
"time_series_url": {"url": "data/x.wav", "sampling_rate": 100}}``. The i-th placeholder of the
record stands for its i-th media part. Each placeholder becomes ``start + N x context + end``
(real special tokens of the tokenizer) where ``N`` is the number of feature vectors the
encoder will output for that media, so the model only has to write its features over the
context tokens. The text is laid out by the tokenizer's own chat template and only the
assistant turns are trained.

A new modality subclasses :class:`MediaTokenizeFunction` and implements
:meth:`~MediaTokenizeFunction.media_reference` (check and describe one media part),
:meth:`~MediaTokenizeFunction.num_features` and :meth:`~MediaTokenizeFunction.load`.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from xtuner.dataset.chat_turns import assistant_segments, record_messages
from xtuner.utils.constants import IGNORE_INDEX
from xtuner.utils.errors import ConfigError, DataError

__all__ = ["MediaTokenizeFunction", "add_special_tokens"]


def add_special_tokens(tokenizer, tokens):
    """Return ``tokenizer`` (an object or its config dict, built) with ``tokens`` added as
    special tokens (those it already has are kept). Tokens are added in the given order, so
    two tokenizers built from the same config get the same ids: use it for the tokenizer of
    the model and of the data alike."""
    from transformers import AddedToken

    from xtuner.model.utils import build_from_cfg

    tokenizer = build_from_cfg(tokenizer)
    vocab = tokenizer.get_vocab()
    missing = [t for t in tokens if t not in vocab]
    if missing:
        tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in missing],
                             special_tokens=True)
    return tokenizer


class MediaTokenizeFunction(ABC):
    """Tokenize chat records with media parts (see the module docstring).

    Args:
        tokenizer: the tokenizer (or its config dict); the special tokens are added to it.
        media_root: the folder relative media paths are resolved against.
        max_length: the most tokens a sample keeps. Text after the last media span is cut;
            a sample whose media spans do not fit is a :class:`DataError`.
        chat_template: a Jinja chat template to use instead of the tokenizer's own.
    """

    #: The ``type`` of a media part in a message's content list.
    media_type: str = ""
    #: The text that marks where a media part goes.
    placeholder: str = ""
    #: Special tokens around and inside a media span.
    start_token: str = ""
    context_token: str = ""
    end_token: str = ""

    def __init__(self, tokenizer, media_root: str = ".", max_length: int | None = None,
                 chat_template: str | None = None):
        if not (self.media_type and self.placeholder and self.context_token):
            raise ConfigError(f"{type(self).__name__} must set media_type, placeholder and "
                              "context_token")
        self.tokenizer = add_special_tokens(tokenizer, self.special_tokens)
        self.media_root = str(media_root)
        self.max_length = max_length
        self.chat_template = chat_template
        if chat_template is None and not getattr(self.tokenizer, "chat_template", None):
            raise ConfigError(f"{type(self).__name__}: the tokenizer has no chat template; "
                              "pass chat_template='...' (a Jinja template)")
        ids = self.tokenizer.convert_tokens_to_ids(self.special_tokens)
        self.start_token_id, self.context_token_id, self.end_token_id = (
            ids if self.start_token else [None, ids[0], None])

    @property
    def special_tokens(self) -> list[str]:
        """The tokens this modality adds to the tokenizer (start, context, end)."""
        return [t for t in (self.start_token, self.context_token, self.end_token) if t]

    # -- what a modality implements -----------------------------------------------------------
    @abstractmethod
    def media_reference(self, part: dict) -> dict:
        """Check one media part (the dict under its ``media_type`` key) and describe it as a
        small JSON-able dict (resolved path, length, ...); raise :class:`DataError` when the
        media cannot be used."""

    @abstractmethod
    def num_features(self, reference: dict) -> int:
        """How many feature vectors the encoder outputs for this media."""

    @abstractmethod
    def load(self, reference: dict) -> torch.Tensor:
        """The encoder's input for this media (called when a sample is read)."""

    # -- the shared work ----------------------------------------------------------------------
    def span(self, num_features: int) -> str:
        """The text a placeholder becomes."""
        return self.start_token + self.context_token * num_features + self.end_token

    def _messages(self, record: dict) -> tuple[list[dict], list[dict]]:
        messages = record_messages(record)
        plain, references = [], []
        for message in messages:
            content = message.get("content")
            if isinstance(content, list):
                texts = []
                for part in content:
                    kind = part.get("type") if isinstance(part, dict) else None
                    if kind == "text":
                        texts.append(str(part.get("text", "")))
                    elif kind == self.media_type:
                        if not isinstance(part.get(kind), dict):
                            raise DataError(f"a {kind} part needs a dict under {kind!r}, got "
                                            f"{str(part)[:80]}")
                        references.append(self.media_reference(part[kind]))
                    else:
                        raise DataError(f"unknown content part type {kind!r}; expected 'text' "
                                        f"or {self.media_type!r}")
                content = "".join(texts)
            elif not isinstance(content, str):
                raise DataError(f"a message's content must be a string or a list of parts, "
                                f"got {type(content).__name__}")
            plain.append({"role": message["role"], "content": content})
        return plain, references

    def _expand(self, messages: list[dict], counts: list[int]) -> list[dict]:
        found = sum(m["content"].count(self.placeholder) for m in messages)
        if found != len(counts):
            raise DataError(f"{len(counts)} {self.media_type} part(s) but {found} "
                            f"{self.placeholder} placeholder(s) in the text: put one "
                            f"{self.placeholder} where each goes")
        spans = iter(self.span(n) for n in counts)
        out = []
        for message in messages:
            pieces = message["content"].split(self.placeholder)
            text = pieces[0] + "".join(next(spans) + piece for piece in pieces[1:])
            out.append(dict(message, content=text))
        return out

    def _render(self, messages: list[dict], add_generation_prompt: bool = False) -> str:
        return self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=add_generation_prompt,
            chat_template=self.chat_template)

    def _segments(self, messages: list[dict]) -> list[tuple[str, bool]]:
        """The rendered chat cut into ``(text, trained)`` pieces (assistant turns trained)."""
        return assistant_segments(self._render, messages)

    def prompt(self, record: dict) -> dict:
        """Tokenize a conversation to generate its next assistant turn (chat, evaluation).

        Returns:
            ``input_ids`` (the template's generation prompt at the end) and ``media``.
        """
        messages, references = self._messages(record)
        expanded = self._expand(messages, [self.num_features(r) for r in references])
        text = self._render(expanded, add_generation_prompt=True)
        return {"input_ids": self.tokenizer.encode(text, add_special_tokens=False),
                "media": references}

    def __call__(self, record: dict) -> dict:
        """Tokenize one record.

        Returns:
            ``input_ids``, ``labels`` (``IGNORE_INDEX`` outside the assistant turns and on
            every media token), ``media`` (the references, in placeholder order) and
            ``num_tokens``.

        Raises:
            DataError: a malformed record, a missing or unreadable media file, a placeholder
                count that does not match the media parts, media that do not fit in
                ``max_length``.
        """
        messages, references = self._messages(record)
        counts = [self.num_features(r) for r in references]
        for count, reference in zip(counts, references):
            if count < 1:
                raise DataError(f"{reference.get('path', reference)}: too short for the "
                                "encoder (it would output no feature)")
        input_ids: list[int] = []
        labels: list[int] = []
        for text, trained in self._segments(self._expand(messages, counts)):
            ids = self.tokenizer.encode(text, add_special_tokens=False)
            input_ids += ids
            labels += ids if trained else [IGNORE_INDEX] * len(ids)
        found = [input_ids.count(self.context_token_id), input_ids.count(self.start_token_id),
                 input_ids.count(self.end_token_id)]
        wanted = [sum(counts), len(counts), len(counts)]
        if found[:1 + 2 * bool(self.start_token)] != wanted[:1 + 2 * bool(self.start_token)]:
            raise DataError(f"the text holds {found[0]} {self.context_token} tokens where its "
                            f"media need {sum(counts)}, or stray span tokens: do not write "
                            f"the special tokens {self.special_tokens} in the text yourself")
        media_ids = {self.context_token_id, self.start_token_id, self.end_token_id} - {None}
        labels = [IGNORE_INDEX if i in media_ids else label
                  for i, label in zip(input_ids, labels)]
        if self.max_length is not None and len(input_ids) > self.max_length:
            last = max((k for k, i in enumerate(input_ids) if i in media_ids), default=-1)
            if last >= self.max_length:
                raise DataError(f"the media spans end at token {last + 1} but max_length is "
                                f"{self.max_length}: raise max_length or use shorter media")
            input_ids, labels = input_ids[:self.max_length], labels[:self.max_length]
        return {"input_ids": input_ids, "labels": labels, "media": references,
                "num_tokens": len(input_ids)}
