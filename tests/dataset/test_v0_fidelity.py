"""The data pipeline gives what XTuner 0.2.0's own code gives (loaded from its wheel).

Every map fn, every prompt template, ``encode_fn``/``encode_batch`` on every tokenizer kind the
tests build, and ``process_hf_dataset`` end to end are compared with v0's functions run on the
same records (see tests/v0_oracle.py). Where xtuner deliberately differs, the test checks both
our behaviour and that the switch restores v0's.
"""
from __future__ import annotations

import copy
from functools import partial

import pytest
from v0_oracle import as_v0_saw_it

from xtuner.dataset import process_hf_dataset
from xtuner.dataset.map_fns import (
    DATASET_FORMAT_MAPPING,
    openai_map_fn,
    template_map_fn,
    template_map_fn_factory,
)
from xtuner.dataset.tokenize import encode_batch, encode_fn
from xtuner.utils import constants
from xtuner.utils.errors import ConfigError, DataError
from xtuner.utils.templates import PROMPT_TEMPLATE, SYSTEM_TEMPLATE

LONG = "Eat well, sleep, exercise. " * 6

# Varied records for every format v0 ships: unicode, empty fields, system prompts, several
# turns, v0's drop rules.
RECORDS = {
    "alpaca": [
        {"instruction": "Give three tips for staying healthy.", "input": "", "output": LONG},
        {"instruction": "Translate to French", "input": "Hello, world!",
         "output": "Bonjour le monde."},
        {"instruction": "说一句话", "input": "关于春天 🌸", "output": "春眠不觉晓。"},
        {"instruction": "Say nothing", "input": "", "output": "<nooutput>"},
        {"instruction": "", "input": "", "output": ""},
    ],
    "alpaca_zh": [
        {"instruction_zh": "给出三个保持健康的建议。", "input_zh": "",
         "output_zh": "均衡饮食，坚持锻炼，保证睡眠。"},
        {"instruction_zh": "翻译", "input_zh": "cat", "output_zh": "猫"},
    ],
    "arxiv": [{"abstract": "We study X.\nIt works.", "title": "On X"},
              {"abstract": "", "title": "Empty"}],
    "code_alpaca": [{"prompt": "sum a list", "completion": "def f(xs):\n    return sum(xs)"}],
    "colors": [
        {"description": "Medium Spring Bud: A light: yellowish green ", "color": "#c5e17a"},
        {"description": "no colon here", "color": "#000000"},
        {"description": ":leading colon", "color": "#111111"},
    ],
    "crime_kg_assitan": [{"input": "盗窃罪如何量刑？", "output": "视情节而定。"}],
    "default": [{"input": "a", "output": "b", "extra": 1}, {"input": "", "output": "only out"}],
    "law_reference": [{"question": "合同的成立要件有哪些？", "answer": "当事人具有……"}],
    "medical": [{"instruction": "头痛怎么办？", "input": "", "output": "多休息。"},
                {"instruction": "Fever", "input": "39 °C", "output": "See a doctor."}],
    "openorca": [
        {"id": "1", "system_prompt": "", "question": "What is 2+2?", "response": "4"},
        {"id": "2", "system_prompt": "You are an AI assistant.", "question": "Hi",
         "response": "Hello!"},
    ],
    "pretrain": [{"text": "\n  The quick brown fox jumps over the lazy dog.  \n"},
                 {"text": "中文 text ✓"}],
    "sql": [{"context": "CREATE TABLE t (a INT)", "question": "count rows",
             "answer": "SELECT COUNT(*) FROM t"}],
    "stack_exchange": [{"question": "Why?", "response": "Because."}],
    "tiny_codes": [{"prompt": "write fizzbuzz", "response": "for i in range(1, 16): ..."}],
    "oasst1": [
        {"text": "### Human: Can you explain X?### Assistant: Sure! X is Y."
                 "### Human: Why?###Assistant:Because Z.### Human: Thanks, one more?"},
        {"text": "### Assistant: a### Other: b### Human: c"},
        {"text": "no markers at all"},
    ],
    "openai": [
        {"messages": [
            {"role": "assistant", "content": "leading, skipped"},
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Tell me "},
            {"role": "user", "content": "a story."},
            {"role": "assistant", "content": "Once.", "loss": "False"},
            {"role": "user", "content": "More"},
            {"role": "assistant", "content": "Twice.", "loss": "TRUE"},
            {"role": "system", "content": "unused"},
            {"role": "user", "content": "Again"},
            {"role": "assistant", "content": "Thrice.", "loss": False},
            {"role": "user", "content": "dangling, dropped"},
        ]},
        {"messages": [{"role": "user", "content": "你好"},
                      {"role": "assistant", "content": "你好！", "loss": True},
                      {"role": "user", "content": ""},
                      {"role": "assistant", "content": "…", "loss": 1}]},
    ],
    "wizardlm": [
        {"conversations": [
            {"from": "gpt", "value": "skipped"},
            {"from": "human", "value": "Hi. "},
            {"from": "human", "value": "Help?"},
            {"from": "gpt", "value": "Sure."},
            {"from": "human", "value": "Bye"},
            {"from": "gpt", "value": "Bye!"},
            {"from": "human", "value": "dropped"},
        ]},
    ],
    "llava": [
        {"id": "1", "image": "a.jpg", "conversations": [
            {"from": "human", "value": "What is this?\n<image>"},
            {"from": "gpt", "value": "A cat."},
            {"from": "human", "value": "Colour?"},
            {"from": "gpt", "value": "Black."},
            {"from": "human", "value": " <image> twice <image> "},
            {"from": "gpt", "value": "Yes."},
        ]},
        {"conversations": [{"from": "human", "value": "<image>\n"},
                           {"from": "gpt", "value": "x"}]},
    ],
    "llava_image_only": [
        {"conversations": [
            {"from": "gpt", "value": "skipped"},
            {"from": "human", "value": "Describe <image> briefly."},
            {"from": "gpt", "value": "A dog on grass."},
        ]},
    ],
}

