"""``xtuner chat MODEL``: chat with a model (and a LoRA adapter) in the terminal.

Prompts are built with an XTuner template (``--prompt-template``, as in training) or, without
one, with the tokenizer's own chat template. At a terminal, type a prompt and end it with an
empty line; ``RESET`` clears the history and ``EXIT`` quits. With piped input, every line is a
prompt (or, if the input contains an empty line, every block between empty lines) and only the
answers are printed, one per prompt; ``--prompt TEXT`` answers once. Notices go to stderr.

Examples::

    xtuner chat ./merged --prompt-template qwen_chat
    xtuner chat Qwen/Qwen2.5-7B-Instruct --adapter ./hf_adapter --system "Be brief."
    xtuner chat ./merged --prompt "What is LoRA?" --temperature 0
    xtuner chat ./merged --prompt-template internlm2_chat < questions.txt > answers.txt
    xtuner chat ./llm --llava ./llava_xtuner --image cat.png --prompt-template vicuna

With ``--llava`` (a folder written by ``xtuner convert pth_to_hf --save-format xtuner``) the
``--image`` files go with the first message, and any message can show another image with
``<image:PATH>`` where it belongs.
"""
from __future__ import annotations

import sys
from collections.abc import Sequence

from xtuner.utils.cli import ArgumentParser, run_main
from xtuner.utils.errors import UsageError
from xtuner.utils.remote_code import add_trust_remote_code_argument


def parse_args(argv: Sequence[str] | None):
    parser = ArgumentParser(prog="xtuner chat", description=__doc__.split("\n\n")[0])
    parser.add_argument("model_name_or_path", help="Hugging Face model folder or hub id")
    parser.add_argument("--adapter", default=None, help="PEFT adapter folder (LoRA/QLoRA)")
    parser.add_argument("--prompt-template", default=None, metavar="NAME",
                        help="XTuner prompt template (default: the tokenizer's chat template)")
    system = parser.add_mutually_exclusive_group()
    system.add_argument("--system", default=None, metavar="TEXT", help="system prompt")
    system.add_argument("--system-template", default=None, metavar="NAME",
                        help="a stock system prompt (SYSTEM_TEMPLATE)")
    parser.add_argument("--bits", type=int, choices=[4, 8], default=None,
                        help="load quantised with bitsandbytes (needs CUDA)")
    parser.add_argument("--torch-dtype", default="auto", choices=["auto", "fp16", "bf16", "fp32"],
                        help="dtype to load the model in: 'auto' (default) keeps the "
                        "checkpoint's own (its config.json; fp16 when it names none), as "
                        "`xtuner convert` does; fp16 becomes fp32 without CUDA")
    add_trust_remote_code_argument(parser)
    parser.add_argument("--bot-name", default="BOT", help="fills {bot_name} in templates")
    parser.add_argument("--stop-words", nargs="+", default=[], metavar="WORD",
                        help="extra stop strings (the template's STOP_WORDS are always used)")
    parser.add_argument("--no-streamer", action="store_true",
                        help="print each answer when it is complete")
    parser.add_argument("--offload-folder", default=None,
                        help="folder for weights offloaded by device_map='auto'")
    parser.add_argument("--max-new-tokens", type=int, default=2048)
    parser.add_argument("--temperature", type=float, default=0.1,
                        help="sampling temperature; 0 decodes greedily")
    parser.add_argument("--top-k", type=int, default=40)
    parser.add_argument("--top-p", type=float, default=0.75)
    parser.add_argument("--repetition-penalty", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0, help="random seed for sampling")
    parser.add_argument("--prompt", default=None, metavar="TEXT",
                        help="answer this one prompt and exit")
    # v0 options that are not supported: accepted so that using them says why.
    parser.add_argument("--with-plugins", nargs="+", default=None, help="not supported")
    parser.add_argument("--lagent", action="store_true", help="not supported")
    parser.add_argument("--llava", default=None, metavar="DIR",
                        help="LLaVA folder (projector/, and llm_adapter/, visual_encoder/ ... "
                        "as `xtuner convert pth_to_hf --save-format xtuner` writes)")
    parser.add_argument("--image", action="append", default=None, metavar="IMG",
                        help="an image for the first message (repeat for several; needs "
                        "--llava)")
    parser.add_argument("--visual-encoder", default=None, metavar="PATH",
                        help="the vision tower, when the --llava folder has no visual_encoder/")
    parser.add_argument("--visual-select-layer", type=int, default=-2,
                        help="the vision tower's hidden state the projector reads (default -2)")
    return parser.parse_args(argv)


