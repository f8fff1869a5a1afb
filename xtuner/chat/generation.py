"""One chat session: prompt fitting, generation, stop words and streamed printing."""
from __future__ import annotations

import copy
import sys
from collections.abc import Callable, Iterable
from typing import TextIO

import torch
from transformers.generation.streamers import BaseStreamer

from xtuner.utils.errors import UsageError

__all__ = [
    "ChatSession",
    "PromptTooLongError",
    "StopWordStreamer",
    "context_length",
    "cut_at_stop_words",
]

# Config fields that hold a model's context length, in the order transformers models use them.
_CONTEXT_FIELDS = ("max_position_embeddings", "max_sequence_length", "seq_length", "n_positions")


class PromptTooLongError(UsageError):
    """A single prompt (with no history left) does not fit the model's context."""


def cut_at_stop_words(text: str, stop_words: Iterable[str],
                      keep_stop_word: bool = False) -> tuple[str, bool]:
    """Cut ``text`` at the first occurrence of any stop word.

    Returns ``(text, found)``: the text before the earliest stop word (or through it with
    ``keep_stop_word``), and whether one was found. Anything after the stop word is dropped,
    including the tail of a token that overhangs it (``generate``'s ``stop_strings`` stops on
    the token that completes a stop word, and that token may carry more text).
    """
    best: tuple[int, int] | None = None
    for word in stop_words:
        if not word:
            continue
        at = text.find(word)
        if at >= 0 and (best is None or at < best[0]):
            best = (at, len(word))
    if best is None:
        return text, False
    end = best[0] + (best[1] if keep_stop_word else 0)
    return text[:end], True


def _held_back(text: str, stop_words: Iterable[str]) -> int:
    """Length of the longest tail of ``text`` that could still grow into a stop word."""
    held = 0
    for word in stop_words:
        for n in range(min(len(word) - 1, len(text)), held, -1):
            if text.endswith(word[:n]):
                held = n
                break
    return held


def context_length(model, tokenizer=None) -> int | None:
    """The model's context length from its config (and the tokenizer's limit, if sensible)."""
    config = model.config
    if hasattr(config, "get_text_config"):
        config = config.get_text_config()
    limits = [getattr(config, name, None) for name in _CONTEXT_FIELDS]
    # Tokenizers without a limit report a huge sentinel (int(1e30)).
    limits.append(getattr(tokenizer, "model_max_length", None))
    limits = [n for n in limits if isinstance(n, int) and 0 < n < 10_000_000]
    return min(limits) if limits else None


