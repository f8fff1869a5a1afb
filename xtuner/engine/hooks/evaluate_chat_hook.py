"""``EvaluateChatHook``: answer a few fixed prompts during training, to watch the model learn.

Runs before training (short answers), every ``every_n_iters`` iterations, whenever a checkpoint
is saved (also writing ``<log_dir>/vis_data/eval_outputs_iter_N.txt``) and after training.
"""
from __future__ import annotations

import os
import os.path as osp

import torch
from mmengine.dist import master_only
from mmengine.hooks import Hook

from xtuner.model.utils import build_from_cfg, unwrap_model
from xtuner.utils.errors import ConfigError

__all__ = ["EvaluateChatHook", "build_prompt"]


def build_prompt(text: str, prompt_template: dict | None, system: str = "",
                 round_index: int = 1, bot_name: str = "BOT") -> str:
    """Render one user turn with an XTuner prompt template (system prompt on the first turn)."""
    if prompt_template is None:
        return text
    instruction = prompt_template.get("INSTRUCTION", "{input}")
    prompt = instruction.format(input=text, round=round_index, bot_name=bot_name)
    if system and round_index == 1 and "SYSTEM" in prompt_template:
        prompt = prompt_template["SYSTEM"].format(system=system, round=round_index,
                                                  bot_name=bot_name) + prompt
    return prompt


