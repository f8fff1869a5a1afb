"""The source data formats the pipeline reads, for ``list-dataset-format`` and the data checker.

Each entry says which ``dataset_map_fn`` a config uses for the format, the fields a record
must have (with their JSON types) and one example record. ``conversation`` is XTuner's own
format (``dataset_map_fn=None``); every other name is a key of ``DATASET_FORMAT_MAPPING``.
A map fn not listed here (a user's own) is described by the fields its source code reads
(:func:`fields_read_by`).
"""
from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["DataFormat", "DATA_FORMATS", "format_for_map_fn", "fields_read_by",
           "guess_formats"]

# Nested layouts that need more than top-level field checks (see xtuner.dataset.validation).
CONVERSATION, MESSAGES, SHAREGPT = "conversation", "messages", "sharegpt"


@dataclass(frozen=True)
class DataFormat:
    """One source format.

    Attributes:
        name: ``conversation`` or a ``DATASET_FORMAT_MAPPING`` key.
        map_fn: the ``dataset_map_fn`` name a config sets for it (None: no map fn).
        description: one line for ``xtuner list-dataset-format``.
        example: an example record.
        fields: required top-level fields and their JSON type (``str`` or ``list``).
        layout: how nested fields are checked (``conversation``, ``messages``, ``sharegpt``).
        speakers: the allowed ``from`` values of a ShareGPT layout (asker first, answerer last).
        may_drop: the map fn drops some records on purpose (e.g. Alpaca's ``<nooutput>``), so
            an empty conversation is a warning, not an error.
    """

    name: str
    map_fn: str | None
    description: str
    example: dict
    fields: dict[str, type] = field(default_factory=dict)
    layout: str | None = None
    speakers: tuple[str, ...] = ()
    may_drop: bool = False


def _single(name, map_fn, description, example, may_drop=False):
    return DataFormat(name, map_fn, description, example,
                      fields={k: str for k in example}, may_drop=may_drop)


_SHAREGPT_EXAMPLE = {"conversations": [{"from": "human", "value": "Hi"},
                                       {"from": "gpt", "value": "Hello! How can I help?"}]}
_LLAVA_EXAMPLE = {"id": "0", "image": "coco/0001.jpg",
                  "conversations": [{"from": "human", "value": "<image>\nWhat is shown?"},
                                    {"from": "gpt", "value": "A cat on a sofa."}]}

_FORMATS = [
    DataFormat(
        "conversation", None,
        "XTuner's own multi-turn format; every output is trained (system optional)",
        {"conversation": [{"system": "You are a helpful assistant.", "input": "Hi",
                           "output": "Hello!"},
                          {"input": "What is 2+2?", "output": "4"}]},
        fields={"conversation": list}, layout=CONVERSATION),
    _single("alpaca", "alpaca_map_fn",
            "Stanford Alpaca: instruction (+ input) -> output; output '<nooutput>' is dropped",
            {"instruction": "Give three tips for staying healthy.", "input": "",
             "output": "Eat well, exercise, sleep."}, may_drop=True),
    _single("alpaca_zh", "alpaca_zh_map_fn",
            "Chinese Alpaca: instruction_zh (+ input_zh) -> output_zh",
            {"instruction_zh": "给出三个保持健康的建议。", "input_zh": "",
             "output_zh": "均衡饮食，坚持锻炼，保证睡眠。"}),
    _single("arxiv", "arxiv_map_fn", "arXiv metadata: abstract -> title",
            {"abstract": "We propose a method ...", "title": "A Method"}),
    _single("code_alpaca", "code_alpaca_map_fn", "Code Alpaca: prompt -> completion",
            {"prompt": "Write a function that adds two numbers.",
             "completion": "def add(a, b):\n    return a + b"}),
    _single("colors", "colors_map_fn",
            "colour descriptions: text after the first ':' of description -> color",
            {"description": "Alice Blue: an off-white with a hint of blue", "color": "#f0f8ff"}),
    _single("crime_kg_assitan", "crime_kg_assitant_map_fn",
            "Chinese legal Q&A with the lawyer system prompt: input -> output",
            {"input": "盗窃罪的量刑标准是什么？", "output": "根据刑法第二百六十四条……"}),
    _single("default", "default_map_fn", "plain pairs without a system prompt: input -> output",
            {"input": "Hi", "output": "Hello!"}),
    _single("law_reference", "law_reference_map_fn",
            "Chinese legal Q&A with the lawyer system prompt: question -> answer",
            {"question": "合同的成立要件有哪些？", "answer": "当事人具有相应的民事行为能力……"}),
    DataFormat("llava_image_only", "llava_image_only_map_fn",
               "LLaVA pre-training: ShareGPT conversations whose human turns hold only <image>",
               _LLAVA_EXAMPLE, fields={"conversations": list}, layout=SHAREGPT,
               speakers=("human", "gpt")),
    DataFormat("llava", "llava_map_fn",
               "LLaVA instruction data: ShareGPT conversations, <image> moved to the front",
               _LLAVA_EXAMPLE, fields={"conversations": list}, layout=SHAREGPT,
               speakers=("human", "gpt")),
    _single("medical", "medical_map_fn",
            "Chinese medical Q&A: instruction (+ input) -> output, doctor system prompt",
            {"instruction": "头痛应该怎么办？", "input": "", "output": "建议先休息……"}),
    DataFormat("msagent_react", "msagent_react_map_fn",
               "MSAgent-Bench tool calls rewritten as ReAct (Thought/Action/Response) turns",
               {"conversations": [{"from": "system", "value": "You can call tools: ..."},
                                  {"from": "user", "value": "What is the weather in Paris?"},
                                  {"from": "assistant", "value": "It is sunny."}]},
               fields={"conversations": list}, layout=SHAREGPT,
               speakers=("system", "user", "assistant"), may_drop=True),
    DataFormat("oasst1", "oasst1_map_fn",
               "OpenAssistant text: '### Human: ... ### Assistant: ...' split into turns",
               {"text": "### Human: Hi### Assistant: Hello! How can I help?"},
               fields={"text": str}, may_drop=True),
    DataFormat("openai", "openai_map_fn",
               "OpenAI chat messages (system/user/assistant); assistant 'loss': false = "
               "context only",
               {"messages": [{"role": "system", "content": "You are a helpful assistant."},
                             {"role": "user", "content": "Hi"},
                             {"role": "assistant", "content": "Hello!"}]},
               fields={"messages": list}, layout=MESSAGES),
    _single("openorca", "openorca_map_fn", "OpenOrca: system_prompt + question -> response",
            {"system_prompt": "You are an AI assistant.", "question": "What is 2+2?",
             "response": "4"}),
    _single("pretrain", "pretrain_map_fn",
            "plain text for (incremental) pre-training: all of text is trained, no template",
            {"text": "The mitochondria is the powerhouse of the cell."}),
    _single("sql", "sql_map_fn", "text-to-SQL: context (CREATE TABLE) + question -> answer",
            {"context": "CREATE TABLE head (age INTEGER)",
             "question": "How many heads are older than 56?",
             "answer": "SELECT COUNT(*) FROM head WHERE age > 56"}),
    _single("stack_exchange", "stack_exchange_map_fn", "Stack Exchange: question -> response",
            {"question": "How do I reverse a list in Python?", "response": "Use reversed()."}),
    _single("tiny_codes", "tiny_codes_map_fn",
            "Tiny Codes: prompt -> response with the coder system prompt",
            {"prompt": "Write a bash loop over files.",
             "response": "for f in *; do echo \"$f\"; done"}),
    DataFormat("wizardlm", "wizardlm_map_fn",
               "ShareGPT conversations (from human/gpt, value), as in WizardLM",
               _SHAREGPT_EXAMPLE, fields={"conversations": list}, layout=SHAREGPT,
               speakers=("human", "gpt")),
]

