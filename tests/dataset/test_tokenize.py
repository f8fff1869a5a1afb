"""``encode_fn`` gives XTuner v0.2.0's exact ``input_ids`` and ``labels``.

The oracle is v0's own ``encode_fn`` (the ``v0`` fixture, loaded from the 0.2.0 wheel by
tests/v0_oracle.py). A few hand-computed literal cases pin the behaviour down on their own.
tests/dataset/test_v0_fidelity.py runs every map fn's records through both.
"""
from __future__ import annotations

import copy

import pytest
from v0_oracle import as_v0_saw_it

from xtuner.dataset import encode_fn
from xtuner.dataset.map_fns import alpaca_map_fn, openai_map_fn, pretrain_map_fn, template_map_fn
from xtuner.dataset.tokenize import encode_batch
from xtuner.utils.errors import DataError
from xtuner.utils.templates import PROMPT_TEMPLATE

IGNORE = -100


class ChatGLMTokenizer:
    """Stands in for THUDM's ChatGLM tokenizer: only the class name matters to encode_fn."""

    def __init__(self, inner):
        self.inner = inner
        self.bos_token_id = inner.bos_token_id
        self.eos_token_id = inner.eos_token_id

    def encode(self, text, add_special_tokens=True):
        return self.inner.encode(text, add_special_tokens=add_special_tokens)


CONVERSATIONS = {
    "single_turn": [
        {"input": "Give three tips for staying healthy.", "output": "Eat well, sleep, exercise."},
    ],
    "multi_turn_with_system": [
        {"system": "You are a helpful assistant.", "input": "What is the capital of France?",
         "output": "The capital of France is Paris."},
        {"input": "And of China?", "output": "中国的首都是北京。"},
        {"input": "Thanks!", "output": "You are welcome."},
    ],
    "pretrain_style": pretrain_map_fn(
        {"text": "  The quick brown fox jumps over the lazy dog.\n"})["conversation"],
    "output_without_loss": [
        {"input": "Hello", "output": "Hi there", "output_with_loss": False},
        {"input": "How are you today?", "output": "I am fine, thank you!"},
        {"input": "Bye", "output": "Bye!", "output_with_loss": False},
    ],
    "explicit_sep_and_no_eos": [
        {"input": "def add(a, b):", "output": "    return a + b", "sep": "\n\n",
         "need_eos_token": False},
        {"input": "for i in range(10):", "output": "    print(i)", "sep": "\n\n"},
    ],
    "empty_output": [{"input": "你好，世界！", "output": ""}],
    "alpaca": alpaca_map_fn({"instruction": "Translate to French", "input": "Hello, world!",
                             "output": "Bonjour le monde."})["conversation"],
    "openai": openai_map_fn({"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Numbers: "},
        {"role": "user", "content": "0 1 2"},
        {"role": "assistant", "content": "3 4 5", "loss": False},
        {"role": "user", "content": "Colours?"},
        {"role": "assistant", "content": "red, green, blue"},
    ]})["conversation"],
}

TOKENIZERS = ["bos_tokenizer", "spm_tokenizer", "qwen2_tokenizer", "qwen2_tokenizer_with_bos",
              "chatglm"]


@pytest.fixture(params=TOKENIZERS)
def tokenizer(request):
    if request.param == "chatglm":
        return ChatGLMTokenizer(request.getfixturevalue("bos_tokenizer"))
    return request.getfixturevalue(request.param)


@pytest.fixture
def encode_with_v0(v0, tokenizer):
    """v0's encode_fn, shown ``tokenizer`` under the class name transformers 4 gave it."""
    v0_tok = as_v0_saw_it(tokenizer)

    def encode(example, _tokenizer, max_length, input_ids_with_output=True):
        return v0.encode_fn(copy.deepcopy(example), v0_tok, max_length,
                            input_ids_with_output=input_ids_with_output)

    return encode


