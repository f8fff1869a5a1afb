"""Training runs for the ``loss_reduction`` tests, importable by a ``torchrun`` child.

One optimizer step of plain SGD (lr 1, no momentum) through xtuner's real runner and train
loop: the change of every weight is minus the step's gradient.
"""
from __future__ import annotations

import torch

IGNORE = -100


def samples(vocab: int) -> list[dict]:
    """Four samples with very different numbers of trained tokens."""
    g = torch.Generator().manual_seed(0)
    out = []
    for length, prompt in ((30, 25), (6, 1), (18, 4), (9, 7)):
        ids = torch.randint(5, vocab, (length,), generator=g).tolist()
        out.append({"input_ids": ids, "labels": [IGNORE] * prompt + ids[prompt:]})
    return out


def build_model(model_dir: str, loss_reduction: str):
    from transformers import AutoModelForCausalLM

    from xtuner.model import SupervisedFinetune

    return SupervisedFinetune(
        llm=dict(type=AutoModelForCausalLM.from_pretrained,
                 pretrained_model_name_or_path=model_dir, dtype=torch.float32),
        use_activation_checkpointing=False, use_liger_kernel=False,
        loss_reduction=loss_reduction)


def sgd_step_delta(model_dir: str, data: list[dict], work_dir: str, accumulative_counts: int,
                   loss_reduction: str, launcher: str = "none") -> dict[str, torch.Tensor]:
    """Train ``len(data) / world / accumulative_counts`` == 1 optimizer step of micro-batches
    of one sample; return each weight's change."""
    from mmengine.dataset import DefaultSampler

    from xtuner.dataset.collate_fns import default_collate_fn
    from xtuner.engine.runner import TrainLoop
    from xtuner.engine.runner.runner import Runner

    model = build_model(model_dir, loss_reduction)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    runner = Runner(
        model=model, work_dir=work_dir, launcher=launcher,
        env_cfg=dict(dist_cfg=dict(backend="gloo")),
        train_dataloader=dict(batch_size=1, dataset=data, num_workers=0,
                              sampler=dict(type=DefaultSampler, shuffle=False),
                              collate_fn=dict(type=default_collate_fn, pad_index=0)),
        optim_wrapper=dict(optimizer=dict(type=torch.optim.SGD, lr=1.0),
                           accumulative_counts=accumulative_counts),
        train_cfg=dict(type=TrainLoop, max_iters=accumulative_counts),
        default_hooks=dict(checkpoint=None), randomness=dict(seed=0))
    runner.train()
    return {k: (v.detach() - before[k]) for k, v in model.named_parameters()}
