"""Dataset map fns and template_map_fn give XTuner v0.2.0's exact output.

The readable literal cases below document the behaviour; each is also checked against v0's own
function (the ``v0`` fixture, loaded from the 0.2.0 wheel by tests/v0_oracle.py), which is the
oracle. tests/dataset/test_v0_fidelity.py compares every map fn and template more widely.
"""
import copy
import functools

import pytest

from xtuner.dataset.map_fns import (
    DATASET_FORMAT_MAPPING,
    alpaca_map_fn,
    alpaca_zh_map_fn,
    arxiv_map_fn,
    code_alpaca_map_fn,
    colors_map_fn,
    crime_kg_assitant_map_fn,
    default_map_fn,
    law_reference_map_fn,
    llava_image_only_map_fn,
    llava_map_fn,
    medical_map_fn,
    msagent_react_map_fn,
    oasst1_map_fn,
    openai_map_fn,
    openorca_map_fn,
    pretrain_map_fn,
    sql_map_fn,
    stack_exchange_map_fn,
    template_map_fn,
    template_map_fn_factory,
    tiny_codes_map_fn,
    wizardlm_map_fn,
)
from xtuner.utils.errors import ConfigError, DataError
from xtuner.utils.templates import PROMPT_TEMPLATE, SYSTEM_TEMPLATE

CODER_SYS = (
    "You are a professional programer. Please provide the corresponding code based on the "
    "description of Human.\n"
)
LAWYER_SYS = "你现在是一名专业的中国律师，请根据用户的问题给出准确、有理有据的回复。\n"

TWO_TURNS = {
    "conversation": [
        {"system": "Be brief.", "input": "Hi", "output": "Hello"},
        {"input": "Bye", "output": "See you"},
    ]
}


def _v0_fn(v0, fn):
    """v0's map fn of the same name, called on a copy (v0's fns may edit their input)."""
    theirs = getattr(v0.dataset_map_fns, fn.__name__)
    return lambda example: theirs(copy.deepcopy(example))


def _v0_template(v0, example, name):
    return v0.template_map_fn.template_map_fn(copy.deepcopy(example), v0.PROMPT_TEMPLATE[name])


# --------------------------------------------------------------------------- template_map_fn
def test_template_map_fn_qwen_chat_two_turns_with_system(v0):
    example = copy.deepcopy(TWO_TURNS)
    out = template_map_fn(example, PROMPT_TEMPLATE.qwen_chat)
    assert out == _v0_template(v0, TWO_TURNS, "qwen_chat")
    assert out == {
        "conversation": [
            {
                "system": "Be brief.",
                "input": (
                    "<|im_start|>system\nBe brief.<|im_end|>\n"
                    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
                ),
                "output": "Hello<|im_end|>",
                "need_eos_token": False,
                "sep": "\n",
            },
            {
                "input": "<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n",
                "output": "See you<|im_end|>",
                "need_eos_token": False,
                "sep": "\n",
            },
        ]
    }
    assert example == TWO_TURNS  # the input row is not modified


def test_template_map_fn_default_two_turns_with_system(v0):
    out = template_map_fn(copy.deepcopy(TWO_TURNS), PROMPT_TEMPLATE.default)
    assert out == _v0_template(v0, TWO_TURNS, "default")
    assert out == {
        "conversation": [
            {
                "system": "Be brief.",
                "input": "<|System|>:Be brief.\n<|User|>:Hi\n<|Bot|>:",
                "output": "Hello",
                "need_eos_token": True,
                "sep": "\n",
            },
            {
                "input": "<|User|>:Bye\n<|Bot|>:",
                "output": "See you",
                "need_eos_token": True,
                "sep": "\n",
            },
        ]
    }


def test_template_map_fn_round_numbers_and_missing_sep(v0):
    out = template_map_fn(copy.deepcopy(TWO_TURNS), PROMPT_TEMPLATE.chatglm2)
    assert out == _v0_template(v0, TWO_TURNS, "chatglm2")
    assert [t["input"] for t in out["conversation"]] == [
        "Be brief.\n[Round 1]\n\n问：Hi\n\n答：",
        "[Round 2]\n\n问：Bye\n\n答：",
    ]
    assert [t["sep"] for t in out["conversation"]] == ["\n\n", "\n\n"]
    # llama3_chat has no SEP: sep defaults to "".
    out = template_map_fn(copy.deepcopy(TWO_TURNS), PROMPT_TEMPLATE.llama3_chat)
    assert out == _v0_template(v0, TWO_TURNS, "llama3_chat")
    assert out["conversation"][1] == {
        "input": (
            "<|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n"
        ),
        "output": "See you<|eot_id|>",
        "need_eos_token": False,
        "sep": "",
    }


