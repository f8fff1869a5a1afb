"""``xtuner chat``: conversations, generation and the terminal loop behind ``tools/chat.py``.

* :mod:`.conversation`: the prompt of each turn, from an XTuner ``PROMPT_TEMPLATE`` (v0's
  layout, history kept as text) or from the tokenizer's own chat template (a messages list).
* :mod:`.generation`: :class:`ChatSession` (one model, one conversation), stop words and the
  streamer that prints an answer as it is generated.
* :mod:`.loading`: model, tokenizer and adapter loading with one-line errors.
* :mod:`.loop`: the read-answer loop (``EXIT``/``RESET``) and how prompts are read from a
  terminal or from piped standard input.
"""
from .conversation import ChatTemplateConversation, TemplateConversation, system_text
from .generation import ChatSession, PromptTooLongError, cut_at_stop_words
from .loop import chat_loop, interactive_prompts, split_script

__all__ = [
    "ChatSession",
    "ChatTemplateConversation",
    "PromptTooLongError",
    "TemplateConversation",
    "chat_loop",
    "cut_at_stop_words",
    "interactive_prompts",
    "split_script",
    "system_text",
]
