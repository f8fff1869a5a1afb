"""``xtuner chat``: prompt building, stop words, the loop, scripted use, adapters and errors.

Everything runs on CPU with the shipped tiny demo model (ChatML chat template, BOS ``<s>``) or a
tiny Qwen2 built in the test; one test runs the real CLI in a subprocess. A tiny random model's
greedy answers are meaningless text, so tests compare paths with each other rather than with
fixed strings.
"""
from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest
import torch

from xtuner.chat import (
    ChatSession,
    ChatTemplateConversation,
    PromptTooLongError,
    TemplateConversation,
    chat_loop,
    cut_at_stop_words,
    interactive_prompts,
    split_script,
    system_text,
)
from xtuner.chat.generation import StopWordStreamer, _held_back
from xtuner.chat.loading import load_model, resolve_dtype
from xtuner.demo import TINY_LLM_PATH
from xtuner.engine.hooks.evaluate_chat_hook import build_prompt
from xtuner.entry_point import main as xtuner_main
from xtuner.utils import PROMPT_TEMPLATE

GREEDY = dict(max_new_tokens=8, temperature=0.0)
GREEDY_ARGS = ["--max-new-tokens", "8", "--temperature", "0", "--torch-dtype", "fp32"]


class _FakeTokenizer:
    """Enough of a tokenizer for prompt-text tests."""

    def encode(self, text, add_special_tokens=True):  # pragma: no cover - unused here
        raise AssertionError("not used")


@pytest.fixture(scope="module")
def demo():
    model, tokenizer = load_model(TINY_LLM_PATH, torch_dtype="fp32")
    return model, tokenizer


@pytest.fixture(scope="module")
def tiny_qwen(tmp_path_factory):
    """A tiny Qwen2 (no BOS, ChatML chat template) and its directory."""
    from xtuner.testing import tiny_llm_and_tokenizer

    model_dir, _ = tiny_llm_and_tokenizer(tmp_path_factory.mktemp("qwen"), arch="qwen2")
    return model_dir


def _session(model, tokenizer, template="qwen_chat", system=None, **kw):
    if template == "tokenizer":
        conversation = ChatTemplateConversation(tokenizer, system)
    else:
        conversation = TemplateConversation(tokenizer, PROMPT_TEMPLATE[template], system)
    settings = {**GREEDY, **kw}
    return ChatSession(model, tokenizer, conversation, log=lambda _: None, **settings)


# -- prompt building (v0's layout, exact strings) ----------------------------------------------
def _two_turns(name, system="You are helpful."):
    conv = TemplateConversation(_FakeTokenizer(), PROMPT_TEMPLATE[name], system)
    first = conv.prompt_text("Hi")
    conv.commit("Hi", "Hello!" + PROMPT_TEMPLATE[name]["STOP_WORDS"][0], "Hello!")
    return first, conv.prompt_text("How are you?")


