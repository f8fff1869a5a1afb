"""PROMPT_TEMPLATE / SYSTEM_TEMPLATE must equal XTuner v0.2.0's strings exactly.

The oracle is v0's own ``xtuner/utils/templates.py`` and ``constants.py`` (the ``v0`` fixture,
loaded from the 0.2.0 wheel by tests/v0_oracle.py); the literal cases below document the
quirks a reader might be tempted to "fix".
"""
import string

import pytest
from mmengine.config import ConfigDict

from xtuner.utils import constants
from xtuner.utils.templates import PROMPT_TEMPLATE, SYSTEM_TEMPLATE

V0_TEMPLATE_NAMES = [
    "default", "zephyr", "internlm_chat", "internlm2_chat", "moss_sft", "llama2_chat",
    "code_llama_chat", "chatglm2", "chatglm3", "qwen_chat", "baichuan_chat", "baichuan2_chat",
    "wizardlm", "wizardcoder", "vicuna", "deepseek_coder", "deepseekcoder", "deepseek_moe",
    "deepseek_v2", "mistral", "mixtral", "minicpm", "minicpm3", "gemma", "cohere_chat",
    "llama3_chat", "phi3_chat",
]  # fmt: skip
FIELDS = {"SYSTEM", "INSTRUCTION", "SUFFIX", "SUFFIX_AS_EOS", "SEP", "STOP_WORDS"}


def _placeholders(fmt: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(fmt) if name is not None}


def test_prompt_template_names_and_order_match_v0(v0):
    assert isinstance(PROMPT_TEMPLATE, ConfigDict)
    assert list(PROMPT_TEMPLATE) == list(v0.PROMPT_TEMPLATE) == V0_TEMPLATE_NAMES


def test_system_template_names_match_v0(v0):
    assert isinstance(SYSTEM_TEMPLATE, ConfigDict)
    assert list(SYSTEM_TEMPLATE) == list(v0.SYSTEM_TEMPLATE)


@pytest.mark.parametrize("name", V0_TEMPLATE_NAMES)
def test_every_prompt_template_equals_v0(v0, name):
    """Same fields in the same order; every string, flag and stop word identical."""
    assert list(PROMPT_TEMPLATE[name].items()) == list(v0.PROMPT_TEMPLATE[name].items())


def test_every_system_template_equals_v0(v0):
    for name, text in v0.SYSTEM_TEMPLATE.items():
        assert SYSTEM_TEMPLATE[name] == text, name


@pytest.mark.parametrize("name", V0_TEMPLATE_NAMES)
def test_every_template_is_well_formed_and_formats(name):
    tpl = PROMPT_TEMPLATE[name]
    assert isinstance(tpl, ConfigDict)
    assert set(tpl) <= FIELDS and "INSTRUCTION" in tpl
    assert _placeholders(tpl.INSTRUCTION) <= {"input", "round"}
    assert "input" in _placeholders(tpl.INSTRUCTION)
    assert "{input}" not in tpl.INSTRUCTION.format(input="Q", round=3)
    assert "Q" in tpl.INSTRUCTION.format(input="Q", round=3)
    if "SYSTEM" in tpl:
        assert _placeholders(tpl.SYSTEM) == {"system"}
        assert "S-prompt" in tpl.SYSTEM.format(system="S-prompt")
    if "SUFFIX_AS_EOS" in tpl:
        assert isinstance(tpl.SUFFIX_AS_EOS, bool)
    if "STOP_WORDS" in tpl:
        assert tpl.STOP_WORDS and all(isinstance(w, str) and w for w in tpl.STOP_WORDS)


def test_qwen_chat_exact():
    assert PROMPT_TEMPLATE.qwen_chat.to_dict() == {
        "SYSTEM": "<|im_start|>system\n{system}<|im_end|>\n",
        "INSTRUCTION": "<|im_start|>user\n{input}<|im_end|>\n<|im_start|>assistant\n",
        "SUFFIX": "<|im_end|>",
        "SUFFIX_AS_EOS": True,
        "SEP": "\n",
        "STOP_WORDS": ["<|im_end|>", "<|endoftext|>"],
    }
    # minicpm3 is the same ChatML layout.
    assert PROMPT_TEMPLATE.minicpm3.to_dict() == PROMPT_TEMPLATE.qwen_chat.to_dict()


def test_internlm2_chat_exact():
    assert PROMPT_TEMPLATE.internlm2_chat.to_dict() == {
        "SYSTEM": "<|im_start|>system\n{system}<|im_end|>\n",
        "INSTRUCTION": "<|im_start|>user\n{input}<|im_end|>\n<|im_start|>assistant\n",
        "SUFFIX": "<|im_end|>",
        "SUFFIX_AS_EOS": True,
        "SEP": "\n",
        "STOP_WORDS": ["<|im_end|>"],
    }


