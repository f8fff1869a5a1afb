"""``xtuner chat --llava``: images with the first message and ``<image:PATH>`` in later
ones, on a tiny LLaVA model built in code."""
from __future__ import annotations

import pytest
import torch
from PIL import Image

from xtuner.utils.constants import IMAGE_TOKEN_INDEX
from xtuner.utils.errors import UsageError


@pytest.fixture
def session(tmp_path):
    from transformers import (
        AutoModel,
        AutoModelForCausalLM,
        AutoTokenizer,
        CLIPImageProcessor,
        CLIPVisionConfig,
        CLIPVisionModel,
    )

    from xtuner.chat import TemplateConversation
    from xtuner.chat.multimodal import ImageChatModel, ImageChatSession
    from xtuner.model import LLaVAModel
    from xtuner.testing import tiny_llm_and_tokenizer
    from xtuner.utils.templates import PROMPT_TEMPLATE

    llama_dir, _ = tiny_llm_and_tokenizer(tmp_path)

    CLIPVisionModel(CLIPVisionConfig(hidden_size=24, intermediate_size=48, num_hidden_layers=2,
                                     num_attention_heads=4, image_size=32,
                                     patch_size=8)).save_pretrained(tmp_path / "tower")
    model = LLaVAModel(
        llm=dict(type=AutoModelForCausalLM.from_pretrained, pretrained_model_name_or_path=llama_dir,
                 dtype=torch.float32),
        visual_encoder=dict(type=AutoModel.from_pretrained,
                            pretrained_model_name_or_path=str(tmp_path / "tower")),
        use_activation_checkpointing=False, use_liger_kernel=False).eval()
    model.llm.config.use_cache = True
    processor = CLIPImageProcessor(size={"shortest_edge": 32},
                                   crop_size={"height": 32, "width": 32})
    tokenizer = AutoTokenizer.from_pretrained(llama_dir)
    for name, colour in (("red", (200, 0, 0)), ("blue", (0, 0, 200))):
        Image.new("RGB", (32, 32), colour).save(tmp_path / f"{name}.png")
    conversation = TemplateConversation(tokenizer, PROMPT_TEMPLATE.vicuna)
    return ImageChatSession(ImageChatModel(model, processor), tokenizer, conversation,
                            first_images=[str(tmp_path / "red.png")], max_new_tokens=3,
                            temperature=0, log=lambda _: None), tmp_path


def test_images_join_the_conversation_in_order(session):
    chat, tmp_path = session
    chat.ask("What colour is it?")
    assert len(chat.model.images) == 1
    chat.ask(f"<image:{tmp_path / 'blue.png'}> And this one?")
    assert [im.getpixel((0, 0)) for im in chat.model.images] == [(200, 0, 0), (0, 0, 200)]
    # The history holds both placeholders, in the order of the images.
    ids = chat.conversation.encode("Next?")
    assert ids.count(IMAGE_TOKEN_INDEX) == 2
    chat.reset()
    assert chat.model.images == []


def test_a_missing_image_is_one_line_and_changes_nothing(session):
    chat, tmp_path = session
    chat.ask("What colour is it?")
    with pytest.raises(UsageError, match="cannot read the image"):
        chat.ask(f"<image:{tmp_path / 'nope.png'}> And this?")
    assert len(chat.model.images) == 1
    assert chat.conversation.encode("Next?").count(IMAGE_TOKEN_INDEX) == 1