def test_template_map_fn_empty_input_and_system_and_overrides(v0):
    example = {
        "conversation": [
            # pre-training style turn: no input, empty system, explicit flags
            {"system": "", "input": None, "output": "text", "need_eos_token": False, "sep": "X"},
            {"output": "more", "output_with_loss": False},
        ]
    }
    out = template_map_fn(example, PROMPT_TEMPLATE.internlm2_chat)
    assert out == _v0_template(v0, example, "internlm2_chat")
    assert out == {
        "conversation": [
            {
                "system": "",
                "input": "<|im_start|>user\n<|im_end|>\n<|im_start|>assistant\n",
                "output": "text<|im_end|>",
                "need_eos_token": False,
                "sep": "\n",
            },
            {
                "input": "<|im_start|>user\n<|im_end|>\n<|im_start|>assistant\n",
                "output": "more<|im_end|>",
                "output_with_loss": False,
                "need_eos_token": False,
                "sep": "\n",
            },
        ]
    }
    # default has no SUFFIX: output untouched, v0's template overrides need_eos_token.
    turn = {"input": "a", "output": "b", "need_eos_token": False}
    out = template_map_fn({"conversation": [turn]}, PROMPT_TEMPLATE.default)
    assert out == _v0_template(v0, {"conversation": [turn]}, "default")
    assert out["conversation"][0]["need_eos_token"] is True
    assert out["conversation"][0]["output"] == "b"
    assert template_map_fn({}, PROMPT_TEMPLATE.default) == _v0_template(v0, {}, "default")
    assert template_map_fn({}, PROMPT_TEMPLATE.default) == {"conversation": []}


def test_template_map_fn_system_with_template_without_system_field(v0):
    example = {"conversation": [{"input": "q", "output": "a"}]}
    out = template_map_fn(example, PROMPT_TEMPLATE.minicpm)
    assert out == _v0_template(v0, example, "minicpm")
    assert out["conversation"][0]["input"] == "<用户> q <AI>"
    # v0 died with AttributeError ('SYSTEM'); we name the problem.
    with pytest.raises(AttributeError):
        _v0_template(v0, TWO_TURNS, "minicpm")
    with pytest.raises(DataError, match="no SYSTEM field"):
        template_map_fn(copy.deepcopy(TWO_TURNS), PROMPT_TEMPLATE.minicpm)


def test_template_map_fn_accepts_plain_dict_template():
    plain = PROMPT_TEMPLATE.qwen_chat.to_dict()
    expected = template_map_fn(copy.deepcopy(TWO_TURNS), PROMPT_TEMPLATE.qwen_chat)
    assert template_map_fn(copy.deepcopy(TWO_TURNS), plain) == expected


@pytest.mark.parametrize(
    "spec",
    [
        PROMPT_TEMPLATE.qwen_chat,
        "xtuner.utils.templates.PROMPT_TEMPLATE.qwen_chat",
        "qwen_chat",
    ],
)
def test_template_map_fn_factory(spec):
    fn = template_map_fn_factory(spec)
    assert isinstance(fn, functools.partial) and fn.func is template_map_fn
    assert fn.keywords["template"] == PROMPT_TEMPLATE.qwen_chat
    assert fn(copy.deepcopy(TWO_TURNS)) == template_map_fn(
        copy.deepcopy(TWO_TURNS), PROMPT_TEMPLATE.qwen_chat
    )


def test_template_map_fn_factory_v0_dotted_path():
    # What a config dumped by v0 holds.
    fn = template_map_fn_factory("xtuner.utils.PROMPT_TEMPLATE.qwen_chat")
    assert fn.keywords["template"] == PROMPT_TEMPLATE.qwen_chat


@pytest.mark.parametrize(
    "spec, message",
    [
        ("xtuner.utils.templates.PROMPT_TEMPLATE.no_such", "cannot resolve"),
        ("no_such_module.PROMPT", "cannot resolve"),
        ("qwen", "unknown prompt template 'qwen'"),
        ("xtuner.utils.templates.SYSTEM_TEMPLATE.alpaca", "must be a mapping"),
        (dict(SYSTEM="{system}"), "must be a mapping"),
    ],
)
def test_template_map_fn_factory_errors(spec, message):
    with pytest.raises(ConfigError, match=message):
        template_map_fn_factory(spec)