_SYSTEM_VALUE = (
    'You are an agent. Tools: {"name": "weather", "description": "查询天气", '
    '"paths": [{"parameters": [{"name": "city", "description": "城市"}]}]} and '
    '{"name": "calc", "description": "calculator"} {broken'
)
_THINK = ('<|startofthink|>```JSON\n{"api_name": "weather", "parameters": {"city": "北京"}}\n'
          "```<|endofthink|>")
_MSAGENT_CONVERSATIONS = [
    [
        {"from": "system", "value": _SYSTEM_VALUE},
        {"from": "user", "value": "北京天气？"},
        {"from": "assistant", "value": "我来查一下" + _THINK
         + '<|startofexec|>```JSON\n{"result": "晴"}\n```<|endofexec|>\n北京今天晴。\n'},
        {"from": "user", "value": "谢谢"},
        {"from": "assistant", "value": "不客气"},
    ],
    [{"from": "user", "value": "q"}],
    [{"from": "user", "value": "q"},
     {"from": "assistant", "value": "<|startofthink|>not json<|endofthink|>"}],
    [{"from": "user", "value": "q"},
     {"from": "assistant", "value": "a<|startofexec|>b<|startofexec|>c"}],
    [{"from": "user", "value": "q"},
     {"from": "assistant", "value": _THINK + "<|startofexec|>plain<|endofexec|>Final Answer: y"}],
    [{"from": "user", "value": "q"},
     {"from": "assistant", "value": '<|startofthink|>```JSON\n{"x": 1}\n```<|endofthink|>'}],
]
RECORDS["msagent_react"] = [{"conversations": c} for c in _MSAGENT_CONVERSATIONS] + [
    {"conversations": str(_MSAGENT_CONVERSATIONS[0])}  # the dataset stores a Python literal
]

TEMPLATES = [None, *PROMPT_TEMPLATE]


