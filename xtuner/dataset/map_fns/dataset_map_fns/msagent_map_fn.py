"""Map fn for MSAgent-Bench (ModelScope agent data) rendered as ReAct text.

MSAgent-Bench assistant messages mark tool calls as
``<|startofthink|>```JSON {"api_name": ..., "parameters": ...}```<|endofthink|>`` and tool
results as ``<|startofexec|>```JSON {...}```<|endofexec|>``. XTuner v0 rewrites them into the
ReAct lines ``Thought:``, ``Action:``, ``Action Input:``, ``Response:`` and ``Final Answer:``,
with a Chinese system prompt listing the tools found in the record's system message. The exact
text is v0's, so models trained by v0 and by xtuner see the same tokens.
"""
import ast
import json
import re
from typing import Any

from xtuner.utils.errors import DataError

__all__ = ["msagent_react_map_fn"]

# `.` must cross newlines: thoughts and JSON payloads span several lines.
_THINK_RE = re.compile(r"(.*?)(<\|startofthink\|>)(.*?)(<\|endofthink\|>)", re.DOTALL)
_EXEC_RE = re.compile(r"(<\|startofexec\|>)(.*?)(<\|endofexec\|>)(.*?)$", re.DOTALL)

_JSON_DECODER = json.JSONDecoder()
_EXEC_START = "<|startofexec|>"
_FINAL_ANSWER = "Final Answer:"


def _load_fenced_json(text: str) -> Any:
    """Parse a payload wrapped in a ```JSON fence; newlines are dropped as v0 does."""
    return json.loads(text.replace("```JSON", "").replace("```", "").replace("\n", ""))


def _render_think(match: re.Match) -> str:
    """``<text><|startofthink|>{json}<|endofthink|>`` → ``Thought:``/``Action:`` lines."""
    out = ""
    thought = match.group(1).strip()
    if thought:
        out += f"Thought:{thought}\n"
    call = _load_fenced_json(match.group(3))
    out += f"Action:{call['api_name']}\nAction Input:{call['parameters']}\n"
    return out


def _render_exec(match: re.Match) -> str:
    """``<|startofexec|>{json}<|endofexec|><text>`` → ``Response:`` (+ ``Final Answer:``)."""
    out = f"Response:{_load_fenced_json(match.group(2))}\n"
    answer = match.group(4).strip()
    if answer:
        out += f"{_FINAL_ANSWER}{answer}\n"
    return out


def _extract_tool_specs(text: str) -> list[dict]:
    """Return every JSON object embedded in ``text`` that has ``name`` and ``description``."""
    results = []
    pos = 0
    while (start := text.find("{", pos)) != -1:
        try:
            obj, length = _JSON_DECODER.raw_decode(text[start:])
        except ValueError:
            pos = start + 1
            continue
        if "name" in obj and "description" in obj:
            results.append(obj)
            pos = start + length
        else:
            # Look inside: a wrapper object may hold the tool specs.
            pos = start + 1
    return results


def _tool_system_prompt(system_value: str) -> str:
    """Build v0's Chinese ReAct system prompt from the record's system message."""
    api_dict = {}
    for spec in _extract_tool_specs(system_value):
        api_dict[spec["name"]] = spec["description"]
        try:
            params = {p["name"]: p["description"] for p in spec["paths"][0]["parameters"]}
            api_dict[spec["name"]] += f"\n输入参数: {params}"
        except (KeyError, IndexError, TypeError):
            pass  # Tools without a parameter list are described by name and description only.
    return (
        "你是一个可以调用外部工具的助手，可以使用的工具包括：\n"
        f"{api_dict}\n"
        "如果使用工具请遵循以下格式回复：\n```\n"
        "Thought:思考你当前步骤需要解决什么问题，是否需要使用工具\n"
        # v0 wraps the list repr in another pair of brackets ("[['a', 'b']]"); kept for parity.
        f"Action:工具名称，你的工具必须从 [{list(api_dict.keys())}] 选择\n"
        "Action Input:工具输入参数\n```\n工具返回按照以下格式回复：\n```\n"
        "Response:调用工具后的结果\n```\n如果你已经知道了答案，或者你不需要工具，"
        "请遵循以下格式回复\n```\n"
        "Thought:给出最终答案的思考过程\n"
        "Final Answer:最终答案\n```\n开始!\n"
    )


def msagent_react_map_fn(example: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Map an MSAgent-Bench record to a ReAct-formatted conversation.

    Behaviour (v0's):

    * ``conversations`` may be a list or its Python-literal string; records with fewer than two
      messages give an empty conversation.
    * ``system`` messages append the tool prompt to the next turn's system text; ``user``
      messages append ``value + "\\n"`` to the next turn's input.
    * Each ``assistant`` message becomes a turn. Think blocks become ``Thought:``/``Action:``/
      ``Action Input:`` lines and the output gets a trailing ``"\\n"``; a reply without a think
      block becomes ``"Final Answer:<reply>\\n"``.
    * If the reply has an exec block that ends in a final answer, one more turn follows:
      ``{"system": "Response:<tool result>\\n", "output": "Final Answer:<answer>..."}`` (no
      ``input``), so the tool result is context and the answer is trained. An exec block
      without a final answer, or whose payload is not JSON, adds nothing.
    * A malformed think block (bad JSON, missing ``api_name``) or more than one exec block
      drops the whole record (empty conversation).

    Args:
        example: One MSAgent-Bench record.

    Returns:
        ``{"conversation": [...]}``.

    Raises:
        DataError: ``conversations`` is a string that is not a Python literal.
    """
    messages = example["conversations"]
    if isinstance(messages, str):
        # The dataset stores a Python literal; literal_eval parses it like v0's eval() did,
        # without executing code (v0 would have run any expression a data file held).
        try:
            messages = ast.literal_eval(messages)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
            raise DataError(
                "msagent_react_map_fn: 'conversations' is a string but not a Python literal "
                f"list of messages ({type(exc).__name__}); expected e.g. "
                "\"[{'from': 'user', 'value': '...'}, ...]\""
            ) from exc
    if len(messages) < 2:
        return {"conversation": []}

    conversation = []
    system_text, input_text = "", ""
    for msg in messages:
        speaker = msg["from"]
        if speaker == "system":
            system_text += _tool_system_prompt(msg["value"])
        elif speaker == "user":
            input_text += f"{msg['value']}\n"
        elif speaker == "assistant":
            output, exec_part = msg["value"], None
            try:
                if _EXEC_START in output:
                    output, rest = output.split(_EXEC_START)  # >1 exec block: ValueError
                    exec_part = _EXEC_START + rest
                output, n_think = _THINK_RE.subn(_render_think, output)
            except (ValueError, KeyError, TypeError):
                return {"conversation": []}
            output = f"{output}\n" if n_think else f"{_FINAL_ANSWER}{output}\n"
            conversation.append({"system": system_text, "input": input_text, "output": output})
            system_text, input_text = "", ""

            if exec_part is not None:
                try:
                    exec_part = _EXEC_RE.sub(_render_exec, exec_part)
                    if _FINAL_ANSWER in exec_part:
                        # More than one "Final Answer:" raises and drops this extra turn.
                        response, answer = exec_part.split(_FINAL_ANSWER)
                        conversation.append(
                            {"system": response, "output": _FINAL_ANSWER + answer}
                        )
                except ValueError:
                    pass
    return {"conversation": conversation}