#: Every supported format by name, ``conversation`` first.
DATA_FORMATS: dict[str, DataFormat] = {f.name: f for f in _FORMATS}

_BY_MAP_FN = {f.map_fn: f for f in _FORMATS}

# The formats a record is compared with to say which map fn it would need.
_GUESS_ORDER = ("conversation", "openai", "wizardlm", "alpaca", "openorca", "sql",
                "code_alpaca", "tiny_codes", "default", "pretrain")


def fields_read_by(fn: Callable) -> tuple[list[str], list[str]]:
    """The record fields a map fn reads: ``(required, optional)``.

    ``example["x"]`` counts as required and ``example.get("x")`` as optional, where
    ``example`` is the function's first parameter. Returns two empty lists when the source
    is not available (a builtin, a lambda typed in a REPL).
    """
    fn = inspect.unwrap(fn)
    try:
        source = textwrap.dedent(inspect.getsource(fn))
        tree = ast.parse(source)
    except (OSError, TypeError, SyntaxError):
        return [], []
    func = next((n for n in ast.walk(tree)
                 if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))), None)
    if func is None or not func.args.args:
        return [], []
    param = func.args.args[0].arg
    required: list[str] = []
    optional: list[str] = []
    for node in ast.walk(func):
        if (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name)
                and node.value.id == param and isinstance(node.slice, ast.Constant)
                and isinstance(node.slice.value, str)):
            if node.slice.value not in required:
                required.append(node.slice.value)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "get" and isinstance(node.func.value, ast.Name)
              and node.func.value.id == param and node.args
              and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)):
            if node.args[0].value not in optional:
                optional.append(node.args[0].value)
    optional = [k for k in optional if k not in required]
    return required, optional


def format_for_map_fn(map_fn: Callable | None) -> DataFormat:
    """The format a config's ``dataset_map_fn`` expects.

    A map fn of ``DATASET_FORMAT_MAPPING`` gets its listed format; any other function gets a
    format whose required fields are those its source reads (types unchecked).
    """
    if map_fn is None:
        return DATA_FORMATS["conversation"]
    from .map_fns.dataset_map_fns import DATASET_FORMAT_MAPPING

    for name, fn in DATASET_FORMAT_MAPPING.items():
        if fn is map_fn:
            return DATA_FORMATS[name]
    name = getattr(map_fn, "__name__", None) or type(map_fn).__name__
    known = _BY_MAP_FN.get(name)
    if known is not None and getattr(map_fn, "__module__", "").startswith("xtuner."):
        return known
    required, _ = fields_read_by(map_fn)
    return DataFormat(name, name, f"fields read by {name}", {}, fields=dict.fromkeys(required))


def guess_formats(record) -> list[DataFormat]:
    """The common formats whose required fields ``record`` has, most specific first."""
    if not isinstance(record, dict):
        return []
    return [DATA_FORMATS[name] for name in _GUESS_ORDER
            if all(k in record for k in DATA_FORMATS[name].fields)]
