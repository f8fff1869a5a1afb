"""``ThroughputHook`` logs rates over the same window as the logged ``time``."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from mmengine.logging import MessageHub
from transformers import LlamaConfig

from xtuner.engine.hooks import ThroughputHook


def test_tokens_per_sec_is_the_window_tokens_over_the_window_time():
    """A slow iteration (a stall) in the window lowers the rate as it lowers the mean time;
    the last iteration alone would report 1000 tokens/s."""
    hub = MessageHub.get_instance("throughput_hook_test")
    config = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, vocab_size=100)
    llm = SimpleNamespace(config=config, parameters=lambda: iter([torch.zeros(3)]))
    runner = SimpleNamespace(model=SimpleNamespace(llm=llm), message_hub=hub,
                             log_processor=SimpleNamespace(window_size=2))
    hook = ThroughputHook()
    hook.before_train(runner)
    rates = []
    for tokens, seconds in ((500, 1.0), (1000, 4.0), (1000, 1.0)):
        hub.update_scalar("train/time", seconds)
        batch = {"data": {"input_ids": torch.ones(1, tokens, dtype=torch.long)}}
        hook.after_train_iter(runner, 0, data_batch=batch)
        rates.append(hub.get_scalar("train/tokens_per_sec").current())
    assert rates == pytest.approx([500.0, 1500 / 5.0, 2000 / 5.0])
