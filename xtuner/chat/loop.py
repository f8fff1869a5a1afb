"""The read-answer loop of ``xtuner chat`` and where its prompts come from.

Two sources of prompts:

* a terminal (:func:`interactive_prompts`): as in v0, a prompt may span several lines and ends
  with an empty line; the banner goes to standard error;
* piped standard input (:func:`split_script`), read to the end first: if it contains an empty
  line (ignoring leading and trailing ones), prompts are the blocks between empty lines, else
  each line is a prompt.

In both, a prompt that is just ``EXIT`` ends the chat and ``RESET`` clears the history. Only
answers go to standard output, so ``xtuner chat MODEL < questions.txt > answers.txt`` works.
"""
from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TextIO

from .generation import ChatSession, PromptTooLongError

__all__ = ["BANNER", "EMPTY_ANSWER", "chat_loop", "interactive_prompts", "note_empty_answer",
           "split_script"]

BANNER = "\ndouble enter to end input (EXIT: exit chat, RESET: reset history) >>> "
EMPTY_ANSWER = "(empty answer)"


def note_empty_answer(answer: str, out: TextIO, err: TextIO) -> None:
    """Make an empty answer visible: ``(empty answer)`` at a terminal; where answers are piped
    (one per prompt) the answer stays an empty line and the notice goes to ``err``."""
    if answer.strip():
        return
    if out.isatty():
        out.write(EMPTY_ANSWER)
    else:
        print(f"xtuner chat: the model gave an {EMPTY_ANSWER[1:-1]}", file=err, flush=True)


def split_script(text: str) -> tuple[list[str], bool]:
    """Split piped input into prompts.

    Returns:
        ``(prompts, blocks)``: ``blocks`` is ``True`` when the input had an empty line inside it
        and prompts are the (multi-line) blocks between empty lines; otherwise every non-empty
        line is a prompt.
    """
    lines = text.splitlines()
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    if all(line.strip() for line in lines):
        return lines, False
    prompts, block = [], []
    for line in lines:
        if line.strip():
            block.append(line)
        elif block:
            prompts.append("\n".join(block))
            block = []
    if block:
        prompts.append("\n".join(block))
    return prompts, True


def interactive_prompts(err: TextIO | None = None, read=input) -> Iterator[str]:
    """Prompts typed at a terminal: lines up to an empty line make one prompt (v0's input).

    Ends at end of input (Ctrl-D); a half-typed prompt is still answered.
    """
    while True:
        print(BANNER, end="", file=err or sys.stderr, flush=True)
        lines = []
        try:
            while (line := read()) != "":
                lines.append(line)
        except EOFError:
            if lines:
                yield "\n".join(lines)
            return
        yield "\n".join(lines)


def chat_loop(session: ChatSession, prompts: Iterable[str], *, out: TextIO | None = None,
              err: TextIO | None = None, stream: bool = True, scripted: bool = False,
              answer_separator: str = "\n") -> int:
    """Answer ``prompts`` in turn, keeping the history; return the exit status.

    Args:
        session: the model and conversation.
        prompts: the user's messages (``EXIT`` stops, ``RESET`` clears the history, empty
            ones are skipped).
        out: where answers go (default: standard output).
        err: where notices go (default: standard error).
        stream: print answers while they are generated.
        scripted: the prompts are piped in: a prompt too long for the context still gets an
            (empty) answer, so answers stay aligned with prompts, and the status is 2.
        answer_separator: written after each answer (``"\\n\\n"`` keeps block answers apart).
    """
    out = out or sys.stdout
    err = err or sys.stderr
    status = 0
    for text in prompts:
        command = text.strip()
        if command == "EXIT":
            print("Log: Exit!", file=err, flush=True)
            break
        if command == "RESET":
            session.reset()
            print("Log: History responses have been removed!", file=err, flush=True)
            continue
        if not command:
            continue
        try:
            answer = session.ask(text, stream=out if stream else None)
        except PromptTooLongError as exc:
            print(f"xtuner chat: {exc}", file=err, flush=True)
            if scripted:
                status = 2
                out.write(answer_separator)
                out.flush()
            continue
        if not stream:
            out.write(answer)
        note_empty_answer(answer, out, err)
        out.write(answer_separator)
        out.flush()
    return status
