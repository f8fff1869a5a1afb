"""Tiny, locally built tokenizers and causal LMs for tests and the offline demo.

Nothing here touches a model hub: the tokenizer is a byte-level BPE trained in-process with the
``tokenizers`` library (milliseconds on a few KB of text) and the model is a randomly initialised
``LlamaForCausalLM`` / ``Qwen2ForCausalLM`` built from a config. Both are written with
``save_pretrained`` so callers exercise the real ``AutoTokenizer.from_pretrained`` /
``AutoModelForCausalLM.from_pretrained`` code paths, exactly as they would for a hub checkpoint.

Typical use in a test::

    from xtuner.testing import tiny_llm_and_tokenizer

    def test_something(tmp_path):
        model_dir, tokenizer_dir = tiny_llm_and_tokenizer(tmp_path, arch="qwen2")
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
        model = AutoModelForCausalLM.from_pretrained(model_dir)

Notes on transformers 5.x tokenizer classes (checked against 5.24):

* ``PreTrainedTokenizerFast`` is an alias of ``TokenizersBackend``; a tokenizer saved with
  ``tokenizer_class="PreTrainedTokenizerFast"`` loads back as ``TokenizersBackend``, which uses
  ``tokenizer.json`` verbatim.
* Model-specific classes with their own ``__init__`` (``Qwen2Tokenizer``, ``LlamaTokenizer``, ...)
  do *not* load ``tokenizer.json`` verbatim: they take only its vocab, merges and post-processor
  and rebuild normalizer, pre-tokenizer and decoder from hard-coded settings. That is why the
  pipeline built here copies Qwen2's exactly (NFC normalizer, Qwen2's split regex, byte-level
  without regex, byte-level decoder): the same ``tokenizer.json`` then gives the same ids whether it
  is loaded as ``TokenizersBackend`` or as ``Qwen2Tokenizer``.
* ``AutoTokenizer`` may override the class named in ``tokenizer_config.json`` by looking at the
  ``config.json`` in the same directory: for ``model_type="qwen2"`` it always returns
  ``Qwen2Tokenizer`` (qwen2 is in transformers' ``MODELS_WITH_INCORRECT_HUB_TOKENIZER_CLASS``), and
  a ``LlamaTokenizer`` whose ``tokenizer.json`` is byte-level is loaded as ``TokenizersBackend``
  (``LlamaTokenizer`` hard-codes SentencePiece-style Metaspace, which drops the spaces of a
  byte-level vocabulary). So ``tokenizer_class="Qwen2Tokenizer"`` can be faked (``AutoTokenizer``
  returns a real ``Qwen2Tokenizer`` with the same ids); ``"LlamaTokenizer"`` cannot, and
  :func:`train_tiny_tokenizer` refuses it.
* ``type(tok).__name__`` of a Qwen2 tokenizer is ``"Qwen2Tokenizer"``: ``Qwen2TokenizerFast`` is
  only an alias of it, so class-name rules written for v4 (``"Qwen2TokenizerFast"``) must list
  both names.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterable
from pathlib import Path

import torch
from tokenizers import (
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)
from transformers import PreTrainedTokenizerFast

__all__ = [
    "CHATML_TEMPLATE",
    "DEFAULT_CORPUS",
    "SUPPORTED_ARCHS",
    "build_tiny_llm",
    "tiny_llm_and_tokenizer",
    "train_tiny_tokenizer",
]

#: ChatML (Qwen / InternLM2 style) chat template. ``add_generation_prompt=True`` appends the
#: assistant header so generation starts at the answer.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"

# Qwen2's pre-tokenizer regex (transformers/models/qwen2/tokenization_qwen2.py). Using it here makes
# a saved tokenizer encode identically when transformers rebuilds it as Qwen2Tokenizer.
_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"""
    r"""\s*[\r\n]+|\s+(?!\S)|\s+"""
)

