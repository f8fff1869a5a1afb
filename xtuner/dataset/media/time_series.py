"""``TimeSeriesTokenizeFunction``: the seed's time-series data on :class:`MediaTokenizeFunction`.

A media part is ``{"type": "time_series_url", "time_series_url": {"url": "data/x.wav",
"sampling_rate": 100}}`` (the rate is optional: a WAV file's own rate is used when it is
left out) and ``<TS_CONTEXT>`` in the text marks where the signal goes; it becomes
``<|ts|>`` + N x ``<TS_CONTEXT>`` + ``<|/ts|>`` with N the number of features the encoder
outputs for that many samples, computed from the encoder's config
(:func:`encoder_output_length`).
"""
from __future__ import annotations

import os.path as osp
from collections.abc import Callable

import numpy as np
import torch

from xtuner.utils.errors import ConfigError, DataError

from .loaders import load_signal, signal_info
from .tokenize_fn import MediaTokenizeFunction

__all__ = ["TimeSeriesTokenizeFunction", "TS_TOKENS", "encoder_output_length"]

#: The special tokens of a time-series span (start, context, end).
TS_TOKENS = ["<|ts|>", "<TS_CONTEXT>", "<|/ts|>"]


def _encoder_config(encoder):
    """A transformers config from a config, a model, a config dict or a folder."""
    from transformers import AutoConfig, PretrainedConfig

    from xtuner.model.utils import build_from_cfg

    encoder = build_from_cfg(encoder)
    if isinstance(encoder, PretrainedConfig):
        return encoder
    if isinstance(getattr(encoder, "config", None), PretrainedConfig):
        return encoder.config
    if isinstance(encoder, str):
        return AutoConfig.from_pretrained(encoder)
    raise ConfigError(f"encoder_config must be a transformers config, a model or a folder, got "
                      f"{type(encoder).__name__}")


def encoder_output_length(config, samples: int) -> int:
    """How many feature vectors a transformers signal encoder outputs for ``samples`` inputs.

    Covers the encoders with a strided convolutional front end described by ``conv_kernel``
    and ``conv_stride`` in their config (Wav2Vec2, HuBERT, WavLM, Data2VecAudio, UniSpeech,
    SEW...), with the optional adapter layers, the same arithmetic as their
    ``_get_feat_extract_output_lengths``.

    Raises:
        ConfigError: for a config without such a front end (give the tokenize function a
            ``num_features`` function instead).
    """
    kernels, strides = getattr(config, "conv_kernel", None), getattr(config, "conv_stride", None)
    if kernels is None or strides is None:
        raise ConfigError(f"cannot tell how many features a {type(config).__name__} outputs "
                          "per signal (no conv_kernel/conv_stride in its config); pass "
                          "num_features=<function of the number of samples>")
    length = int(samples)
    for kernel, stride in zip(kernels, strides):
        length = (length - kernel) // stride + 1 if length >= kernel else 0
    if getattr(config, "add_adapter", False) and length > 0:
        for _ in range(int(config.num_adapter_layers)):
            length = (length - 1) // int(config.adapter_stride) + 1
    return max(length, 0)


class TimeSeriesTokenizeFunction(MediaTokenizeFunction):
    """Time-series chat records (the seed's ``TimeSeriesTokenizeFunction``).

    Args:
        tokenizer: the tokenizer (or its config dict); ``TS_TOKENS`` are added to it.
        encoder_config: the encoder's transformers config (or model, config dict, folder),
            to count its features per signal.
        media_root: the folder relative ``url`` values are resolved against.
        max_length: as for :class:`MediaTokenizeFunction`.
        chat_template: as for :class:`MediaTokenizeFunction`.
        max_samples: keep at most this many samples of a signal (the seed: 240000).
        channels: ``'mean'`` (default) averages the channels into one, for encoders that
            take a 1-D signal (Wav2Vec2-style); ``'keep'`` gives ``(samples, channels)``.
        normalize: z-score each channel (zero mean, unit variance), as the seed does.
        num_features: a function ``samples -> features`` for encoders
            :func:`encoder_output_length` does not cover.
    """

    media_type = "time_series_url"
    placeholder = "<TS_CONTEXT>"
    start_token, context_token, end_token = TS_TOKENS

    def __init__(self, tokenizer, encoder_config=None, media_root: str = ".",
                 max_length: int | None = None, chat_template: str | None = None,
                 max_samples: int | None = None, channels: str = "mean",
                 normalize: bool = True, num_features: Callable[[int], int] | None = None):
        super().__init__(tokenizer, media_root=media_root, max_length=max_length,
                         chat_template=chat_template)
        if channels not in ("mean", "keep"):
            raise ConfigError(f"channels must be 'mean' or 'keep', got {channels!r}")
        if num_features is None:
            if encoder_config is None:
                raise ConfigError("TimeSeriesTokenizeFunction needs encoder_config (or "
                                  "num_features) to know how many tokens a signal takes")
            config = _encoder_config(encoder_config)
            encoder_output_length(config, 1)  # fail now for an encoder it cannot count
            self._count = lambda samples: encoder_output_length(config, samples)
        else:
            self._count = num_features
        self.max_samples = max_samples
        self.channels = channels
        self.normalize = normalize

    def media_reference(self, part: dict) -> dict:
        url = part.get("url")
        if not isinstance(url, str) or not url:
            raise DataError(f"a time_series_url part needs a 'url' string, got {part}")
        path = url if osp.isabs(url) else osp.join(self.media_root, url)
        samples, file_rate = signal_info(path)
        if self.max_samples is not None:
            samples = min(samples, self.max_samples)
        rate = part.get("sampling_rate", file_rate)
        return {"path": path, "samples": int(samples), "sampling_rate": rate}

    def num_features(self, reference: dict) -> int:
        return int(self._count(reference["samples"]))

    def load(self, reference: dict) -> torch.Tensor:
        signal, _ = load_signal(reference["path"])
        signal = signal[:reference["samples"]]
        if len(signal) != reference["samples"]:
            raise DataError(f"{reference['path']}: {len(signal)} samples, "
                            f"{reference['samples']} when the data was tokenized (the file "
                            "changed: clear the cache)")
        if self.normalize:
            std = signal.std(axis=0, keepdims=True)
            signal = (signal - signal.mean(axis=0, keepdims=True)) / np.where(std > 0, std, 1.0)
        if self.channels == "mean":
            signal = signal.mean(axis=1)
        return torch.from_numpy(np.ascontiguousarray(signal, dtype=np.float32))