# --------------------------------------------------------------------------- single-turn fns
@pytest.mark.parametrize(
    "fn, example, expected",
    [
        (
            # no system prompt: v0's alpaca configs gave SYSTEM_TEMPLATE.alpaca only to the
            # evaluation hook
            alpaca_map_fn,
            {"instruction": "Add.", "input": "1+1", "output": "2"},
            [{"input": "Add.\n1+1", "output": "2"}],
        ),
        (
            # empty input keeps the "\n", as in v0
            alpaca_map_fn,
            {"instruction": "Say hi.", "input": "", "output": "hi"},
            [{"input": "Say hi.\n", "output": "hi"}],
        ),
        (alpaca_map_fn, {"instruction": "x", "input": "", "output": "<nooutput>"}, []),
        (
            alpaca_zh_map_fn,
            {"instruction_zh": "翻译", "input_zh": "cat", "output_zh": "猫"},
            [{"input": "翻译\ncat", "output": "猫"}],
        ),
        (
            arxiv_map_fn,
            {"abstract": "We study X.", "title": "On X"},
            [{"system": SYSTEM_TEMPLATE.arxiv_gentile, "input": "We study X.", "output": "On X"}],
        ),
        (
            code_alpaca_map_fn,
            {"prompt": "sum a list", "completion": "sum(xs)"},
            [{"system": CODER_SYS, "input": "sum a list", "output": "sum(xs)"}],
        ),
        (
            colors_map_fn,
            {"description": "Bud: A light: yellowish green ", "color": "#c5e17a"},
            [
                {
                    "system": SYSTEM_TEMPLATE.colorist,
                    "input": "A light: yellowish green",
                    "output": "#c5e17a",
                }
            ],
        ),
        (
            colors_map_fn,
            {"description": "no colon here", "color": "#000000"},
            [{"system": SYSTEM_TEMPLATE.colorist, "input": "", "output": "#000000"}],
        ),
        (
            crime_kg_assitant_map_fn,
            {"input": "盗窃罪如何量刑？", "output": "视情节而定。"},
            [{"system": LAWYER_SYS, "input": "盗窃罪如何量刑？", "output": "视情节而定。"}],
        ),
        (default_map_fn, {"input": "a", "output": "b", "x": 1}, [{"input": "a", "output": "b"}]),
        (
            law_reference_map_fn,
            {"question": "问", "answer": "答"},
            [{"system": LAWYER_SYS, "input": "问", "output": "答"}],
        ),
        (
            medical_map_fn,
            {"instruction": "头痛怎么办？", "input": "", "output": "多休息。"},
            [
                {
                    "system": "如果你是一名医生，请根据患者的描述回答医学问题。\n",
                    "input": "头痛怎么办？\n",
                    "output": "多休息。",
                }
            ],
        ),
        (
            openorca_map_fn,
            {"system_prompt": "", "question": "Q", "response": "R", "id": "1"},
            [{"system": "", "input": "Q", "output": "R"}],
        ),
        (
            pretrain_map_fn,
            {"text": "\n  Some document.  \n"},
            [{"input": "", "output": "Some document.", "need_eos_token": False}],
        ),
        (
            sql_map_fn,
            {"context": "CREATE TABLE t (a INT)", "question": "count rows", "answer": "SELECT 1"},
            [
                {
                    "system": SYSTEM_TEMPLATE.sql,
                    "input": "CREATE TABLE t (a INT)\ncount rows",
                    "output": "SELECT 1",
                }
            ],
        ),
        (
            stack_exchange_map_fn,
            {"question": "Why?", "response": "Because."},
            [{"input": "Why?", "output": "Because."}],
        ),
        (
            tiny_codes_map_fn,
            {"prompt": "write fizzbuzz", "response": "..."},
            [{"system": CODER_SYS, "input": "write fizzbuzz", "output": "..."}],
        ),
    ],
)
def test_single_turn_map_fns(v0, fn, example, expected):
    assert fn(example) == {"conversation": expected}
    assert fn(example) == _v0_fn(v0, fn)(example)