class StopWordStreamer(BaseStreamer):
    """Print an answer while ``generate`` produces it, as :meth:`ChatSession.ask` returns it.

    Each step decodes all answer tokens so far (special tokens skipped), cuts at the first stop
    word and prints what is new, holding back a tail that might still become a stop word or is
    an incomplete UTF-8 character. So the printed text equals the returned answer.
    """

    def __init__(self, tokenizer, stop_words: Iterable[str], out: TextIO):
        self.tokenizer = tokenizer
        self.stop_words = list(stop_words)
        self.out = out
        self.ids: list[int] = []
        self.printed = 0
        self._prompt_seen = False
        self._stopped = False

    def put(self, value) -> None:
        if not self._prompt_seen:  # generate() first hands over the prompt
            self._prompt_seen = True
            return
        self.ids.extend(value.reshape(-1).tolist())
        self._emit(final=False)

    def end(self) -> None:
        self._emit(final=True)

    def _emit(self, final: bool) -> None:
        if self._stopped:
            return
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        text, self._stopped = cut_at_stop_words(text, self.stop_words)
        end = len(text)
        if not (final or self._stopped):
            end -= _held_back(text, self.stop_words)
            while end > self.printed and text[end - 1] == "\ufffd":
                end -= 1
        if end > self.printed:
            self.out.write(text[self.printed:end])
            self.out.flush()
            self.printed = end


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class ChatSession:
    """A model, its tokenizer, a conversation and the generation settings of ``xtuner chat``.

    Args:
        model: a causal LM (or a ``PeftModel`` around one) in eval mode.
        tokenizer: its tokenizer.
        conversation: a :class:`~.conversation.TemplateConversation` or
            :class:`~.conversation.ChatTemplateConversation`.
        max_new_tokens: answer length limit (also capped by the room left in the context).
        temperature: sampling temperature; ``0`` means greedy decoding (``do_sample`` iff > 0).
        top_k: top-k filtering when sampling.
        top_p: nucleus filtering when sampling.
        repetition_penalty: 1.0 means none.
        stop_words: extra stop strings; the template's ``STOP_WORDS`` are added.
        context: the model's context length; ``None`` reads it from the model config.
        log: where notices go (default: standard error).
    """

    def __init__(self, model, tokenizer, conversation, *, max_new_tokens: int = 2048,
                 temperature: float = 0.1, top_k: int = 40, top_p: float = 0.75,
                 repetition_penalty: float = 1.0, stop_words: Iterable[str] = (),
                 context: int | None = None, log: Callable[[str], None] = _log):
        self.model = model
        self.tokenizer = tokenizer
        self.conversation = conversation
        self.max_new_tokens = max_new_tokens
        self.stop_words = list(dict.fromkeys([*stop_words, *conversation.stop_words]))
        self.context = context if context is not None else context_length(model, tokenizer)
        self.log = log
        self.generation_config = self._generation_config(temperature, top_k, top_p,
                                                         repetition_penalty)

    def _generation_config(self, temperature, top_k, top_p, repetition_penalty):
        from transformers import GenerationConfig

        # Stop at every EOS the checkpoint declares (chat models list their end-of-turn token
        # there) as well as the tokenizer's: v0 used only the latter, and answers of models whose
        # turn ends with another token ran on to max_new_tokens (v0 issue #343).
        eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        eos = list(eos) if isinstance(eos, (list, tuple)) else [eos]
        eos = [i for i in dict.fromkeys([*eos, self.tokenizer.eos_token_id]) if i is not None]
        pad = self.tokenizer.pad_token_id
        kwargs = dict(
            do_sample=temperature > 0,
            repetition_penalty=repetition_penalty,
            eos_token_id=eos or None,
            pad_token_id=pad if pad is not None else (eos[0] if eos else None),
            stop_strings=self.stop_words or None,
        )
        if temperature > 0:
            kwargs.update(temperature=temperature, top_k=top_k, top_p=top_p)
        return GenerationConfig(**kwargs)

    def reset(self) -> None:
        """Forget the history (``RESET``)."""
        self.conversation.reset()

    def _fit(self, text: str) -> list[int]:
        """Prompt ids for ``text``, dropping the oldest rounds until an answer has room.

        An answer needs room for ``min(max_new_tokens, context // 4)`` tokens; generation is
        then capped at what is left of the context. A prompt that does not fit on its own is
        refused and the history is kept.
        """
        ids = self.conversation.encode(text)
        if self.context is None:
            return ids
        room = min(self.max_new_tokens, max(self.context // 4, 1))
        if len(ids) + room <= self.context:
            return ids
        saved = self.conversation.save()
        dropped = 0
        while len(ids) + room > self.context and self.conversation.drop_oldest():
            dropped += 1
            ids = self.conversation.encode(text)
        if len(ids) + room > self.context:
            self.conversation.load(saved)
            raise PromptTooLongError(
                f"the prompt is {len(ids)} tokens but the model's context of {self.context} "
                f"tokens leaves room for at most {self.context - room} prompt tokens (keeping "
                f"{room} for the answer); shorten the prompt")
        self.log(f"Dropped the {dropped} oldest round(s) of the history to fit the model's "
                 f"context of {self.context} tokens.")
        return ids

    @torch.inference_mode()
    def ask(self, text: str, stream: TextIO | None = None) -> str:
        """Answer ``text`` as the next user turn and remember the round.

        Args:
            text: the user's message.
            stream: print the answer there while it is generated (``None``: don't).

        Returns:
            The answer: decoded without special tokens and cut before the first stop word.

        Raises:
            PromptTooLongError: the prompt alone does not fit the context.
        """
        ids = self._fit(text)
        max_new = self.max_new_tokens
        if self.context is not None:
            max_new = max(1, min(max_new, self.context - len(ids)))
        device = next(self.model.parameters()).device
        input_ids = torch.tensor([ids], dtype=torch.long, device=device)
        streamer = StopWordStreamer(self.tokenizer, self.stop_words, stream) if stream else None
        config = copy.deepcopy(self.generation_config)
        config.max_new_tokens = max_new
        output = self.model.generate(
            input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
            generation_config=config, tokenizer=self.tokenizer, streamer=streamer)
        new_ids = output[0, len(ids):].tolist()
        answer, _ = cut_at_stop_words(self.tokenizer.decode(new_ids, skip_special_tokens=True),
                                      self.stop_words)
        raw, _ = cut_at_stop_words(self.tokenizer.decode(new_ids, skip_special_tokens=False),
                                   self.stop_words, keep_stop_word=True)
        self.conversation.commit(text, raw, answer)
        return answer