def _v0_apply(v0, fmt, record, template_name):
    """v0's map fn and template_map_fn on a copy of ``record`` (v0 edits rows in place)."""
    out = v0.DATASET_FORMAT_MAPPING[fmt](copy.deepcopy(record))
    if template_name is not None:
        out = v0.template_map_fn.template_map_fn(out, v0.PROMPT_TEMPLATE[template_name])
    return out


def _ours_apply(fmt, record, template_name):
    out = DATASET_FORMAT_MAPPING[fmt](copy.deepcopy(record))
    if template_name is not None:
        out = template_map_fn(out, PROMPT_TEMPLATE[template_name])
    return out


# --------------------------------------------------------------------------- constants, names
def test_constants_equal_v0(v0):
    for name in ("IGNORE_INDEX", "DEFAULT_PAD_TOKEN_INDEX", "IMAGE_TOKEN_INDEX",
                 "DEFAULT_IMAGE_TOKEN"):
        assert getattr(constants, name) == getattr(v0.constants, name), name


def test_every_v0_format_is_shipped_under_its_name(v0):
    assert list(DATASET_FORMAT_MAPPING) == list(v0.DATASET_FORMAT_MAPPING)
    for key, fn in DATASET_FORMAT_MAPPING.items():
        assert fn.__name__ == v0.DATASET_FORMAT_MAPPING[key].__name__, key
    assert set(RECORDS) == set(v0.DATASET_FORMAT_MAPPING)  # every map fn gets records below


# --------------------------------------------------------------------------- map fns
@pytest.mark.parametrize("fmt", list(RECORDS))
def test_map_fn_equals_v0(v0, fmt):
    for record in RECORDS[fmt]:
        original = copy.deepcopy(record)
        assert DATASET_FORMAT_MAPPING[fmt](record) == _v0_apply(v0, fmt, record, None), record
        assert record == original  # unlike v0's llava/template fns, ours never edit the row


@pytest.mark.parametrize("fmt", list(RECORDS))
@pytest.mark.parametrize("template_name", list(PROMPT_TEMPLATE))
def test_templated_conversation_equals_v0(v0, fmt, template_name):
    for record in RECORDS[fmt]:
        mapped = DATASET_FORMAT_MAPPING[fmt](copy.deepcopy(record))
        if "SYSTEM" not in PROMPT_TEMPLATE[template_name] and any(
                turn.get("system") for turn in mapped["conversation"]):
            # v0 dies with a bare AttributeError; we name the problem.
            with pytest.raises(AttributeError):
                _v0_apply(v0, fmt, record, template_name)
            with pytest.raises(DataError, match="no SYSTEM field"):
                _ours_apply(fmt, record, template_name)
            continue
        assert _ours_apply(fmt, record, template_name) == _v0_apply(v0, fmt, record,
                                                                    template_name)


def test_template_map_fn_factory_equals_v0_for_dotted_paths(v0):
    """A dumped config stores the template as a dotted path; both resolve it the same way."""
    conv = {"conversation": [{"system": "S", "input": "Hi", "output": "Hello"}]}
    ours = template_map_fn_factory("xtuner.utils.templates.PROMPT_TEMPLATE.llama3_chat")
    theirs = v0.template_map_fn.template_map_fn_factory(v0.PROMPT_TEMPLATE.llama3_chat)
    assert ours(copy.deepcopy(conv)) == theirs(copy.deepcopy(conv))


# --------------------------------------------------------------------------- templates
def test_prompt_templates_equal_v0(v0):
    assert list(PROMPT_TEMPLATE) == list(v0.PROMPT_TEMPLATE)
    for name, template in v0.PROMPT_TEMPLATE.items():
        # Same fields in the same order, each string and flag identical.
        assert list(PROMPT_TEMPLATE[name].items()) == list(template.items()), name


def test_system_templates_equal_v0(v0):
    assert list(SYSTEM_TEMPLATE.items()) == list(v0.SYSTEM_TEMPLATE.items())


