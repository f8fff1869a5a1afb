"""Answering a prompt about one image with a trained LLaVA model, for the evaluation tools.

Two kinds of model folders are accepted, as ``xtuner convert pth_to_hf`` writes them:

* ``--save-format xtuner``: the LLM (MODEL) plus ``--llava DIR`` holding ``projector/`` and
  optionally ``llm_adapter/``, ``visual_encoder/``, ``visual_encoder_adapter/``;
* ``--save-format huggingface``: one ``LlavaForConditionalGeneration`` folder (MODEL alone).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from xtuner.utils.errors import UsageError

__all__ = ["ImageAnswerer", "load_image_answerer", "encode_with_image"]


def encode_with_image(tokenizer, prompt: str) -> list[int]:
    """Token ids of ``prompt`` with its one ``<image>`` as ``IMAGE_TOKEN_INDEX`` (v0: the text
    before gets the tokenizer's special tokens, the text after does not)."""
    from xtuner.utils.constants import DEFAULT_IMAGE_TOKEN, IMAGE_TOKEN_INDEX

    chunks = prompt.split(DEFAULT_IMAGE_TOKEN)
    if len(chunks) != 2:
        raise UsageError(f"the prompt should hold one {DEFAULT_IMAGE_TOKEN}, found "
                         f"{len(chunks) - 1}")
    return (tokenizer.encode(chunks[0]) + [IMAGE_TOKEN_INDEX]
            + tokenizer.encode(chunks[1], add_special_tokens=False))


def _cut(text: str, stop_words) -> str:
    for word in stop_words or ():
        if word and word in text:
            text = text[:text.index(word)]
    return text.strip()


class ImageAnswerer:
    """Greedy answers of a LLaVA model to ``(prompt, image)`` pairs.

    Args:
        model: an xtuner ``LLaVAModel`` (``hf=False``) or a ``LlavaForConditionalGeneration``.
        tokenizer: the LLM's tokenizer (``hf=False``) or the folder's ``LlavaProcessor``.
        image_processor: the vision tower's image processor (``hf=False``).
        hf: whether ``model`` is a transformers Llava model.
        max_new_tokens: the answer's length limit.
        stop_words: the answer is cut at the first of these.
        pad_to_square: pad pictures to a square with the processor's mean colour (v0).
    """

    def __init__(self, model, tokenizer, image_processor=None, hf: bool = False,
                 max_new_tokens: int = 100, stop_words=(), pad_to_square: bool = True):
        self.model, self.tokenizer, self.hf = model, tokenizer, hf
        self.image_processor = tokenizer.image_processor if hf else image_processor
        self.max_new_tokens, self.stop_words = max_new_tokens, list(stop_words)
        self.pad_to_square = pad_to_square

    @property
    def _text_tokenizer(self):
        return self.tokenizer.tokenizer if self.hf else self.tokenizer

    def _device(self):
        return next(self.model.parameters()).device

    def prepare_image(self, image):
        from xtuner.dataset.llava import expand2square

        if self.pad_to_square:
            mean = getattr(self.image_processor, "image_mean", None) or (0, 0, 0)
            image = expand2square(image.convert("RGB"), tuple(int(x * 255) for x in mean))
        return image

    @torch.no_grad()
    def __call__(self, prompt: str, image) -> str:
        """The model's answer to ``prompt`` (which holds one ``<image>``) about ``image``."""
        image = self.prepare_image(image)
        tok = self._text_tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        settings = dict(max_new_tokens=self.max_new_tokens, do_sample=False,
                        pad_token_id=pad, eos_token_id=tok.eos_token_id)
        if self.hf:
            inputs = self.tokenizer(images=[image], text=prompt, return_tensors="pt")
            inputs = {k: v.to(self._device()) for k, v in inputs.items()}
            dtype = next(self.model.parameters()).dtype
            inputs["pixel_values"] = inputs["pixel_values"].to(dtype)
            out = self.model.generate(**inputs, **settings)
            new = out[0, inputs["input_ids"].shape[1]:]
        else:
            ids = torch.tensor([encode_with_image(tok, prompt)], device=self._device())
            pixels = self.image_processor(images=[image], return_tensors="pt")["pixel_values"]
            pixels = pixels.to(self._device(), next(self.model.projector.parameters()).dtype)
            new = self.model.generate(ids, pixels, **settings)[0]
        return _cut(tok.decode(new, skip_special_tokens=True), self.stop_words)


def _is_hf_llava(path: str) -> bool:
    config = Path(path).expanduser() / "config.json"
    if not config.is_file():
        return False
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return False
    return data.get("model_type") == "llava"


def load_image_answerer(model_path: str, llava: str | None = None,
                        visual_encoder: str | None = None, visual_select_layer: int = -2,
                        torch_dtype: str = "auto", bits: int | None = None,
                        trust_remote_code: bool = False, **settings) -> ImageAnswerer:
    """An :class:`ImageAnswerer` for MODEL [+ ``--llava DIR``] (see the module doc).

    Raises:
        UsageError: MODEL is neither a transformers Llava folder nor used with ``--llava``.
    """
    if llava is None:
        if not _is_hf_llava(model_path):
            raise UsageError(f"{model_path} is not a LLaVA model folder (config.json with "
                             "model_type 'llava', as `pth_to_hf --save-format huggingface` "
                             "writes); for an LLM give the LLaVA parts with --llava DIR")
        if visual_encoder is not None:
            raise UsageError("--visual-encoder goes with --llava; a huggingface LLaVA folder "
                             "holds its vision tower")
        from transformers import AutoProcessor, LlavaForConditionalGeneration

        from xtuner.chat.loading import resolve_dtype

        model = LlavaForConditionalGeneration.from_pretrained(
            model_path, dtype=resolve_dtype(torch_dtype, model_path=model_path))
        if torch.cuda.is_available():
            model.cuda()
        processor = AutoProcessor.from_pretrained(model_path)
        return ImageAnswerer(model.eval(), processor, hf=True, **settings)
    from xtuner.chat.loading import load_model
    from xtuner.chat.multimodal import check_llava_dir, load_llava

    check_llava_dir(llava, visual_encoder)
    adapter = Path(llava).expanduser() / "llm_adapter"
    llm, tokenizer = load_model(model_path, adapter=str(adapter) if adapter.is_dir() else None,
                                bits=bits, torch_dtype=torch_dtype,
                                trust_remote_code=trust_remote_code)
    model, processor = load_llava(llm, llava, visual_encoder, visual_select_layer,
                                  trust_remote_code=trust_remote_code)
    return ImageAnswerer(model.eval(), tokenizer, processor, **settings)