def test_qwen_chat_multi_turn_with_system():
    first, second = _two_turns("qwen_chat")
    turn1 = ("<|im_start|>system\nYou are helpful.<|im_end|>\n"
             "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    assert first == turn1
    assert second == (turn1 + "Hello!<|im_end|>\n"
                      "<|im_start|>user\nHow are you?<|im_end|>\n<|im_start|>assistant\n")
    # The first turn is what the training-time evaluation hook renders.
    assert first == build_prompt("Hi", PROMPT_TEMPLATE.qwen_chat, "You are helpful.")


def test_internlm2_chat_multi_turn_with_system():
    first, second = _two_turns("internlm2_chat", system="S")
    assert first == ("<|im_start|>system\nS<|im_end|>\n"
                     "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    assert second == (first + "Hello!<|im_end|>\n"
                      "<|im_start|>user\nHow are you?<|im_end|>\n<|im_start|>assistant\n")


def test_llama3_chat_multi_turn_with_system():
    first, second = _two_turns("llama3_chat", system="S")
    user = "<|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|>"
    bot = "<|start_header_id|>assistant<|end_header_id|>\n\n"
    assert first == ("<|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>"
                     + user.format("Hi") + bot)
    # llama3_chat has no SEP: the next turn follows the answer's <|eot_id|> directly.
    assert second == first + "Hello!<|eot_id|>" + user.format("How are you?") + bot


def test_round_number_bot_name_and_system_template():
    conv = TemplateConversation(_FakeTokenizer(), PROMPT_TEMPLATE.chatglm2,
                                system_text(system_template="moss_sft", bot_name="Zed"))
    assert conv.prompt_text("a").startswith("You are an AI assistant whose name is Zed.")
    conv.commit("a", "b", "b")
    assert conv.prompt_text("c").endswith(
        "[Round 1]\n\n问：a\n\n答：b\n\n[Round 2]\n\n问：c\n\n答：")
    # No system prompt: turn 0 is just the instruction.
    bare = TemplateConversation(_FakeTokenizer(), PROMPT_TEMPLATE.qwen_chat)
    assert bare.prompt_text("x") == "<|im_start|>user\nx<|im_end|>\n<|im_start|>assistant\n"


def test_bos_only_at_the_start_of_the_conversation(demo):
    _, tokenizer = demo
    conv = TemplateConversation(tokenizer, PROMPT_TEMPLATE.qwen_chat, "S")
    conv.commit("Hi", "Hello<|im_end|>", "Hello")
    ids = conv.encode("Again")
    assert ids[0] == tokenizer.bos_token_id
    assert ids.count(tokenizer.bos_token_id) == 1
    assert ids[1:] == tokenizer.encode(conv.prompt_text("Again"), add_special_tokens=False)


# -- stop words ---------------------------------------------------------------------------------
def test_cut_at_stop_words():
    assert cut_at_stop_words("abc<|im_end|>\nxyz", ["<|im_end|>"]) == ("abc", True)
    assert cut_at_stop_words("abc<|im_end|>xyz", ["<|im_end|>"], keep_stop_word=True) == (
        "abc<|im_end|>", True)
    # The earliest stop word wins, whichever comes first in the list.
    assert cut_at_stop_words("a<eoc>b<eom>", ["<eom>", "<eoc>"]) == ("a", True)
    assert cut_at_stop_words("plain", ["<eoa>", ""]) == ("plain", False)
    assert _held_back("answer <eo", ["<eoa>"]) == 3
    assert _held_back("answer", ["<eoa>"]) == 0


class _ListTokenizer:
    """Decodes token ids that index into a list of strings."""

    def __init__(self, pieces):
        self.pieces = pieces

    def decode(self, ids, skip_special_tokens=False):
        return "".join(self.pieces[i] for i in ids)


def test_streamer_prints_the_answer_without_stop_word_or_its_prefix():
    pieces = ["Hel", "lo", " <", "eo", "a>", " more"]
    out = io.StringIO()
    streamer = StopWordStreamer(_ListTokenizer(pieces), ["<eoa>"], out)
    streamer.put(torch.tensor([[0]]))  # the prompt, skipped
    printed = []
    for i in range(len(pieces)):
        streamer.put(torch.tensor([i]))
        printed.append(out.getvalue())
    streamer.end()
    assert out.getvalue() == "Hello "
    assert printed[2] == "Hello "  # " <" is held back: it may start "<eoa>"


def test_generation_stops_at_a_stop_word(demo):
    model, tokenizer = demo
    full_session = _session(model, tokenizer, max_new_tokens=16)
    full = full_session.ask("Hello, world!")
    conv = TemplateConversation(tokenizer, PROMPT_TEMPLATE.qwen_chat)
    ids = torch.tensor([conv.encode("Hello, world!")])
    config = full_session.generation_config
    config.max_new_tokens = 16
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                         generation_config=config, tokenizer=tokenizer)
    new = out[0, ids.shape[1]:].tolist()
    # A stop word taken from the middle of the greedy answer.
    word = next(w for k in range(3, len(new))
                if (w := tokenizer.decode(new[k:k + 1]).strip()) and w in full)
    stopped_session = _session(model, tokenizer, max_new_tokens=16, stop_words=[word])
    answer = stopped_session.ask("Hello, world!")
    assert answer == full[:full.index(word)]
    # The history keeps the stop word (as v0's decoded history did), then the template's SEP.
    assert stopped_session.conversation.turns[0].endswith(word + "\n")