@pytest.mark.parametrize("template_name", [None, *PROMPT_TEMPLATE])
def test_encode_fn_matches_v0_for_every_template(tokenizer, encode_with_v0, template_name):
    checked = 0
    for conv_name, conversation in CONVERSATIONS.items():
        example = {"conversation": conversation}
        if template_name is not None:
            template = PROMPT_TEMPLATE[template_name]
            if "SYSTEM" not in template and any(t.get("system") for t in conversation):
                # v0 crashed with AttributeError here; xtuner says what is wrong.
                with pytest.raises(DataError, match="no SYSTEM field"):
                    template_map_fn(example, template)
                continue
            example = template_map_fn(example, template)
        full = encode_with_v0(example, tokenizer, max_length=2048)
        n = len(full["input_ids"])
        assert n > 2, conv_name  # so the truncated cases really cut
        for max_length in (2048, n - 1, n // 2, 1):
            expected = encode_with_v0(example, tokenizer, max_length)
            got = encode_fn(example, tokenizer, max_length)
            assert got == expected, (template_name, conv_name, max_length)
            assert len(got["input_ids"]) == len(got["labels"]) == min(max_length,
                                                                      len(full["input_ids"]))
        if len(conversation) == 1:
            expected = encode_with_v0(example, tokenizer, 2048, input_ids_with_output=False)
            got = encode_fn(example, tokenizer, 2048, input_ids_with_output=False)
            assert got == expected, (template_name, conv_name, "prompt only")
        checked += 1
    assert checked >= len(CONVERSATIONS) - 3  # minicpm (no SYSTEM) skips the 3 with a system


def test_multi_turn_without_output_is_refused(v0, bos_tokenizer):
    example = {"conversation": CONVERSATIONS["multi_turn_with_system"]}
    with pytest.raises(AssertionError):  # v0
        v0.encode_fn(copy.deepcopy(example), bos_tokenizer, 2048, input_ids_with_output=False)
    with pytest.raises(ValueError, match="this sample has 3 turns; set input_ids_with_output"):
        encode_fn(example, bos_tokenizer, 2048, input_ids_with_output=False)


# Hand-computed cases. Special tokens encode to single ids: with BOS the tokenizer has
# <s>=0, <|endoftext|>=1, <|pad|>=2, <|im_start|>=3, <|im_end|>=4; without BOS (Qwen2)
# <|endoftext|>=0, <|pad|>=1, <|im_start|>=2, <|im_end|>=3.
HAND_CONVERSATION = [
    # BOS, input, trained output, trained EOS, untrained SEP.
    {"input": "<|im_start|>", "output": "<|im_end|>", "sep": "<|pad|>"},
    # New BOS (previous turn ended in EOS); output untrained; no EOS, so no BOS next.
    {"input": "<|im_start|>", "output": "<|im_end|>", "need_eos_token": False,
     "output_with_loss": False},
    {"input": "<|im_start|>", "output": "<|im_end|>"},
]


def test_hand_computed_ids_with_bos(bos_tokenizer):
    got = encode_fn({"conversation": HAND_CONVERSATION}, bos_tokenizer, 2048)
    assert got["input_ids"] == [0, 3, 4, 1, 2, 0, 3, 4, 3, 4, 1]
    assert got["labels"] == [IGNORE, IGNORE, 4, 1, IGNORE, IGNORE, IGNORE, IGNORE, IGNORE, 4, 1]


def test_hand_computed_ids_qwen2_no_bos(qwen2_tokenizer, qwen2_tokenizer_with_bos):
    got = encode_fn({"conversation": HAND_CONVERSATION}, qwen2_tokenizer, 2048)
    assert got["input_ids"] == [2, 3, 0, 1, 2, 3, 2, 3, 0]
    assert got["labels"] == [IGNORE, 3, 0, IGNORE, IGNORE, IGNORE, IGNORE, 3, 0]
    # A Qwen2 tokenizer that has a BOS token still gets none (v0's class-name rule); its
    # ids are shifted by one because <s>=0 exists in the vocabulary.
    got = encode_fn({"conversation": HAND_CONVERSATION}, qwen2_tokenizer_with_bos, 2048)
    assert got["input_ids"] == [3, 4, 1, 2, 3, 4, 3, 4, 1]


def test_hand_computed_truncation_cuts_the_tail_eos_included(bos_tokenizer):
    got = encode_fn({"conversation": HAND_CONVERSATION[:1]}, bos_tokenizer, max_length=3)
    assert got == {"input_ids": [0, 3, 4], "labels": [IGNORE, IGNORE, 4]}


def test_hand_computed_chatglm_bos():
    class _Inner:
        bos_token_id, eos_token_id = 7, 2

        def encode(self, text, add_special_tokens=True):
            return [ord(c) for c in text]

    got = encode_fn({"conversation": [{"input": "a", "output": "b"}]},
                    ChatGLMTokenizer(_Inner()), 2048)
    assert got == {"input_ids": [64790, 64792, 97, 98, 2],
                   "labels": [IGNORE, IGNORE, IGNORE, 98, 2]}


def test_templated_turn_layout(bos_tokenizer):
    """internlm2_chat: SUFFIX is trained and replaces EOS, SEP is not trained, no BOS after."""
    example = template_map_fn({"conversation": [{"input": "Hi", "output": "Hello"},
                                                {"input": "Bye", "output": "Bye"}]},
                              PROMPT_TEMPLATE.internlm2_chat)
    got = encode_fn(example, bos_tokenizer, 2048)
    ids, labels = got["input_ids"], got["labels"]
    assert ids[0] == 0 and ids.count(0) == 1  # one BOS: SUFFIX_AS_EOS means no EOS, no BOS
    assert 1 not in ids  # no <|endoftext|>
    trained = [i for i, lab in zip(ids, labels) if lab != IGNORE]
    assert bos_tokenizer.decode(trained) == "Hello<|im_end|>Bye<|im_end|>"
    assert bos_tokenizer.decode(ids) == (
        "<s><|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello<|im_end|>\n"
        "<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\nBye<|im_end|>\n")


def test_alpaca_nooutput_gives_an_empty_sample(bos_tokenizer):
    """``<nooutput>`` records become empty conversations, which process_hf_dataset drops."""
    example = alpaca_map_fn({"instruction": "Say nothing", "input": "", "output": "<nooutput>"})
    example = template_map_fn(example, PROMPT_TEMPLATE.default)
    assert example == {"conversation": []}
    assert encode_fn(example, bos_tokenizer, 2048) == {"input_ids": [], "labels": []}


@pytest.mark.parametrize("template_name", [None, "default", "qwen_chat", "llama3_chat",
                                           "internlm2_chat"])
def test_encode_batch_matches_v0_per_example(tokenizer, encode_with_v0, template_name):
    """One tokenizer call for a whole batch gives every example v0's ids and labels."""
    examples = []
    for conversation in CONVERSATIONS.values():
        example = {"conversation": conversation}
        if template_name is not None:
            template = PROMPT_TEMPLATE[template_name]
            if "SYSTEM" not in template and any(t.get("system") for t in conversation):
                continue
            example = template_map_fn(example, template)
        examples.append(example)
    for max_length in (2048, 7):
        expected = [encode_with_v0(example, tokenizer, max_length) for example in examples]
        assert encode_batch(examples, tokenizer, max_length) == expected
