"""A dataset smaller than the warmup does not crash (XTuner v0 issue: small datasets failed)."""
from mmengine.optim import LinearLR

from xtuner.engine.runner.schedulers import drop_empty_schedulers


class _Runner:
    def __init__(self, schedulers):
        self.param_schedulers = schedulers


def test_warmup_shorter_than_one_iteration_is_dropped():
    warmup = dict(type=LinearLR, by_epoch=True, begin=0, end=0.09, convert_to_iter_based=True)
    cosine = dict(type="CosineAnnealingLR", by_epoch=True, begin=0.09, end=3,
                  convert_to_iter_based=True)
    runner = _Runner([warmup, cosine])
    drop_empty_schedulers(runner, epoch_length=10)  # 0.9 iterations of warmup
    assert runner.param_schedulers == [cosine]
    runner = _Runner([warmup, cosine])
    drop_empty_schedulers(runner, epoch_length=100)  # 9 iterations: kept
    assert runner.param_schedulers == [warmup, cosine]
