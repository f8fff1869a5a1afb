"""``xtuner chat --llava``: chat about images with a LLaVA model in v0's ``xtuner`` layout.

A LLaVA folder (``xtuner convert pth_to_hf --save-format xtuner``) holds ``projector/`` and,
depending on what trained, ``llm_adapter/``, ``visual_encoder/`` or
``visual_encoder_adapter/``; the vision tower comes from ``visual_encoder/`` or from
``--visual-encoder``. :func:`load_llava` assembles a :class:`~xtuner.model.LLaVAModel` from
them (projector weights in v0's layout load as they are; no folder code runs).

Images enter a conversation two ways: ``--image`` files are shown with the first message (as
in v0, the template's prompt gets ``<image>`` in front), and any message can bring more with
``<image:PATH>`` at the place the image belongs. Every image stays in the conversation.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

from xtuner.utils.constants import DEFAULT_IMAGE_TOKEN, IMAGE_TOKEN_INDEX
from xtuner.utils.errors import UsageError

from .generation import ChatSession

__all__ = ["ImageTokenizer", "ImageChatModel", "ImageChatSession", "check_llava_dir",
           "load_llava", "INLINE_IMAGE"]

#: An image named inside a message: ``<image:photos/cat.png>``.
INLINE_IMAGE = re.compile(r"<image:([^>]+)>")


class ImageTokenizer:
    """A tokenizer whose ``encode`` turns each ``<image>`` into one ``IMAGE_TOKEN_INDEX``
    placeholder (the rest is the wrapped tokenizer, unchanged)."""

    def __init__(self, tokenizer):
        self._tokenizer = tokenizer

    def encode(self, text: str, add_special_tokens: bool = True, **kwargs) -> list[int]:
        ids: list[int] = []
        for i, piece in enumerate(text.split(DEFAULT_IMAGE_TOKEN)):
            if i:
                ids.append(IMAGE_TOKEN_INDEX)
            if piece or i == 0:
                ids += self._tokenizer.encode(piece, add_special_tokens=add_special_tokens
                                              and i == 0, **kwargs)
        return ids

    def __getattr__(self, name):
        return getattr(self._tokenizer, name)

    def __len__(self) -> int:
        return len(self._tokenizer)


class ImageChatModel(torch.nn.Module):
    """What :class:`~xtuner.chat.ChatSession` needs of a model, for a LLaVA model: its
    ``generate`` sees the conversation's images and returns prompt + answer ids."""

    def __init__(self, llava, image_processor):
        super().__init__()
        self.llava = llava
        self.image_processor = image_processor
        self.images: list = []  # PIL images of the conversation, in order
        self.config = llava.llm.config
        self.generation_config = llava.llm.generation_config

    def add_image(self, path: str) -> None:
        """Load ``path`` as the conversation's next image."""
        from PIL import Image

        try:
            self.images.append(Image.open(Path(path).expanduser()).convert("RGB"))
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read the image '{path}': {exc}") from None

    def reset(self) -> None:
        self.images.clear()

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, attention_mask=None, **kwargs) -> torch.Tensor:
        placeholders = int((input_ids == IMAGE_TOKEN_INDEX).sum())
        if placeholders != len(self.images):
            raise UsageError(f"the conversation has {placeholders} <image> but "
                             f"{len(self.images)} image(s)")
        pixel_values = None
        if self.images:
            pixel_values = self.image_processor(images=self.images,
                                                return_tensors="pt")["pixel_values"]
            pixel_values = pixel_values.to(input_ids.device)
        kwargs.pop("tokenizer", None)  # stop strings are checked on the decoded answer
        new = self.llava.generate(input_ids, pixel_values, attention_mask=attention_mask,
                                  **kwargs)
        return torch.cat([input_ids, new.to(input_ids.device)], dim=1)


def _folder(path: Path) -> Path | None:
    return path if path.is_dir() else None