# --------------------------------------------------------------------------- multi-turn fns
def test_oasst1_map_fn_splits_and_drops_dangling_question(v0):
    text = (
        "### Human: Can you explain X?### Assistant: Sure! X is Y."
        "### Human: Why?###Assistant:Because Z.### Human: Thanks, one more?"
    )
    assert oasst1_map_fn({"text": text}) == _v0_fn(v0, oasst1_map_fn)({"text": text})
    assert oasst1_map_fn({"text": text}) == {
        "conversation": [
            {"input": "Can you explain X?", "output": "Sure! X is Y."},
            {"input": "Why?", "output": "Because Z."},
        ]
    }
    # Pieces with another speaker are dropped; kept pieces are paired in order, unchecked.
    text = "### Assistant: a### Other: b### Human: c"
    assert oasst1_map_fn({"text": text}) == {"conversation": [{"input": "a", "output": "c"}]}
    assert oasst1_map_fn({"text": text}) == _v0_fn(v0, oasst1_map_fn)({"text": text})


def test_openai_map_fn(v0):
    example = {
        "messages": [
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
        ]
    }
    assert openai_map_fn(example) == {
        "conversation": [
            {
                "system": "Be brief.",
                "input": "Tell me a story.",
                "output": "Once.",
                "output_with_loss": False,
            },
            {"system": "", "input": "More", "output": "Twice.", "output_with_loss": True},
            {"system": "unused", "input": "Again", "output": "Thrice.", "output_with_loss": False},
        ]
    }
    assert openai_map_fn(example) == _v0_fn(v0, openai_map_fn)(example)
    assert example["messages"][0]["content"] == "leading, skipped"  # input not modified


@pytest.mark.parametrize(
    "loss, expected",
    [
        (True, True),
        ("true", True),
        ("True", True),
        (False, False),
        ("False", False),
        ("no", False),
        (0, False),
        (1, False),  # v0 parses str(loss): only "true" (any case) trains
        (None, True),  # deliberate fix: datasets' null fill means "not given"
        ("absent", True),
    ],
)
def test_openai_map_fn_loss_parsing(v0, loss, expected):
    msg = {"role": "assistant", "content": "a", "loss": loss}
    if loss == "absent":
        del msg["loss"]
    example = {"messages": [{"role": "user", "content": "q"}, msg]}
    assert openai_map_fn(example)["conversation"][0]["output_with_loss"] is expected
    # The switch gives v0's reading of every value, None included (v0: "None" -> untrained).
    theirs = _v0_fn(v0, openai_map_fn)(example)
    assert openai_map_fn(example, null_loss_trains=False) == theirs
    if loss is not None:
        assert openai_map_fn(example) == theirs
    else:
        assert theirs["conversation"][0]["output_with_loss"] is False


def test_openai_map_fn_through_datasets_null_fill():
    datasets = pytest.importorskip("datasets")
    rows = [
        {
            "messages": [
                {"role": "user", "content": "q1"},
                {"role": "assistant", "content": "a1", "loss": False},
                {"role": "user", "content": "q2"},
                {"role": "assistant", "content": "a2"},  # Arrow stores loss=None here
            ]
        }
    ]
    ds = datasets.Dataset.from_list(rows).map(openai_map_fn, remove_columns=["messages"])
    assert [t["output_with_loss"] for t in ds[0]["conversation"]] == [False, True]
    v0_reading = functools.partial(openai_map_fn, null_loss_trains=False)
    ds = datasets.Dataset.from_list(rows).map(v0_reading, remove_columns=["messages"])
    assert [t["output_with_loss"] for t in ds[0]["conversation"]] == [False, False]


def test_openai_map_fn_unknown_role():
    with pytest.raises(DataError, match="unsupported role 'tool'"):
        openai_map_fn({"messages": [{"role": "tool", "content": "x"}]})


def test_wizardlm_map_fn(v0):
    example = {
        "conversations": [
            {"from": "gpt", "value": "skipped"},
            {"from": "human", "value": "Hi. "},
            {"from": "human", "value": "Help?"},
            {"from": "gpt", "value": "Sure."},
            {"from": "human", "value": "Bye"},
            {"from": "gpt", "value": "Bye!"},
            {"from": "human", "value": "dropped"},
        ]
    }
    assert wizardlm_map_fn(example) == {
        "conversation": [
            {"input": "Hi. Help?", "output": "Sure."},
            {"input": "Bye", "output": "Bye!"},
        ]
    }
    assert wizardlm_map_fn(example) == _v0_fn(v0, wizardlm_map_fn)(example)
    with pytest.raises(NotImplementedError):  # v0
        _v0_fn(v0, wizardlm_map_fn)({"conversations": [{"from": "system", "value": "s"}]})
    with pytest.raises(DataError, match="unknown speaker 'system'"):
        wizardlm_map_fn({"conversations": [{"from": "system", "value": "s"}]})