def test_llama3_chat_exact_has_no_sep():
    assert PROMPT_TEMPLATE.llama3_chat.to_dict() == {
        "SYSTEM": "<|start_header_id|>system<|end_header_id|>\n\n{system}<|eot_id|>",
        "INSTRUCTION": (
            "<|start_header_id|>user<|end_header_id|>\n\n{input}<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n"
        ),
        "SUFFIX": "<|eot_id|>",
        "SUFFIX_AS_EOS": True,
        "STOP_WORDS": ["<|eot_id|>"],
    }


def test_default_and_internlm_chat_exact():
    assert PROMPT_TEMPLATE.default.to_dict() == {
        "SYSTEM": "<|System|>:{system}\n",
        "INSTRUCTION": "<|User|>:{input}\n<|Bot|>:",
        "SEP": "\n",
    }
    assert PROMPT_TEMPLATE.internlm_chat.to_dict() == {
        "SYSTEM": "<|System|>:{system}\n",
        "INSTRUCTION": "<|User|>:{input}<eoh>\n<|Bot|>:",
        "SUFFIX": "<eoa>",
        "SUFFIX_AS_EOS": True,
        "SEP": "\n",
        "STOP_WORDS": ["<eoa>"],
    }


def test_quirky_v0_strings_are_kept():
    # llama2_chat: Meta's default system prompt, then the user's, inside one [INST] block.
    assert PROMPT_TEMPLATE.llama2_chat.SYSTEM == (
        "[INST] <<SYS>>\n You are a helpful, respectful and honest assistant. Always answer as "
        "helpfully as possible, while being safe. Your answers should not include any harmful, "
        "unethical, racist, sexist, toxic, dangerous, or illegal content. Please ensure that your "
        "responses are socially unbiased and positive in nature.\n{system}\n<</SYS>>\n [/INST] "
    )
    # "DeepSeekCompany" (no space) is what v0 trained on; the alias is identical.
    assert "developed by DeepSeekCompany, and" in PROMPT_TEMPLATE.deepseek_coder.SYSTEM
    assert PROMPT_TEMPLATE.deepseekcoder.to_dict() == PROMPT_TEMPLATE.deepseek_coder.to_dict()
    assert PROMPT_TEMPLATE.deepseek_v2.SUFFIX == "<\uff5cend\u2581of\u2581sentence\uff5c>"
    assert PROMPT_TEMPLATE.deepseek_v2.STOP_WORDS == ["<\uff5cend\u2581of\u2581sentence\uff5c>"]
    assert PROMPT_TEMPLATE.chatglm2.INSTRUCTION == "[Round {round}]\n\n问：{input}\n\n答："
    assert PROMPT_TEMPLATE.chatglm2.SEP == "\n\n"
    assert PROMPT_TEMPLATE.vicuna.SYSTEM.endswith("user's questions. {system}\n ")
    assert PROMPT_TEMPLATE.wizardlm.to_dict() == PROMPT_TEMPLATE.vicuna.to_dict()
    assert PROMPT_TEMPLATE.minicpm.to_dict() == {"INSTRUCTION": "<用户> {input} <AI>", "SEP": "\n"}
    assert PROMPT_TEMPLATE.gemma.SUFFIX_AS_EOS is False
    assert PROMPT_TEMPLATE.code_llama_chat.to_dict() == {
        "SYSTEM": "{system}\n",
        "INSTRUCTION": "[INST] {input} [/INST]",
    }
    assert PROMPT_TEMPLATE.cohere_chat.SYSTEM == (
        "<|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>{system}<|END_OF_TURN_TOKEN|>"
    )


def test_system_template_exact():
    assert SYSTEM_TEMPLATE.alpaca == (
        "Below is an instruction that describes a task. "
        "Write a response that appropriately completes the request.\n"
    )
    assert SYSTEM_TEMPLATE.coder == (
        "You are a professional programer. Please provide the corresponding code based on the "
        "description of Human.\n"
    )
    assert SYSTEM_TEMPLATE.lawyer == (
        "你现在是一名专业的中国律师，请根据用户的问题给出准确、有理有据的回复。\n"
    )
    assert SYSTEM_TEMPLATE.medical == "如果你是一名医生，请根据患者的描述回答医学问题。\n"
    assert SYSTEM_TEMPLATE.moss_sft.format(bot_name="Moss").splitlines()[:2] == [
        "You are an AI assistant whose name is Moss.",
        "Capabilities and tools that Moss can possess.",
    ]
    assert SYSTEM_TEMPLATE.moss_sft.endswith("- Text-to-speech: disabled.\n")


def test_constants(v0):
    for name in ("IGNORE_INDEX", "DEFAULT_PAD_TOKEN_INDEX", "IMAGE_TOKEN_INDEX",
                 "DEFAULT_IMAGE_TOKEN"):
        assert getattr(constants, name) == getattr(v0.constants, name), name
    assert constants.IGNORE_INDEX == -100
    assert constants.DEFAULT_PAD_TOKEN_INDEX == 0
    assert constants.IMAGE_TOKEN_INDEX == -200
    assert constants.DEFAULT_IMAGE_TOKEN == "<image>"