#: Small English + Chinese corpus the default tokenizer is trained on (a few hundred merges'
#: worth of text; enough for realistic multi-byte tokens without slowing tests down).
DEFAULT_CORPUS: tuple[str, ...] = (
    "The quick brown fox jumps over the lazy dog.",
    "Hello, world! This is a tiny tokenizer used for testing XTuner.",
    "You are a helpful assistant. Answer the question briefly and accurately.",
    "What is the capital of France? The capital of France is Paris.",
    "Fine-tuning large language models with LoRA and QLoRA saves GPU memory.",
    "The model reads the input, predicts the next token, and the loss goes down.",
    "Please translate the following sentence into Chinese.",
    "def add(a, b):\n    return a + b\n",
    "for i in range(10):\n    print(i * i)\n",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 2024 3.14",
    "Colours: red, green, blue, yellow, purple, orange, #ff0000, #00ff00, #0000ff.",
    "User: How are you today?\nAssistant: I am fine, thank you!",
    "你好，世界！这是一个用于测试的小型分词器。",
    "请把下面的句子翻译成英文。",
    "中国的首都是北京。法国的首都是巴黎。",
    "大型语言模型的微调需要数据、模型和训练配置。",
    "今天天气很好，我们一起去公园散步吧。",
    "学习使人进步，谦虚使人进步，骄傲使人落后。",
)

SUPPORTED_ARCHS = ("llama", "qwen2", "mistral")

# Names transformers 5 uses for the generic tokenizer.json-backed class.
_GENERIC_CLASSES = ("PreTrainedTokenizerFast", "TokenizersBackend")


def _tokenizer_pipeline(
    vocab_size: int, special_tokens: list[str]
) -> tuple[Tokenizer, trainers.BpeTrainer]:
    """Return an untrained byte-level BPE ``Tokenizer`` and its trainer."""
    tokenizer = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            # use_regex=False: the Split above already did the splitting (as in Qwen2).
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=special_tokens,
        # All 256 byte symbols up front: any UTF-8 text encodes, nothing is ever unknown.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    return tokenizer, trainer