def check_llava_dir(llava_dir: str, visual_encoder: str | None = None) -> Path:
    """Check a LLaVA folder before anything loads; return the vision tower's folder."""
    root = Path(llava_dir).expanduser()
    if not root.exists():
        raise UsageError(f"--llava {llava_dir} does not exist; pass the folder "
                         "`xtuner convert pth_to_hf --save-format xtuner` wrote")
    if not (root / "projector").is_dir():
        raise UsageError(f"--llava {llava_dir}: no projector/ folder; pass the folder "
                         "`xtuner convert pth_to_hf --save-format xtuner` wrote")
    tower_dir = _folder(root / "visual_encoder") or (
        Path(visual_encoder).expanduser() if visual_encoder else None)
    if tower_dir is None:
        raise UsageError(f"--llava {llava_dir} holds no visual_encoder/: pass the vision "
                         "tower with --visual-encoder PATH")
    if not tower_dir.is_dir():
        raise UsageError(f"--visual-encoder {visual_encoder}: no such folder")
    return tower_dir


def load_llava(llm, llava_dir: str, visual_encoder: str | None = None,
               visual_select_layer: int = -2, dtype=None, trust_remote_code: bool = False):
    """``(LLaVAModel, image_processor)`` from a LLaVA folder and the loaded ``llm``.

    Args:
        llm: the language model (with its adapter already applied if it has one).
        llava_dir: the folder ``pth_to_hf --save-format xtuner`` wrote.
        visual_encoder: the vision tower's folder when ``llava_dir`` has no
            ``visual_encoder/``.
        visual_select_layer: the tower's hidden state the projector reads (v0: -2).
        dtype: the dtype of the tower and projector (default: the LLM's).
    """
    from transformers import AutoImageProcessor, AutoModel

    from xtuner.model import LLaVAModel

    root = Path(llava_dir).expanduser()
    tower_dir = check_llava_dir(llava_dir, visual_encoder)
    dtype = dtype or next(llm.parameters()).dtype
    tower = AutoModel.from_pretrained(str(tower_dir), dtype=dtype,
                                      trust_remote_code=trust_remote_code)
    if _folder(root / "visual_encoder_adapter"):
        from .loading import load_adapter

        tower = load_adapter(tower, str(root / "visual_encoder_adapter"), str(tower_dir))
    processor = AutoImageProcessor.from_pretrained(str(tower_dir))
    model = LLaVAModel(llm=llm, visual_encoder=tower, visual_select_layer=visual_select_layer,
                       use_activation_checkpointing=False, use_liger_kernel=False)
    model.llm.config.use_cache = True  # training turns the cache off
    model.projector = AutoModel.from_pretrained(str(root / "projector"), dtype=dtype)
    device = next(llm.parameters()).device
    model.visual_encoder.to(device)
    model.projector.to(device)
    return model.eval(), processor



class ImageChatSession(ChatSession):
    """A chat session whose model is an :class:`ImageChatModel`: ``--image`` files go with
    the first message, ``<image:PATH>`` in any message adds one at that place."""

    def __init__(self, model: ImageChatModel, tokenizer, conversation, *, first_images=(),
                 **kwargs):
        super().__init__(model, ImageTokenizer(tokenizer), conversation, **kwargs)
        self.conversation.tokenizer = self.tokenizer
        self.first_images = list(first_images)
        self._started = False

    def ask(self, text: str, stream=None) -> str:
        model: ImageChatModel = self.model
        before = len(model.images)
        if not self._started and self.first_images:
            for path in self.first_images:
                model.add_image(path)
            text = f"{DEFAULT_IMAGE_TOKEN}\n" * len(self.first_images) + text

        def inline(match):
            model.add_image(match.group(1).strip())
            return DEFAULT_IMAGE_TOKEN

        try:
            answer = super().ask(INLINE_IMAGE.sub(inline, text), stream=stream)
        except Exception:
            del model.images[before:]  # the round did not happen: neither did its images
            raise
        self._started = True
        return answer

    def reset(self) -> None:
        super().reset()
        self.model.reset()
        self._started = False