def _check_supported(args) -> None:
    if args.with_plugins is not None:
        raise UsageError("--with-plugins (v0's MOSS calculate/solve/search plugins) is not "
                         "supported; chat without it")
    if args.lagent:
        raise UsageError("--lagent (v0's lagent ReAct agent with web search) is not supported; "
                         "use lagent directly with the merged model")
    if args.llava is None and (args.image or args.visual_encoder):
        raise UsageError("--image and --visual-encoder need --llava DIR (the LLaVA folder)")
    if args.llava is not None:
        from pathlib import Path

        from xtuner.chat.multimodal import check_llava_dir

        check_llava_dir(args.llava, args.visual_encoder)
        for image in args.image or ():
            if not Path(image).expanduser().is_file():
                raise UsageError(f"--image {image}: no such file")
    for name in ("max_new_tokens", "top_k"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1")
    if args.temperature < 0 or not 0 < args.top_p <= 1 or args.repetition_penalty <= 0:
        raise UsageError("expected --temperature >= 0, 0 < --top-p <= 1 and "
                         "--repetition-penalty > 0")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def build_session(args):
    """Load the model and build the :class:`~xtuner.chat.ChatSession` that ``args`` describe."""
    from xtuner.chat import ChatSession, ChatTemplateConversation, TemplateConversation
    from xtuner.chat.conversation import resolve_prompt_template, system_text
    from xtuner.chat.loading import load_model

    template = None
    if args.prompt_template is not None:
        template = resolve_prompt_template(args.prompt_template)
    system = system_text(args.system, args.system_template, args.bot_name)
    adapter = args.adapter
    if args.llava is not None and adapter is None:
        from pathlib import Path

        llm_adapter = Path(args.llava).expanduser() / "llm_adapter"
        adapter = str(llm_adapter) if llm_adapter.is_dir() else None
    model, tokenizer = load_model(args.model_name_or_path, adapter=adapter, bits=args.bits,
                                  torch_dtype=args.torch_dtype,
                                  offload_folder=args.offload_folder,
                                  trust_remote_code=args.trust_remote_code)
    if adapter is not None:
        _log(f"Loaded adapter from {adapter}")
    if template is not None:
        conversation = TemplateConversation(tokenizer, template, system, args.bot_name)
        if system is not None and "SYSTEM" not in template:
            _log(f"Note: template '{args.prompt_template}' has no SYSTEM; the system prompt "
                 "is not used.")
        _log(f"Using XTuner prompt template '{args.prompt_template}'.")
    elif getattr(tokenizer, "chat_template", None):
        conversation = ChatTemplateConversation(tokenizer, system)
        _log("Using the tokenizer's chat template (pass --prompt-template NAME for an XTuner "
             "template).")
    else:
        conversation = TemplateConversation(tokenizer, None)
        _log("The tokenizer has no chat template and no --prompt-template was given: prompts "
             "are sent as plain text" + (" and the system prompt is not used." if system
                                         else "."))
    settings = dict(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                    top_k=args.top_k, top_p=args.top_p,
                    repetition_penalty=args.repetition_penalty, stop_words=args.stop_words,
                    log=_log)
    if args.llava is None:
        return ChatSession(model, tokenizer, conversation, **settings)
    from xtuner.chat.multimodal import ImageChatModel, ImageChatSession, load_llava

    llava, processor = load_llava(model, args.llava, args.visual_encoder,
                                  args.visual_select_layer,
                                  trust_remote_code=args.trust_remote_code)
    _log(f"Loaded the LLaVA projector and vision tower from {args.llava}")
    return ImageChatSession(ImageChatModel(llava, processor), tokenizer, conversation,
                            first_images=args.image or (), **settings)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    _check_supported(args)
    session = build_session(args)
    from transformers import set_seed

    from xtuner.chat import chat_loop, interactive_prompts, split_script
    from xtuner.chat.loop import note_empty_answer

    set_seed(args.seed)
    stream = not args.no_streamer
    if args.prompt is not None:  # one answer; a prompt too long for the context exits 2
        answer = session.ask(args.prompt, stream=sys.stdout if stream else None)
        if not stream:
            sys.stdout.write(answer)
        note_empty_answer(answer, sys.stdout, sys.stderr)
        print(flush=True)
        return 0
    stdin = sys.stdin
    if stdin is not None and not stdin.isatty():
        prompts, blocks = split_script(stdin.read())
        return chat_loop(session, prompts, stream=stream, scripted=True,
                         answer_separator="\n\n" if blocks else "\n")
    return chat_loop(session, interactive_prompts(), stream=stream)


if __name__ == "__main__":
    sys.exit(run_main(main, prog="xtuner chat"))