def train_tiny_tokenizer(
    texts: Iterable[str],
    save_dir: str | Path,
    vocab_size: int = 512,
    tokenizer_class: str = "PreTrainedTokenizerFast",
    bos_token: str | None = "<s>",
    chat_template: str | None = CHATML_TEMPLATE,
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer in-process and save it with ``save_pretrained``.

    The special tokens get the first ids and are single tokens: ``bos_token`` (when given), then
    ``<|endoftext|>`` (eos), ``<|pad|>`` (pad), ``<|im_start|>`` and ``<|im_end|>``; so the ids
    are 0-4 with a BOS and 0-3 without. When ``bos_token`` is given,
    ``encode(..., add_special_tokens=True)`` prepends it (like Llama / InternLM2 tokenizers); with
    ``bos_token=None`` nothing is added (like Qwen). ``decode(encode(s)) == s`` for any
    NFC-normalised text: no prefix space is added and every byte is in the vocabulary.

    Training is deterministic: the same texts give a byte-identical ``tokenizer.json``.

    Args:
        texts: Training corpus (any iterable of strings; consumed once).
        save_dir: Directory to write ``tokenizer.json`` and ``tokenizer_config.json`` into.
        vocab_size: Target vocabulary size including the 256 byte symbols and special tokens.
            A small corpus may stop short of it (every word already a single token).
        tokenizer_class: Class name written to ``tokenizer_config.json``. In transformers 5.24
            ``"PreTrainedTokenizerFast"`` loads as ``TokenizersBackend`` and ``"Qwen2Tokenizer"``
            (or ``"Qwen2TokenizerFast"``) as ``Qwen2Tokenizer``, with identical ids. A class that
            rebuilds an incompatible pipeline (``"LlamaTokenizer"``: Metaspace) is refused
            (see the module docstring).
        bos_token: Beginning-of-sequence token, or ``None`` for none (Qwen style).
        chat_template: Jinja chat template stored with the tokenizer, or ``None``.

    Returns:
        The tokenizer, with ``padding_side='right'``: the trained ``PreTrainedTokenizerFast``
        for the generic class, otherwise an instance of ``tokenizer_class`` reloaded from
        ``save_dir`` (so ``type(tok).__name__`` is what XTuner's encode rules look at).

    Raises:
        ValueError: If transformers has no ``tokenizer_class`` or that class does not reproduce
            the trained tokenizer's ids.
    """
    special_tokens = ([bos_token] if bos_token else []) + [EOS_TOKEN, PAD_TOKEN, IM_START, IM_END]
    backend, trainer = _tokenizer_pipeline(vocab_size, special_tokens)
    # Materialise once: an iterator given by the caller must not be read twice.
    corpus = [t for t in texts if t]
    backend.train_from_iterator(corpus, trainer=trainer)
    if bos_token:
        bos_id = backend.token_to_id(bos_token)
        backend.post_processor = processors.TemplateProcessing(
            single=f"{bos_token} $A",
            pair=f"{bos_token} $A $B",
            special_tokens=[(bos_token, bos_id)],
        )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=bos_token,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        unk_token=None,
        additional_special_tokens=[IM_START, IM_END],
        padding_side="right",
        clean_up_tokenization_spaces=False,
    )
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    save_dir = Path(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(save_dir))
    _rewrite_tokenizer_class(save_dir, tokenizer_class)
    if tokenizer_class in _GENERIC_CLASSES:
        return tokenizer
    # Reload as the named class, so the returned object is e.g. a real Qwen2Tokenizer (XTuner's
    # encode rules look at the class name) and re-saves under that name.
    from transformers.models.auto.tokenization_auto import tokenizer_class_from_name

    cls = tokenizer_class_from_name(tokenizer_class)
    if cls is None:
        raise ValueError(
            f"train_tiny_tokenizer: transformers has no tokenizer class {tokenizer_class!r}; "
            "use 'PreTrainedTokenizerFast' or a class such as 'Qwen2Tokenizer'."
        )
    reloaded = cls.from_pretrained(str(save_dir))
    # Classes with their own __init__ rebuild the pipeline from hard-coded settings (LlamaTokenizer
    # uses SentencePiece-style Metaspace and drops spaces from byte-level text): refuse rather than
    # hand back a tokenizer that silently encodes differently from the one just trained.
    probes = corpus[:20] + ["Hello world, 123!", "你好，世界。"]
    for probe in probes:
        expected = tokenizer.encode(probe, add_special_tokens=False)
        got = reloaded.encode(probe, add_special_tokens=False)
        if got != expected or reloaded.decode(got) != unicodedata.normalize("NFC", probe):
            raise ValueError(
                f"train_tiny_tokenizer: transformers' {tokenizer_class} rebuilds its own "
                f"pre-tokenizer and does not reproduce this byte-level BPE (on {probe!r}: "
                f"expected ids {expected[:8]}..., got {got[:8]}...). Use tokenizer_class="
                "'PreTrainedTokenizerFast' (generic) or 'Qwen2Tokenizer'."
            )
    return reloaded


def _rewrite_tokenizer_class(save_dir: Path, tokenizer_class: str | None = None) -> None:
    """Set ``tokenizer_class`` in ``save_dir/tokenizer_config.json``.

    transformers 5 saves the generic class as ``"TokenizersBackend"``, a name transformers 4 does
    not know; ``"PreTrainedTokenizerFast"`` loads in both. With ``tokenizer_class=None`` only that
    rename is done.
    """
    config_file = save_dir / "tokenizer_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    saved = config.get("tokenizer_class")
    # Load-time kwargs that transformers 5 leaks into the saved config of a reloaded tokenizer.
    for key in ("is_local", "local_files_only"):
        config.pop(key, None)
    if tokenizer_class is None:
        tokenizer_class = "PreTrainedTokenizerFast" if saved in _GENERIC_CLASSES else saved
    config["tokenizer_class"] = tokenizer_class
    config_file.write_text(
        json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )


def build_tiny_llm(
    save_dir: str | Path,
    tokenizer: PreTrainedTokenizerFast,
    arch: str = "llama",
    hidden_size: int = 32,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 4,
    num_key_value_heads: int = 2,
    intermediate_size: int = 64,
    max_position_embeddings: int = 2048,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    tie_word_embeddings: bool = False,
) -> str:
    """Build a randomly initialised causal LM and save it (safetensors) with ``tokenizer``.

    The config's ``vocab_size`` is ``len(tokenizer)`` and its bos/eos/pad ids come from the
    tokenizer, so ``AutoModelForCausalLM.from_pretrained(path)`` followed by ``generate`` works;
    ``generation_config.json`` stops at ``<|im_end|>`` as well as at the eos token.
    Initialisation is seeded (``torch.manual_seed(seed)``) and restores the global RNG state
    afterwards, so calling this inside a test does not perturb the test's own randomness.

    Args:
        save_dir: Directory to write ``config.json``, ``generation_config.json``,
            ``model.safetensors`` and the tokenizer files into.
        tokenizer: The tokenizer to size the vocabulary from and to save alongside.
        arch: ``"llama"`` (``LlamaForCausalLM``), ``"qwen2"`` (``Qwen2ForCausalLM``) or
            ``"mistral"`` (``MistralForCausalLM``).
        hidden_size: Model width; must be divisible by ``num_attention_heads``.
        num_hidden_layers: Number of decoder layers.
        num_attention_heads: Query heads.
        num_key_value_heads: Key/value heads (GQA when smaller than ``num_attention_heads``).
        intermediate_size: MLP width.
        max_position_embeddings: Maximum sequence length (RoPE table size).
        seed: Seed for the weight initialisation.
        dtype: Parameter dtype written to disk (and recorded as ``config.dtype``).
        tie_word_embeddings: Share input embeddings and ``lm_head``.

    Returns:
        ``str(save_dir)``.

    Raises:
        ValueError: If ``arch`` is not supported or the head sizes do not divide.
    """
    from transformers import (
        GenerationConfig,
        LlamaConfig,
        LlamaForCausalLM,
        MistralConfig,
        MistralForCausalLM,
        Qwen2Config,
        Qwen2ForCausalLM,
    )

    classes = {
        "llama": (LlamaConfig, LlamaForCausalLM),
        "qwen2": (Qwen2Config, Qwen2ForCausalLM),
        "mistral": (MistralConfig, MistralForCausalLM),
    }
    if arch not in classes:
        raise ValueError(
            f"build_tiny_llm: unknown arch {arch!r}; expected one of {sorted(classes)}."
        )
    if hidden_size % num_attention_heads or num_attention_heads % num_key_value_heads:
        raise ValueError(
            f"build_tiny_llm: hidden_size={hidden_size} must be divisible by "
            f"num_attention_heads={num_attention_heads}, which must be divisible by "
            f"num_key_value_heads={num_key_value_heads}."
        )
    config_cls, model_cls = classes[arch]
    config = config_cls(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=num_key_value_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=tie_word_embeddings,
        dtype=dtype,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_cls(config).to(dtype)
    # Stop at the end of a ChatML turn too, as chat checkpoints (e.g. Qwen2-Instruct) do.
    eos_ids = [tokenizer.eos_token_id]
    im_end_id = tokenizer.convert_tokens_to_ids(IM_END)
    if isinstance(im_end_id, int) and im_end_id not in eos_ids:
        eos_ids.append(im_end_id)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=eos_ids if len(eos_ids) > 1 else eos_ids[0],
        pad_token_id=tokenizer.pad_token_id,
    )
    save_dir = Path(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(save_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(save_dir))
    _rewrite_tokenizer_class(save_dir)
    return str(save_dir)


def tiny_llm_and_tokenizer(
    tmp_dir: str | Path,
    arch: str = "llama",
    texts: Iterable[str] | None = None,
    **kw: object,
) -> tuple[str, str]:
    """Train a tokenizer and build a tiny model in ``tmp_dir``; the usual one-liner for tests.

    The tokenizer is trained on :data:`DEFAULT_CORPUS` plus ``texts``. For ``arch="qwen2"`` it is
    saved Qwen-style (``tokenizer_class="Qwen2Tokenizer"``, no BOS token), otherwise with a
    ``<s>`` BOS token.

    Args:
        tmp_dir: Directory to create the model in (``tmp_dir / f"tiny_{arch}"``).
        arch: Passed to :func:`build_tiny_llm`.
        texts: Extra training text for the tokenizer (e.g. the test's own samples, so they
            tokenize into a realistic number of tokens).
        **kw: Passed to :func:`build_tiny_llm` (``hidden_size``, ``seed``, ...), except
            ``vocab_size``, ``bos_token``, ``tokenizer_class`` and ``chat_template``, which go
            to :func:`train_tiny_tokenizer`.

    Returns:
        ``(model_dir, tokenizer_dir)``; both are the same directory.
    """
    tok_kw: dict = {}
    if arch == "qwen2":
        tok_kw.update(tokenizer_class="Qwen2Tokenizer", bos_token=None)
    for key in ("vocab_size", "bos_token", "tokenizer_class", "chat_template"):
        if key in kw:
            tok_kw[key] = kw.pop(key)
    out_dir = Path(tmp_dir) / f"tiny_{arch}"
    corpus = list(DEFAULT_CORPUS) + list(texts or ())
    tokenizer = train_tiny_tokenizer(corpus, out_dir, **tok_kw)
    model_dir = build_tiny_llm(out_dir, tokenizer, arch=arch, **kw)
    return model_dir, model_dir
