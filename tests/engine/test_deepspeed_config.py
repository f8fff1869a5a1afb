"""``--deepspeed``: the JSON's numbers win over xtuner's defaults, the config's own values win
over the JSON, and what DeepSpeed cannot honour is an error rather than dropped."""
from __future__ import annotations

import json

import pytest
import torch
from mmengine.config import Config

from xtuner.engine.deepspeed_config import apply_deepspeed, fill_deepspeed_auto_values
from xtuner.utils.errors import ConfigError


def _cfg(**wrapper) -> Config:
    base = dict(type="AmpOptimWrapper", optimizer=dict(type="AdamW", lr=1e-4))
    return Config(dict(optim_wrapper={**base, **wrapper}, train_dataloader=dict(batch_size=2)))


def _ds(**values) -> dict:
    ds = {"gradient_accumulation_steps": "auto", "train_micro_batch_size_per_gpu": "auto",
          "gradient_clipping": "auto", "zero_optimization": {"stage": 2}}
    ds.update(values)
    return ds


def test_json_numbers_win_over_defaults():
    ds = fill_deepspeed_auto_values(_ds(gradient_clipping=0.3, gradient_accumulation_steps=4),
                                    _cfg())
    assert ds["gradient_clipping"] == 0.3
    assert ds["gradient_accumulation_steps"] == 4
    assert ds["train_micro_batch_size_per_gpu"] == 2


def test_auto_values_get_the_defaults_or_the_configs():
    ds = fill_deepspeed_auto_values(_ds(), _cfg())
    assert (ds["gradient_clipping"], ds["gradient_accumulation_steps"]) == (1.0, 1)
    ds = fill_deepspeed_auto_values(_ds(), _cfg(clip_grad=dict(max_norm=0.5),
                                                accumulative_counts=8))
    assert (ds["gradient_clipping"], ds["gradient_accumulation_steps"]) == (0.5, 8)
    # clip_grad=None is mmengine's "no clipping": DeepSpeed's 0.
    assert fill_deepspeed_auto_values(_ds(), _cfg(clip_grad=None))["gradient_clipping"] == 0.0


def test_config_values_win_over_json_numbers():
    ds = fill_deepspeed_auto_values(_ds(gradient_clipping=0.3, train_micro_batch_size_per_gpu=8),
                                    _cfg(clip_grad=dict(max_norm=2.0)))
    assert ds["gradient_clipping"] == 2.0
    assert ds["train_micro_batch_size_per_gpu"] == 2


@pytest.mark.parametrize("wrapper, named", [
    (dict(clip_grad=dict(type="value", clip_value=0.1)), "clip_grad"),
    (dict(clip_grad=dict(max_norm=1.0, norm_type=1)), "clip_grad"),
    (dict(some_option=3), "optim_wrapper.some_option"),
])
def test_what_deepspeed_cannot_do_is_an_error(wrapper, named):
    with pytest.raises(ConfigError, match=named):
        fill_deepspeed_auto_values(_ds(), _cfg(**wrapper))


def test_paramwise_cfg_and_constructor_are_kept(tmp_path):
    pytest.importorskip("deepspeed")
    path = tmp_path / "ds.json"
    path.write_text(json.dumps(_ds(gradient_clipping=0.25)))
    cfg = _cfg(paramwise_cfg=dict(norm_decay_mult=0.0), constructor="MyConstructor",
               loss_scale="dynamic", dtype="bfloat16")
    apply_deepspeed(cfg, str(path))
    assert cfg.optim_wrapper == dict(type="xtuner.engine._strategy.DeepSpeedOptimWrapper",
                                     optimizer=dict(type="AdamW", lr=1e-4),
                                     paramwise_cfg=dict(norm_decay_mult=0.0),
                                     constructor="MyConstructor")
    assert cfg.strategy.gradient_clipping == 0.25 == cfg.strategy.config["gradient_clipping"]