def _load_images(images, inputs: int) -> list:
    """``evaluation_images`` as PIL images, one per input (a single image serves all)."""
    if images is None:
        return []
    from PIL import Image

    paths = [images] if isinstance(images, str) else list(images)
    if len(paths) == 1:
        paths = paths * inputs
    if len(paths) != inputs:
        raise ConfigError(f"EvaluateChatHook: {len(paths)} evaluation_images for {inputs} "
                          "evaluation_inputs; give one image, or one per input")
    loaded = []
    for path in paths:
        if "://" in str(path):
            raise ConfigError(f"EvaluateChatHook: evaluation_images {path!r} is a URL; "
                              "download it and give the local file")
        try:
            loaded.append(Image.open(osp.expanduser(str(path))).convert("RGB"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"EvaluateChatHook: cannot read evaluation image {path!r} "
                              f"({exc})") from None
    return loaded


class EvaluateChatHook(Hook):
    """Generate answers to ``evaluation_inputs`` at points of the run (v0's arguments).

    Args:
        tokenizer: tokenizer or its config.
        evaluation_inputs: prompts (a string or a list).
        evaluation_images: for a LLaVA model, local image files: one per input, or one for
            all (v0 accepted URLs too; download them first, runs are often offline). Each
            prompt then shows its image first, as v0 did (``<image>\n`` + input).
        image_processor: the image processor (or its config) for ``evaluation_images``.
        system: system prompt for the first turn.
        prompt_template: an entry of ``PROMPT_TEMPLATE``, its name (``'qwen_chat'``) or dotted
            path; ``None`` sends the raw text.
        every_n_iters: also evaluate every N iterations.
        max_new_tokens: answer length limit (before training: 50).
        stop_word: deprecated single stop word.
        stop_words: extra stop strings (the template's STOP_WORDS are always used).
        generation_kwargs: overrides of the sampling settings (v0 defaults: do_sample=True,
            temperature=0.1, top_p=0.75, top_k=40).
    """

    priority = "LOW"

    def __init__(self, tokenizer, evaluation_inputs, evaluation_images=None,
                 image_processor=None, system="", prompt_template=None, every_n_iters=None,
                 max_new_tokens=600, stop_word=None, stop_words=None, generation_kwargs=None):
        self.tokenizer = build_from_cfg(tokenizer)
        if isinstance(evaluation_inputs, str):
            evaluation_inputs = [evaluation_inputs]
        self.evaluation_inputs = list(evaluation_inputs)
        self.images = _load_images(evaluation_images, len(self.evaluation_inputs))
        if self.images and image_processor is None:
            raise ConfigError("EvaluateChatHook: evaluation_images need image_processor")
        self.image_processor = (build_from_cfg(image_processor) if image_processor is not None
                                else None)
        self.system = system or ""
        if prompt_template is not None:  # a name, as the data pipeline accepts it too
            from xtuner.dataset.map_fns.template_map_fn import resolve_template

            prompt_template = resolve_template(prompt_template)
        self.prompt_template = prompt_template
        self.every_n_iters = every_n_iters
        self.max_new_tokens = max_new_tokens
        stops = list(stop_words or [])
        if stop_word is not None:
            stops.append(stop_word)
        if prompt_template is not None:
            stops += list(prompt_template.get("STOP_WORDS", []))
        self.stop_words = list(dict.fromkeys(stops))
        self.generation_kwargs = dict(do_sample=True, temperature=0.1, top_p=0.75, top_k=40)
        self.generation_kwargs.update(generation_kwargs or {})

    # -- generation -------------------------------------------------------------------------
    def _generate(self, model, max_new_tokens: int) -> list[str]:
        from transformers import GenerationConfig

        llm = model.llm
        device = next(llm.parameters()).device
        pad_id = self.tokenizer.pad_token_id
        if pad_id is None:
            pad_id = self.tokenizer.eos_token_id
        config = GenerationConfig(max_new_tokens=max_new_tokens, pad_token_id=pad_id,
                                  eos_token_id=self.tokenizer.eos_token_id,
                                  stop_strings=self.stop_words or None,
                                  **self.generation_kwargs)
        answers = []
        for i, text in enumerate(self.evaluation_inputs):
            if self.images:
                answers.append(self._generate_with_image(model, text, self.images[i], config))
                continue
            prompt = build_prompt(text, self.prompt_template, self.system)
            ids = self.tokenizer(prompt, return_tensors="pt").input_ids.to(device)
            out = llm.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                               generation_config=config, tokenizer=self.tokenizer)
            answers.append(prompt + self.tokenizer.decode(out[0, ids.shape[1]:],
                                                          skip_special_tokens=False))
        return answers

    def _generate_with_image(self, model, text: str, image, config) -> str:
        """One answer of a LLaVA model about ``image`` (its ``generate`` returns new tokens)."""
        from xtuner.chat.multimodal import ImageTokenizer
        from xtuner.dataset.llava import expand2square
        from xtuner.utils.constants import DEFAULT_IMAGE_TOKEN

        prompt = build_prompt(f"{DEFAULT_IMAGE_TOKEN}\n{text}", self.prompt_template,
                              self.system)
        device = next(model.llm.parameters()).device
        ids = torch.tensor([ImageTokenizer(self.tokenizer).encode(prompt)], device=device)
        mean = getattr(self.image_processor, "image_mean", None) or [0.5, 0.5, 0.5]
        square = expand2square(image, tuple(int(x * 255) for x in mean))
        pixels = self.image_processor(images=[square], return_tensors="pt")["pixel_values"]
        out = model.generate(ids, pixels.to(device), attention_mask=torch.ones_like(ids),
                             generation_config=config, tokenizer=self.tokenizer)
        return prompt + self.tokenizer.decode(out[0], skip_special_tokens=False)

    def _evaluate(self, runner, max_new_tokens: int, save_eval_output: bool = False) -> None:
        model = unwrap_model(runner.model)
        was_training = model.training
        checkpointing = model.is_checkpointing_activations
        use_cache = model.llm.config.use_cache
        if checkpointing:
            model.gradient_checkpointing_disable()
        model.llm.config.use_cache = True
        model.eval()
        try:
            answers = self._generate(model, max_new_tokens)
        finally:
            model.llm.config.use_cache = use_cache
            if checkpointing:
                model.gradient_checkpointing_enable()
            model.train(was_training)
        for i, answer in enumerate(answers):
            runner.logger.info(f"Sample output ({i}):\n{answer}\n")
        if save_eval_output:
            self._save(runner, answers)

    @master_only
    def _save(self, runner, answers: list[str]) -> None:
        folder = osp.join(runner.log_dir, "vis_data")
        os.makedirs(folder, exist_ok=True)
        path = osp.join(folder, f"eval_outputs_iter_{runner.iter}.txt")
        with open(path, "w", encoding="utf-8") as f:
            for i, answer in enumerate(answers):
                f.write(f"Eval output {i + 1}:\n{answer}\n\n")

    # -- hook points ------------------------------------------------------------------------
    def before_train(self, runner) -> None:
        runner.logger.info("before_train in EvaluateChatHook.")
        self._evaluate(runner, max_new_tokens=50)

    def _is_save_checkpoint(self, runner) -> bool:
        hooks = [h for h in runner.hooks if type(h).__name__ == "CheckpointHook"]
        if not hooks or not hooks[0].interval or hooks[0].interval <= 0:
            return False
        hook = hooks[0]
        if getattr(hook, "by_epoch", False):
            return False
        return (runner.iter + 1) % hook.interval == 0

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        save = self._is_save_checkpoint(runner)
        periodic = self.every_n_iters is not None and self.every_n_train_iters(
            runner, self.every_n_iters)
        if save or periodic:
            runner.logger.info("after_train_iter in EvaluateChatHook.")
            self._evaluate(runner, self.max_new_tokens, save_eval_output=save)

    def after_train(self, runner) -> None:
        runner.logger.info("after_train in EvaluateChatHook.")
        self._evaluate(runner, self.max_new_tokens)

    def after_val(self, runner) -> None:
        if self.every_n_iters is not None:
            return
        self._evaluate(runner, self.max_new_tokens)