def test_llava_map_fn_moves_image_token_first(v0):
    example = {
        "id": "1",
        "image": "a.jpg",
        "conversations": [
            {"from": "human", "value": "What is this?\n<image>"},
            {"from": "gpt", "value": "A cat."},
            {"from": "human", "value": "Colour?"},
            {"from": "gpt", "value": "Black."},
            {"from": "human", "value": " <image> twice <image> "},
            {"from": "gpt", "value": "Yes."},
        ],
    }
    original = copy.deepcopy(example)
    assert llava_map_fn(example) == {
        "conversation": [
            {"input": "<image>\nWhat is this?", "output": "A cat."},
            {"input": "Colour?", "output": "Black."},
            {"input": "<image>\ntwice", "output": "Yes."},
        ]
    }
    assert llava_map_fn(example) == _v0_fn(v0, llava_map_fn)(example)
    assert example == original  # v0 rewrote msg["value"] in place; we do not
    # An image-only question becomes just the token (the trailing "\n" is stripped).
    only = {
        "conversations": [{"from": "human", "value": "<image>\n"}, {"from": "gpt", "value": "x"}]
    }
    assert llava_map_fn(only) == {"conversation": [{"input": "<image>", "output": "x"}]}
    assert llava_map_fn(only) == _v0_fn(v0, llava_map_fn)(only)


def test_llava_image_only_map_fn(v0):
    example = {
        "conversations": [
            {"from": "gpt", "value": "skipped"},
            {"from": "human", "value": "Describe <image> briefly."},
            {"from": "gpt", "value": "A dog on grass."},
        ]
    }
    assert llava_image_only_map_fn(example) == {
        "conversation": [{"input": "<image>", "output": "A dog on grass."}]
    }
    assert llava_image_only_map_fn(example) == _v0_fn(v0, llava_image_only_map_fn)(example)
    with pytest.raises(AssertionError):  # v0
        _v0_fn(v0, llava_image_only_map_fn)(
            {"conversations": [{"from": "human", "value": "no image"}]})
    with pytest.raises(DataError, match="must contain '<image>'"):
        llava_image_only_map_fn({"conversations": [{"from": "human", "value": "no image"}]})


MSAGENT_SYSTEM_VALUE = (
    'You are an agent. Tools: {"name": "weather", "description": "查询天气", '
    '"paths": [{"parameters": [{"name": "city", "description": "城市"}]}]} and '
    '{"name": "calc", "description": "calculator"} {broken'
)
MSAGENT_THINK = (
    '<|startofthink|>```JSON\n{"api_name": "weather", "parameters": {"city": "北京"}}\n'
    "```<|endofthink|>"
)
MSAGENT_TOOL_PROMPT = (
    "你是一个可以调用外部工具的助手，可以使用的工具包括：\n"
    "{'weather': \"查询天气\\n输入参数: {'city': '城市'}\", 'calc': 'calculator'}\n"
    "如果使用工具请遵循以下格式回复：\n```\n"
    "Thought:思考你当前步骤需要解决什么问题，是否需要使用工具\n"
    "Action:工具名称，你的工具必须从 [['weather', 'calc']] 选择\n"
    "Action Input:工具输入参数\n```\n工具返回按照以下格式回复：\n```\n"
    "Response:调用工具后的结果\n```\n如果你已经知道了答案，或者你不需要工具，"
    "请遵循以下格式回复\n```\n"
    "Thought:给出最终答案的思考过程\n"
    "Final Answer:最终答案\n```\n开始!\n"
)


@pytest.mark.parametrize("as_string", [False, True])
def test_msagent_react_map_fn_tool_call_and_answer(v0, as_string):
    conversations = [
        {"from": "system", "value": MSAGENT_SYSTEM_VALUE},
        {"from": "user", "value": "北京天气？"},
        {
            "from": "assistant",
            "value": "我来查一下"
            + MSAGENT_THINK
            + '<|startofexec|>```JSON\n{"result": "晴"}\n```<|endofexec|>\n北京今天晴。\n',
        },
        {"from": "user", "value": "谢谢"},
        {"from": "assistant", "value": "不客气"},
    ]
    example = {"conversations": str(conversations) if as_string else conversations}
    assert msagent_react_map_fn(example) == {
        "conversation": [
            {
                "system": MSAGENT_TOOL_PROMPT,
                "input": "北京天气？\n",
                "output": "Thought:我来查一下\nAction:weather\nAction Input:{'city': '北京'}\n\n",
            },
            {"system": "Response:{'result': '晴'}\n", "output": "Final Answer:北京今天晴。\n\n"},
            {"system": "", "input": "谢谢\n", "output": "Final Answer:不客气\n"},
        ]
    }
    assert msagent_react_map_fn(example) == _v0_fn(v0, msagent_react_map_fn)(example)