# --------------------------------------------------------------------------- tokenization
class ChatGLMTokenizer:
    """THUDM's ChatGLM tokenizer as far as encode_fn is concerned: only its class name selects
    the fixed BOS pair [64790, 64792]."""

    def __init__(self, inner):
        self.inner = inner
        self.bos_token_id = inner.bos_token_id
        self.eos_token_id = inner.eos_token_id

    def encode(self, text, add_special_tokens=True):
        return self.inner.encode(text, add_special_tokens=add_special_tokens)


# Every kind the tests build: byte-level with BOS (Llama-style factory default), the shipped
# demo tokenizer, SentencePiece-like, Qwen2 without and with a BOS token, ChatGLM's fixed BOS.
TOKENIZER_KINDS = ["bos_tokenizer", "demo_tokenizer", "spm_tokenizer", "qwen2_tokenizer",
                   "qwen2_tokenizer_with_bos", "chatglm"]


@pytest.fixture(scope="module")
def demo_tokenizer():
    from transformers import AutoTokenizer

    from xtuner.demo import TINY_LLM_PATH

    return AutoTokenizer.from_pretrained(TINY_LLM_PATH)


@pytest.fixture(params=TOKENIZER_KINDS)
def tokenizer(request):
    if request.param == "chatglm":
        return ChatGLMTokenizer(request.getfixturevalue("bos_tokenizer"))
    return request.getfixturevalue(request.param)


def _conversations(v0, template_name):
    """v0's templated conversations of every record (skipping what v0 cannot template)."""
    out = []
    for fmt, records in RECORDS.items():
        for record in records:
            mapped = v0.DATASET_FORMAT_MAPPING[fmt](copy.deepcopy(record))
            template = None if template_name is None else PROMPT_TEMPLATE[template_name]
            if not mapped["conversation"]:
                continue
            if template is not None and "SYSTEM" not in template and any(
                    turn.get("system") for turn in mapped["conversation"]):
                continue
            if template is None and any("input" not in t for t in mapped["conversation"]):
                continue  # msagent's response turn has no input until a template adds one
            out.append(_v0_apply(v0, fmt, record, template_name))
    return out