def test_streamed_answer_equals_returned_answer(demo):
    model, tokenizer = demo
    out = io.StringIO()
    streamed = _session(model, tokenizer, max_new_tokens=24).ask("What is the capital?",
                                                                   stream=out)
    assert out.getvalue() == streamed
    assert streamed == _session(model, tokenizer, max_new_tokens=24).ask("What is the capital?")


# -- the loop -----------------------------------------------------------------------------------
def test_split_script_lines_or_blocks():
    assert split_script("a\nb\n") == (["a", "b"], False)
    assert split_script("\n\na\nb\n\n") == (["a", "b"], False)  # outer empty lines don't count
    assert split_script("a\nb\n\nc\n\n\nd\n") == (["a\nb", "c", "d"], True)


def test_interactive_prompts_read_until_empty_line():
    lines = iter(["Hello", "world", "", "EXIT", ""])
    err = io.StringIO()
    prompts = interactive_prompts(err, read=lambda: next(lines))
    assert [next(prompts), next(prompts)] == ["Hello\nworld", "EXIT"]
    half = iter(["typed"])

    def read():
        try:
            return next(half)
        except StopIteration:
            raise EOFError from None

    assert list(interactive_prompts(err, read=read)) == ["typed"]  # Ctrl-D still answers it
    assert "RESET" in err.getvalue()


def test_reset_and_exit(demo):
    model, tokenizer = demo
    session = _session(model, tokenizer)
    out, err = io.StringIO(), io.StringIO()
    code = chat_loop(session, ["Hi", "Hi", "RESET", "Hi", "EXIT", "never answered"],
                     out=out, err=err, stream=False)
    assert code == 0
    answers = out.getvalue().split("\n")[:-1]
    assert len(answers) == 3
    assert answers[2] == answers[0]  # RESET: the same prompt on a fresh history
    assert len(session.conversation.turns) == 1
    assert "Exit" in err.getvalue() and "removed" in err.getvalue()


def test_history_is_trimmed_then_a_long_prompt_is_refused(demo):
    model, tokenizer = demo
    logs = []
    conversation = TemplateConversation(tokenizer, PROMPT_TEMPLATE.qwen_chat, "S")
    session = ChatSession(model, tokenizer, conversation, context=64, log=logs.append,
                          **GREEDY)
    for _ in range(4):
        session.ask("What is the capital of France?")
    assert any("Dropped" in line for line in logs)
    assert 0 < len(conversation.turns) < 4
    assert len(session._fit("What is the capital of France?")) + 8 <= 64
    assert conversation.prefix.startswith("<|im_start|>system")  # the system prompt stays
    kept = list(conversation.turns)
    with pytest.raises(PromptTooLongError, match="context of 64"):
        session.ask("fox " * 80)
    assert conversation.turns == kept  # a refused prompt leaves the history alone
    out, err = io.StringIO(), io.StringIO()
    code = chat_loop(session, ["fox " * 80, "Hi"], out=out, err=err, stream=False,
                     scripted=True)
    assert code == 2 and out.getvalue().startswith("\n")  # an empty answer keeps alignment
    assert "context of 64" in err.getvalue()


def test_greedy_answer_is_deterministic(demo):
    model, tokenizer = demo
    answers = {_session(model, tokenizer).ask("Hello, world!") for _ in range(2)}
    assert len(answers) == 1


