"""Shared check of the activation-checkpointing tests: a run gave the loss and the gradients of
the reference run."""
from __future__ import annotations

import pytest
import torch


def step_loss_and_grads(model, batch) -> tuple[float, dict[str, torch.Tensor]]:
    """One forward and backward pass: the loss and every parameter gradient it produced."""
    loss = model(batch, mode="loss")["loss"]
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters()
                         if p.requires_grad and p.grad is not None}


def assert_same_loss_and_grads(reference, other) -> None:
    """``(loss, grads)`` pairs agree: the loss to 1e-6, each gradient to float32 rounding."""
    (loss_ref, grads_ref), (loss, grads) = reference, other
    assert loss == pytest.approx(loss_ref, rel=1e-6)
    assert grads.keys() == grads_ref.keys()
    for name in grads_ref:
        torch.testing.assert_close(grads[name], grads_ref[name], atol=1e-6, rtol=1e-5)