def test_msagent_react_map_fn_invalid_records(v0):
    user = {"from": "user", "value": "q"}
    theirs = _v0_fn(v0, msagent_react_map_fn)
    # too short
    assert msagent_react_map_fn({"conversations": [user]}) == {"conversation": []}
    assert theirs({"conversations": [user]}) == {"conversation": []}
    # a think block that is not JSON drops the whole record
    bad_think = {"from": "assistant", "value": "<|startofthink|>not json<|endofthink|>"}
    assert msagent_react_map_fn({"conversations": [user, bad_think]}) == {"conversation": []}
    assert theirs({"conversations": [user, bad_think]}) == {"conversation": []}
    # two exec blocks drop the whole record
    two_exec = {"from": "assistant", "value": "a<|startofexec|>b<|startofexec|>c"}
    assert msagent_react_map_fn({"conversations": [user, two_exec]}) == {"conversation": []}
    assert theirs({"conversations": [user, two_exec]}) == {"conversation": []}
    # an exec payload that is not JSON only loses the response turn
    plain_exec = {
        "from": "assistant",
        "value": MSAGENT_THINK + "<|startofexec|>plain<|endofexec|>Final Answer: y",
    }
    assert theirs({"conversations": [user, plain_exec]}) == msagent_react_map_fn(
        {"conversations": [user, plain_exec]})
    assert msagent_react_map_fn({"conversations": [user, plain_exec]}) == {
        "conversation": [
            {
                "system": "",
                "input": "q\n",
                "output": "Action:weather\nAction Input:{'city': '北京'}\n\n",
            }
        ]
    }


# --------------------------------------------------------------------------- registry / exports
def test_dataset_format_mapping_matches_v0(v0):
    assert {k: f.__name__ for k, f in DATASET_FORMAT_MAPPING.items()} == {
        k: f.__name__ for k, f in v0.DATASET_FORMAT_MAPPING.items()}
    assert DATASET_FORMAT_MAPPING == {
        "alpaca": alpaca_map_fn,
        "alpaca_zh": alpaca_zh_map_fn,
        "arxiv": arxiv_map_fn,
        "code_alpaca": code_alpaca_map_fn,
        "colors": colors_map_fn,
        "crime_kg_assitan": crime_kg_assitant_map_fn,  # v0's key, missing "t" included
        "default": default_map_fn,
        "law_reference": law_reference_map_fn,
        "llava_image_only": llava_image_only_map_fn,
        "llava": llava_map_fn,
        "medical": medical_map_fn,
        "msagent_react": msagent_react_map_fn,
        "oasst1": oasst1_map_fn,
        "openai": openai_map_fn,
        "openorca": openorca_map_fn,
        "pretrain": pretrain_map_fn,
        "sql": sql_map_fn,
        "stack_exchange": stack_exchange_map_fn,
        "tiny_codes": tiny_codes_map_fn,
        "wizardlm": wizardlm_map_fn,
    }


def test_v0_module_paths_still_import():
    from xtuner.dataset.map_fns.dataset_map_fns.msagent_map_fn import msagent_react_map_fn as m
    from xtuner.dataset.map_fns.template_map_fn import template_map_fn_factory as f

    assert m is msagent_react_map_fn and f is template_map_fn_factory


def test_pipeline_alpaca_to_qwen_chat_with_datasets(v0):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list(
        [
            {"instruction": "Add.", "input": "1+1", "output": "2"},
            {"instruction": "x", "input": "", "output": "<nooutput>"},
        ]
    )
    ds = ds.map(alpaca_map_fn, remove_columns=ds.column_names)
    ds = ds.map(template_map_fn_factory("qwen_chat"))
    ds = ds.filter(lambda row: len(row["conversation"]) > 0)
    assert ds.to_list() == [
        {
            "conversation": [
                {
                    "input": "<|im_start|>user\nAdd.\n1+1<|im_end|>\n<|im_start|>assistant\n",
                    "output": "2<|im_end|>",
                    "need_eos_token": False,
                    "sep": "\n",
                }
            ]
        }
    ]
    theirs = _v0_template(v0, _v0_fn(v0, alpaca_map_fn)(
        {"instruction": "Add.", "input": "1+1", "output": "2"}), "qwen_chat")
    assert ds.to_list() == [theirs]