# -- the CLI ------------------------------------------------------------------------------------
def test_scripted_stdin_prints_one_answer_per_line(demo):
    """The real command: two piped prompts give the in-process session's two answers."""
    model, tokenizer = demo
    session = _session(model, tokenizer)
    expected = [session.ask("Hello, world!"), session.ask("What is the capital of France?")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "xtuner", "chat", TINY_LLM_PATH, "--prompt-template",
         "qwen_chat", "--max-new-tokens", "8", "--temperature", "0"],
        input="Hello, world!\nWhat is the capital of France?\n", capture_output=True,
        text=True, env=env, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "".join(a + "\n" for a in expected)
    if not any("\n" in a for a in expected):
        assert len(proc.stdout.splitlines()) == 2
    assert "qwen_chat" in proc.stderr  # notices go to stderr
    # The demo checkpoint is fp32 and is loaded in its own dtype: no fp16 fallback notice.
    assert "fp16" not in proc.stderr


def test_prompt_once_streamed_and_not(demo, capsys):
    model, tokenizer = demo
    expected = _session(model, tokenizer).ask("Hello, world!")
    args = ["chat", TINY_LLM_PATH, "--prompt-template", "qwen_chat", "--prompt",
            "Hello, world!", *GREEDY_ARGS]
    assert xtuner_main(args) == 0
    streamed = capsys.readouterr().out
    assert xtuner_main([*args, "--no-streamer"]) == 0
    assert streamed == capsys.readouterr().out == expected + "\n"


def test_tokenizer_chat_template_path(tiny_qwen, capsys):
    model, tokenizer = load_model(tiny_qwen, torch_dtype="fp32")
    assert xtuner_main(["chat", tiny_qwen, "--prompt", "Hello, world!", "--system", "S",
                        *GREEDY_ARGS]) == 0
    captured = capsys.readouterr()
    assert "tokenizer's chat template" in captured.err
    # Qwen2 has no BOS and its template is ChatML: same ids, same answer as qwen_chat.
    via_template = _session(model, tokenizer, "tokenizer", system="S")
    via_xtuner = _session(model, tokenizer, "qwen_chat", system="S")
    assert via_template.conversation.encode("Hello, world!") == \
        via_xtuner.conversation.encode("Hello, world!")
    answer = via_template.ask("Hello, world!")
    assert captured.out == answer + "\n"
    assert answer == via_xtuner.ask("Hello, world!")
    # History: a messages list with the (stop-word-free) answer; dropping keeps the system.
    assert via_template.conversation.messages == [
        {"role": "system", "content": "S"}, {"role": "user", "content": "Hello, world!"},
        {"role": "assistant", "content": answer}]
    assert via_template.conversation.drop_oldest()
    assert via_template.conversation.messages == [{"role": "system", "content": "S"}]
    assert not via_template.conversation.drop_oldest()


def test_adapter_equals_merged_model(tiny_qwen, tmp_path, capsys):
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_qwen)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"],
                        init_lora_weights=False)  # random B: the adapter changes the model
    torch.manual_seed(0)
    get_peft_model(base, config).save_pretrained(str(tmp_path / "adapter"))
    base = AutoModelForCausalLM.from_pretrained(tiny_qwen)
    merged = PeftModel.from_pretrained(base, str(tmp_path / "adapter")).merge_and_unload()
    _, tokenizer = load_model(tiny_qwen, torch_dtype="fp32")
    expected = _session(merged.eval(), tokenizer, max_new_tokens=12).ask("Hello, world!")
    plain = AutoModelForCausalLM.from_pretrained(tiny_qwen).eval()
    assert _session(plain, tokenizer, max_new_tokens=12).ask("Hello, world!") != expected
    assert xtuner_main(["chat", tiny_qwen, "--adapter", str(tmp_path / "adapter"),
                        "--prompt-template", "qwen_chat", "--prompt", "Hello, world!",
                        *GREEDY_ARGS, "--max-new-tokens", "12"]) == 0
    captured = capsys.readouterr()
    assert captured.out == expected + "\n"
    assert "Loaded adapter" in captured.err