@pytest.mark.parametrize("template_name", TEMPLATES)
def test_encode_fn_equals_v0(v0, tokenizer, template_name):
    """input_ids and labels of every record, whole and cut at several max_length values."""
    v0_tok = as_v0_saw_it(tokenizer)
    examples = _conversations(v0, template_name)
    assert len(examples) >= 20
    for example in examples:
        full = v0.encode_fn(copy.deepcopy(example), v0_tok, 100_000)
        n = len(full["input_ids"])
        for max_length in sorted({100_000, n, n - 1, n // 2, 1} - {0}):
            expected = v0.encode_fn(copy.deepcopy(example), v0_tok, max_length)
            assert encode_fn(example, tokenizer, max_length) == expected, (example, max_length)
        if len(example["conversation"]) == 1:
            expected = v0.encode_fn(copy.deepcopy(example), v0_tok, 100_000,
                                    input_ids_with_output=False)
            assert encode_fn(example, tokenizer, 100_000, input_ids_with_output=False) == expected
    for max_length in (100_000, 9):
        expected = [v0.encode_fn(copy.deepcopy(e), v0_tok, max_length) for e in examples]
        assert encode_batch(examples, tokenizer, max_length) == expected


def test_image_token_encoding_equals_v0(v0, bos_tokenizer):
    examples = [_v0_apply(v0, "llava", r, "vicuna") for r in RECORDS["llava"]]
    for example in examples:
        expected = v0.encode_fn(copy.deepcopy(example), bos_tokenizer, 4096, with_image_token=True)
        assert constants.IMAGE_TOKEN_INDEX in expected["input_ids"]
        assert encode_fn(example, bos_tokenizer, 4096, with_image_token=True) == expected
    assert encode_batch(examples, bos_tokenizer, 4096, with_image_token=True) == [
        v0.encode_fn(copy.deepcopy(e), bos_tokenizer, 4096, with_image_token=True)
        for e in examples]


def test_several_images_in_one_input(v0, bos_tokenizer):
    """v0 asserted one ``<image>`` per input; we encode each one, with the text between them
    encoded as v0 encoded the text around its one image."""
    one = {"conversation": [{"input": "<image>\nLeft or right?", "output": "Left."}]}
    two = {"conversation": [{"input": "<image> and <image>\nLeft or right?", "output": "Left."}]}
    with pytest.raises(AssertionError):
        v0.encode_fn(copy.deepcopy(two), bos_tokenizer, 4096, with_image_token=True)
    got = encode_fn(two, bos_tokenizer, 4096, with_image_token=True)
    assert got["input_ids"].count(constants.IMAGE_TOKEN_INDEX) == 2
    # Cut at the first image, the rest is v0's encoding of a one-image input.
    first = got["input_ids"].index(constants.IMAGE_TOKEN_INDEX)
    rest = {"conversation": [{"input": " and <image>\nLeft or right?", "output": "Left."}]}
    theirs = v0.encode_fn(rest, bos_tokenizer, 4096, with_image_token=True)
    assert got["input_ids"][first + 1:] == theirs["input_ids"][1:]  # v0's BOS is ours at 0
    assert got["labels"][first + 1:] == theirs["labels"][1:]
    assert encode_fn(one, bos_tokenizer, 4096, with_image_token=True) == v0.encode_fn(
        copy.deepcopy(one), bos_tokenizer, 4096, with_image_token=True)


def test_tokenizer_without_bos(v0, nobos_tokenizer):
    """A non-Qwen tokenizer without BOS: v0 crashed (``list += None``); we add no BOS, which is
    v0's layout with an empty BOS list."""
    example = _v0_apply(v0, "alpaca", RECORDS["alpaca"][1], "default")
    assert nobos_tokenizer.bos_token_id is None
    with pytest.raises(TypeError):
        v0.encode_fn(copy.deepcopy(example), nobos_tokenizer, 4096)
    expected = v0.encode_fn(copy.deepcopy(example), as_v0_saw_it(nobos_tokenizer, []), 4096)
    assert encode_fn(example, nobos_tokenizer, 4096) == expected


class _NoEos:
    """A tokenizer whose ``eos_token`` is unset."""

    def __init__(self, inner):
        self.inner = inner
        self.bos_token_id = inner.bos_token_id
        self.eos_token_id = None

    def encode(self, text, add_special_tokens=True):
        return self.inner.encode(text, add_special_tokens=add_special_tokens)


def test_missing_eos_is_a_config_error(v0, bos_tokenizer):
    """v0 crashed when a turn needed EOS and the tokenizer had none (assert for Qwen, TypeError
    otherwise); we say what to set. Turns that need no EOS encode as in v0."""
    tok = _NoEos(bos_tokenizer)
    example = _v0_apply(v0, "alpaca", RECORDS["alpaca"][1], "default")
    with pytest.raises(TypeError):
        v0.encode_fn(copy.deepcopy(example), tok, 4096)
    with pytest.raises(ConfigError, match="eos_token"):
        encode_fn(example, tok, 4096)
    with pytest.raises(ConfigError, match="eos_token"):
        encode_batch([example], tok, 4096)
    pretrain = _v0_apply(v0, "pretrain", RECORDS["pretrain"][0], None)  # need_eos_token=False
    assert encode_fn(pretrain, tok, 4096) == v0.encode_fn(copy.deepcopy(pretrain), tok, 4096)


# --------------------------------------------------------------------------- deliberate
def test_msagent_string_records_are_parsed_not_executed(v0, tmp_path):
    """v0 ``eval()``-ed string records; ``ast.literal_eval`` gives the same messages for every
    literal (checked in RECORDS) and refuses code instead of running it."""
    marker = tmp_path / "ran"
    code = f"open({str(marker)!r}, 'w').write('x') and []"
    assert v0.DATASET_FORMAT_MAPPING["msagent_react"]({"conversations": code}) == {
        "conversation": []}
    assert marker.exists()  # v0 ran the data as code
    marker.unlink()
    with pytest.raises(DataError, match="not a Python literal"):
        DATASET_FORMAT_MAPPING["msagent_react"]({"conversations": code})
    assert not marker.exists()


def test_openai_null_loss_deliberate_difference_and_switch(v0):
    """``datasets`` stores a missing ``loss`` as None once any message has one; v0 read that as
    ``"None"`` -> untrained. We train those replies; ``null_loss_trains=False`` is v0."""
    record = {"messages": [{"role": "user", "content": "q1"},
                           {"role": "assistant", "content": "a1", "loss": False},
                           {"role": "user", "content": "q2"},
                           {"role": "assistant", "content": "a2", "loss": None}]}
    theirs = v0.DATASET_FORMAT_MAPPING["openai"](copy.deepcopy(record))
    assert [t["output_with_loss"] for t in theirs["conversation"]] == [False, False]
    ours = openai_map_fn(copy.deepcopy(record))
    assert [t["output_with_loss"] for t in ours["conversation"]] == [False, True]
    assert openai_map_fn(copy.deepcopy(record), null_loss_trains=False) == theirs


def test_openai_null_loss_through_the_pipeline(v0, bos_tokenizer):
    """Where it matters: a file where only some replies carry ``loss``."""
    datasets = pytest.importorskip("datasets")
    template = PROMPT_TEMPLATE.qwen_chat
    theirs = v0.process(
        datasets.Dataset.from_list(OPENAI_ROWS), tokenizer=bos_tokenizer, max_length=4096,
        dataset_map_fn=v0.DATASET_FORMAT_MAPPING["openai"],
        template_map_fn=partial(v0.template_map_fn.template_map_fn,
                                template=v0.PROMPT_TEMPLATE.qwen_chat),
        pack_to_max_length=False, remove_unused_columns=True, map_num_proc=1)

    def ours(map_fn):
        return process_hf_dataset(
            datasets.Dataset.from_list(OPENAI_ROWS), tokenizer=bos_tokenizer, max_length=4096,
            dataset_map_fn=map_fn, template_map_fn=template_map_fn_factory(template),
            pack_to_max_length=False, remove_unused_columns=True, map_num_proc=1, cache=False)

    switched = ours(partial(openai_map_fn, null_loss_trains=False))
    assert switched[:] == theirs.select_columns(["input_ids", "labels", "length"])[:]
    # v0 masked every reply of the first row ("loss" filled with None) and dropped the row;
    # by default we train its unmarked reply.
    default = ours(openai_map_fn)
    assert len(theirs) == 1 and len(default) == 2
    text = bos_tokenizer.decode([t for t in default["labels"][0] if t != -100])
    assert text == "red, green, blue<|im_end|>"
    assert default[1:] == switched[:]


# --------------------------------------------------------------------------- whole pipeline
PIPELINE_CASES = [
    ("alpaca", "default", "bos_tokenizer"),
    ("alpaca", "qwen_chat", "qwen2_tokenizer"),
    ("openai", "llama3_chat", "spm_tokenizer"),
    ("oasst1", "internlm2_chat", "bos_tokenizer"),
    ("msagent_react", "chatglm2", "chatglm"),
    ("pretrain", None, "spm_tokenizer"),
    ("wizardlm", "gemma", "qwen2_tokenizer_with_bos"),
]


# Arrow needs one type per column: `loss` is a bool or absent (stored as None) here.
OPENAI_ROWS = [
    {"messages": [{"role": "system", "content": "Be brief."},
                  {"role": "user", "content": "Numbers: "}, {"role": "user", "content": "0 1 2"},
                  {"role": "assistant", "content": "3 4 5", "loss": False},
                  {"role": "user", "content": "Colours?"},
                  {"role": "assistant", "content": "red, green, blue"}]},
    {"messages": [{"role": "user", "content": "你好"},
                  {"role": "assistant", "content": "你好！", "loss": True}]},
]


def _rows(fmt, n=4):
    rows = OPENAI_ROWS if fmt == "openai" else RECORDS[fmt]
    rows = [copy.deepcopy(r) for r in rows] * n
    if fmt == "msagent_react":  # one column type for Arrow: the string form only
        rows = [{"conversations": str(r["conversations"])} for r in rows]
    return rows


def _our_map_fn(fmt, v0_reading=True):
    if fmt == "openai" and v0_reading:
        return partial(openai_map_fn, null_loss_trains=False)
    return DATASET_FORMAT_MAPPING[fmt]


def _get_tokenizer(request, kind):
    if kind == "chatglm":
        return ChatGLMTokenizer(request.getfixturevalue("bos_tokenizer"))
    return request.getfixturevalue(kind)


@pytest.mark.parametrize("fmt, template_name, kind", PIPELINE_CASES)
def test_process_hf_dataset_equals_v0_process(v0, request, fmt, template_name, kind):
    """Unpacked rows of ``process_hf_dataset`` equal v0's ``process`` row for row."""
    datasets = pytest.importorskip("datasets")
    tokenizer = _get_tokenizer(request, kind)
    max_length = 96  # long enough for every case to keep rows, short enough to cut some
    template = PROMPT_TEMPLATE[template_name] if template_name else None
    theirs = v0.process(
        datasets.Dataset.from_list(_rows(fmt)), tokenizer=as_v0_saw_it(tokenizer),
        max_length=max_length, dataset_map_fn=v0.DATASET_FORMAT_MAPPING[fmt],
        template_map_fn=None if template is None else partial(
            v0.template_map_fn.template_map_fn, template=v0.PROMPT_TEMPLATE[template_name]),
        pack_to_max_length=False, remove_unused_columns=True, map_num_proc=1)
    assert len(theirs) > 0

    def ours(v0_reading):
        return process_hf_dataset(
            datasets.Dataset.from_list(_rows(fmt)), tokenizer=tokenizer, max_length=max_length,
            dataset_map_fn=_our_map_fn(fmt, v0_reading),
            template_map_fn=None if template is None else template_map_fn_factory(template),
            pack_to_max_length=False, remove_unused_columns=True, map_num_proc=1, cache=False)

    got = ours(v0_reading=True)  # for openai: v0's reading of null-filled `loss`
    for column in ("input_ids", "labels", "length"):
        assert got[column] == theirs[column], column
    assert got.length == theirs.length


@pytest.mark.parametrize("template_name", [None, "default"])
def test_prompt_only_rows_of_empty_conversations(v0, bos_tokenizer, template_name):
    """With ``input_ids_with_output=False`` and no template, v0 kept an empty row for every
    empty conversation (only its template step filtered them); ``process_hf_dataset`` drops
    them whether or not a template is set. With a template both drop them."""
    datasets = pytest.importorskip("datasets")
    rows = RECORDS["alpaca"]  # one of them is "<nooutput>": an empty conversation
    v0_template = None if template_name is None else partial(
        v0.template_map_fn.template_map_fn, template=v0.PROMPT_TEMPLATE[template_name])
    theirs = v0.process(
        datasets.Dataset.from_list(rows), tokenizer=bos_tokenizer, max_length=4096,
        dataset_map_fn=v0.DATASET_FORMAT_MAPPING["alpaca"], template_map_fn=v0_template,
        pack_to_max_length=False, remove_unused_columns=True, input_ids_with_output=False,
        map_num_proc=1)
    ours = process_hf_dataset(
        datasets.Dataset.from_list(rows), tokenizer=bos_tokenizer, max_length=4096,
        dataset_map_fn=DATASET_FORMAT_MAPPING["alpaca"],
        template_map_fn=template_name and template_map_fn_factory(template_name),
        pack_to_max_length=False, remove_unused_columns=True, input_ids_with_output=False,
        map_num_proc=1, cache=False)
    kept = [ids for ids in theirs["input_ids"] if ids]
    assert ours["input_ids"] == kept
    assert len(theirs) - len(kept) == (1 if template_name is None else 0)


@pytest.mark.parametrize("fmt, template_name, kind", PIPELINE_CASES[:3])
def test_packed_rows_hold_v0s_samples_whole(v0, request, fmt, template_name, kind):
    """Packing deliberately differs: v0's ``Packer`` cuts the concatenated stream every
    ``max_length`` tokens (samples split across rows); ours keeps samples whole. The samples
    inside our rows are exactly v0's unpacked samples."""
    datasets = pytest.importorskip("datasets")
    tokenizer = _get_tokenizer(request, kind)
    max_length = 128
    v0_template = partial(v0.template_map_fn.template_map_fn,
                          template=v0.PROMPT_TEMPLATE[template_name])
    kwargs = dict(tokenizer=as_v0_saw_it(tokenizer), max_length=max_length,
                  dataset_map_fn=v0.DATASET_FORMAT_MAPPING[fmt], template_map_fn=v0_template,
                  shuffle_before_pack=False, map_num_proc=1)
    unpacked = v0.process(datasets.Dataset.from_list(_rows(fmt)), pack_to_max_length=False,
                          remove_unused_columns=True, **kwargs)
    v0_packed = v0.process(datasets.Dataset.from_list(_rows(fmt)), pack_to_max_length=True,
                           **kwargs)
    ours = process_hf_dataset(
        datasets.Dataset.from_list(_rows(fmt)), tokenizer=tokenizer, max_length=max_length,
        dataset_map_fn=_our_map_fn(fmt),
        template_map_fn=template_map_fn_factory(PROMPT_TEMPLATE[template_name]),
        pack_to_max_length=True, map_num_proc=1, cache=False)
    samples = []
    for row in ours:
        bounds = row["cumulative_len"]
        assert len(row["input_ids"]) <= max_length
        for start, end in zip(bounds, bounds[1:]):
            samples.append((row["input_ids"][start:end], row["labels"][start:end]))
    expected = list(zip(unpacked["input_ids"], unpacked["labels"]))
    assert sorted(samples) == sorted(expected)
    # v0 instead cut the stream of the same samples into rows of exactly max_length and
    # dropped the tail of its last map batch; we keep every token.
    stream = [t for ids in unpacked["input_ids"] for t in ids]
    assert len(v0_packed) >= 1 and all(len(ids) == max_length for ids in v0_packed["input_ids"])
    v0_stream = [t for ids in v0_packed["input_ids"] for t in ids]
    assert v0_stream == stream[:len(v0_stream)]
    assert sum(len(ids) for ids in ours["input_ids"]) == len(stream)


@pytest.mark.parametrize("fmt, template_name, kind", PIPELINE_CASES[:3])
def test_packing_v0_switch_gives_v0s_packed_rows(v0, request, fmt, template_name, kind):
    """``packing='v0'`` restores v0's packing: the rows of v0's own ``process`` (stream cut
    every ``max_length`` tokens, tail dropped), with the same varlen boundaries."""
    datasets = pytest.importorskip("datasets")
    tokenizer = _get_tokenizer(request, kind)
    max_length = 128
    v0_packed = v0.process(
        datasets.Dataset.from_list(_rows(fmt)), tokenizer=as_v0_saw_it(tokenizer),
        max_length=max_length, dataset_map_fn=v0.DATASET_FORMAT_MAPPING[fmt],
        template_map_fn=partial(v0.template_map_fn.template_map_fn,
                                template=v0.PROMPT_TEMPLATE[template_name]),
        shuffle_before_pack=False, pack_to_max_length=True, use_varlen_attn=True,
        map_num_proc=1)
    ours = process_hf_dataset(
        datasets.Dataset.from_list(_rows(fmt)), tokenizer=tokenizer, max_length=max_length,
        dataset_map_fn=_our_map_fn(fmt),
        template_map_fn=template_map_fn_factory(PROMPT_TEMPLATE[template_name]),
        shuffle_before_pack=False, pack_to_max_length=True, use_varlen_attn=True,
        map_num_proc=1, cache=False, packing="v0")
    assert len(ours) == len(v0_packed) >= 1
    for column in ("input_ids", "labels", "cumulative_len", "position_ids"):
        assert ours[column] == v0_packed[column], column
