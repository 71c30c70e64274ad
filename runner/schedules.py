"""Learning-rate schedules as multipliers of the base rate, stepped once per optimizer step.

Each function is built by the config with ``_partial_: true`` and called by the builder with the
optimizer and the run's length; it returns a ``torch.optim.lr_scheduler.LambdaLR``. Every schedule takes
``warmup_epochs``: a linear ramp from 1/warmup_steps up to 1 that multiplies the schedule (Goyal et al. 2017).
Times are in epochs in the config and converted to steps here.
"""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def _with_warmup(multiplier, warmup_steps: int):
    def scaled(step: int) -> float:
        warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
        return warm * multiplier(step)

    return scaled


def _scheduler(optimizer: Optimizer, multiplier, steps_per_epoch: int, warmup_epochs: float) -> LambdaLR:
    return LambdaLR(optimizer, _with_warmup(multiplier, round(warmup_epochs * steps_per_epoch)))


def constant(optimizer: Optimizer, steps_per_epoch: int, epochs: int, warmup_epochs: float = 0) -> LambdaLR:
    """The base rate throughout."""
    return _scheduler(optimizer, lambda step: 1.0, steps_per_epoch, warmup_epochs)


def cosine(
    optimizer: Optimizer, steps_per_epoch: int, epochs: int, warmup_epochs: float = 0, final: float = 0.0
) -> LambdaLR:
    """Half a cosine from the base rate to ``final`` times it (Loshchilov and Hutter 2017, no restarts)."""
    total = max(1, steps_per_epoch * epochs)

    def multiplier(step: int) -> float:
        progress = min(step, total) / total
        return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * progress))

    return _scheduler(optimizer, multiplier, steps_per_epoch, warmup_epochs)


def linear(
    optimizer: Optimizer, steps_per_epoch: int, epochs: int, warmup_epochs: float = 0, final: float = 0.0
) -> LambdaLR:
    """A straight line from the base rate to ``final`` times it at the last step."""
    total = max(1, steps_per_epoch * epochs)
    return _scheduler(
        optimizer, lambda step: 1 - (1 - final) * min(step, total) / total, steps_per_epoch, warmup_epochs
    )