@pytest.mark.parametrize("stored, cuda, expected", [
    ("bfloat16", False, torch.bfloat16),
    ("float32", True, torch.float32),
    (None, True, torch.float16),  # no dtype in config.json: fp16, as `xtuner convert merge`
    ("float16", False, torch.float32),  # fp16 without CUDA: fp32 with a warning
])
def test_default_dtype_is_the_checkpoints_own(tmp_path, stored, cuda, expected):
    import json

    from xtuner.model.export import checkpoint_dtype

    config = {"model_type": "llama"}
    if stored is not None:
        config["dtype"] = stored
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert resolve_dtype("auto", cuda=cuda, model_path=str(tmp_path)) is expected
    if cuda:  # what `xtuner convert merge --dtype auto` writes the merged model in
        assert checkpoint_dtype(tmp_path) is expected


def test_fp16_without_cuda_falls_back_to_fp32(capsys):
    assert resolve_dtype("fp16", cuda=False) is torch.float32
    assert resolve_dtype("bf16", cuda=False) is torch.bfloat16
    assert resolve_dtype("fp16", cuda=True) is torch.float16
    assert capsys.readouterr().err.count("warning") == 1


@pytest.mark.parametrize("extra, message", [
    (["--bits", "4"], "needs a CUDA GPU"),
    (["--bits", "8"], "needs a CUDA GPU"),
    (["--lagent"], "--lagent"),
    (["--with-plugins", "calculate"], "--with-plugins"),
    (["--image", "cat.png"], "need --llava DIR"),
    (["--llava", "./no_such_llava"], "--llava ./no_such_llava does not exist"),
    (["--llava", TINY_LLM_PATH], "no projector/ folder"),
    (["--prompt-template", "qwen_chta"], "did you mean 'qwen_chat'"),
    (["--system-template", "colourist"], "did you mean 'colorist'"),
    (["--system", "a", "--system-template", "colorist"], "not allowed with"),
    (["--adapter", "/no/such/adapter"], "does not exist"),
])
def test_errors_are_one_line(extra, message, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert xtuner_main(["chat", TINY_LLM_PATH, *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_missing_model_dir_and_adapter_without_config(tmp_path, capsys):
    assert xtuner_main(["chat", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "not_an_adapter").mkdir()
    assert xtuner_main(["chat", TINY_LLM_PATH, "--adapter",
                        str(tmp_path / "not_an_adapter")]) == 2
    err = capsys.readouterr().err.strip()
    assert "adapter_config.json" in err and len(err.splitlines()) == 1
    assert xtuner_main(["chat", str(tmp_path / "not_an_adapter")]) == 2  # no config.json
    assert "config.json" in capsys.readouterr().err


def test_an_adapter_as_model_suggests_its_base(tmp_path, capsys):
    import json

    adapter = tmp_path / "hf"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "LORA", "base_model_name_or_path": "/models/my_base"}))
    assert xtuner_main(["chat", str(adapter), "--prompt", "hi"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert ("is a PEFT adapter, not a model; chat with its base model: xtuner chat "
            f"/models/my_base --adapter {adapter}") in err


class _Out(io.StringIO):
    def __init__(self, tty: bool):
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


class _EmptySession:
    """Answers every prompt with nothing (as a model that emits EOS at once does)."""

    def ask(self, text, stream=None):
        return ""


@pytest.mark.parametrize("stream", [True, False])
def test_empty_answer_is_visible(stream):
    out, err = _Out(tty=True), io.StringIO()
    assert chat_loop(_EmptySession(), ["hi"], out=out, err=err, stream=stream) == 0
    assert out.getvalue() == "(empty answer)\n"
    # Piped: answers stay one line per prompt (an empty line) and the notice goes to stderr.
    out, err = _Out(tty=False), io.StringIO()
    chat_loop(_EmptySession(), ["hi", "again"], out=out, err=err, stream=stream, scripted=True)
    assert out.getvalue() == "\n\n"
    assert err.getvalue().count("xtuner chat: the model gave an empty answer") == 2