def test_paramwise_cfg_reaches_the_optimizer():
    """mmengine builds a DeepSpeedOptimWrapper's optimizer with the paramwise_cfg kept above."""
    pytest.importorskip("deepspeed")
    from mmengine.optim import build_optim_wrapper

    from xtuner.engine._strategy import DeepSpeedStrategy  # noqa: F401 - registers wrappers

    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.LayerNorm(2))
    wrapper = build_optim_wrapper(model, dict(
        type="xtuner.engine._strategy.DeepSpeedOptimWrapper",
        optimizer=dict(type="AdamW", lr=1e-3, weight_decay=0.1),
        paramwise_cfg=dict(norm_decay_mult=0.0)))
    decays = sorted(group["weight_decay"] for group in wrapper.optimizer.param_groups)
    assert decays[0] == 0.0 and decays[-1] == 0.1


class _Engine:
    """What the wrapper calls on a DeepSpeed engine: two micro-batches per optimizer step
    (the norm is DeepSpeed's from the last applied step, as the real engine keeps it)."""

    def __init__(self, norms):
        self.norms, self.micro_steps, self.applied, self.norm = list(norms), 0, False, None

    def step(self):
        self.micro_steps += 1
        self.applied = self.micro_steps % 2 == 0
        if self.applied:
            self.norm = self.norms.pop(0)

    def was_step_applied(self):
        return self.applied

    def get_global_grad_norm(self):
        return self.norm


def test_the_deepspeed_wrapper_logs_each_applied_steps_gradient_norm():
    """mmengine's DeepSpeed wrapper logs no gradient norm; ours logs DeepSpeed's, once per
    optimizer step, like the plain wrapper's clipping does."""
    pytest.importorskip("deepspeed")
    from mmengine.logging import MessageHub

    from xtuner.engine._strategy import DeepSpeedOptimWrapper

    hub = MessageHub.get_instance("test_deepspeed_grad_norm")
    wrapper = DeepSpeedOptimWrapper(torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=1))
    wrapper.model = _Engine([torch.tensor(3.0), 5.0])
    logged = []
    for _ in range(4):
        wrapper.step()
        logged.append(list(hub.get_scalar("train/grad_norm").data[0])
                      if "train/grad_norm" in hub.log_scalars else [])
    assert logged == [[], [3.0], [3.0], [3.0, 5.0]]


def test_one_process_without_launcher_gets_a_one_rank_group():
    """DeepSpeed would otherwise look for an MPI job (and need mpi4py) to find its rank."""
    from xtuner.engine.train_setup import _single_process_rendezvous

    env = {}
    _single_process_rendezvous(env)
    assert {k: env[k] for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR")} == {
        "RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1"}
    assert 0 < int(env["MASTER_PORT"]) < 65536
    env = {"MASTER_PORT": "29999", "MASTER_ADDR": "10.0.0.1"}
    _single_process_rendezvous(env)
    assert env["MASTER_PORT"] == "29999" and env["MASTER_ADDR"] == "10.0.0.1"


def test_deepspeed_on_a_config_that_already_uses_it_may_only_repeat_its_stage(tmp_path):
    """A config with its own DeepSpeed strategy keeps it: --deepspeed with the same ZeRO stage
    adds nothing; another stage is refused in one line rather than silently lost."""
    pytest.importorskip("deepspeed")
    zero2 = tmp_path / "zero2.json"
    zero2.write_text(json.dumps(_ds()))
    cfg = _cfg()
    apply_deepspeed(cfg, str(zero2))
    assert cfg.strategy.config["zero_optimization"]["stage"] == 2
    assert apply_deepspeed(cfg, str(zero2)) is cfg  # the same stage: unchanged
    zero3 = tmp_path / "zero3.json"
    zero3.write_text(json.dumps(_ds(zero_optimization={"stage": 3})))
    with pytest.raises(ConfigError, match=r"asks for ZeRO-3 but the config already trains "
                                          r"with ZeRO-2 .*drop --deepspeed"):
        apply_deepspeed(cfg, str(zero3))
    assert cfg.strategy.config["zero_optimization"]["stage"] == 2
