"""Learning-rate schedules, stepped once per optimizer step.

Each schedule function is built by the config with ``_partial_: true`` and called by the builder with the
optimizer and the run's length (``steps_per_epoch``, ``epochs``, which a time budget may end inside an epoch:
3.6); times are in epochs in the config and converted to whole steps here. Most return a
``torch.optim.lr_scheduler.LambdaLR`` whose multiplier of the base rate is the schedule times a linear warm-up:
``min(1, (step + 1) / warmup_steps)`` over the first ``warmup_epochs`` (Goyal et al. 2017). A schedule that
needs the epoch's results (reduce on plateau) also has ``epoch_end(metrics)``, which the loop calls after each
epoch.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, OneCycleLR, ReduceLROnPlateau


def warmup_multiplier(step: int, warmup_steps: int) -> float:
    return min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0


def _steps(epochs: float, steps_per_epoch: int) -> int:
    return round(epochs * steps_per_epoch)


def _scheduler(optimizer: Optimizer, multiplier, steps_per_epoch: int, warmup_epochs: float) -> LambdaLR:
    warmup_steps = _steps(warmup_epochs, steps_per_epoch)
    return LambdaLR(optimizer, lambda step: warmup_multiplier(step, warmup_steps) * multiplier(step))


def constant(optimizer: Optimizer, steps_per_epoch: int, epochs: float, warmup_epochs: float = 0) -> LambdaLR:
    """The base rate throughout."""
    return _scheduler(optimizer, lambda step: 1.0, steps_per_epoch, warmup_epochs)


def step(
    optimizer: Optimizer,
    steps_per_epoch: int,
    epochs: float,
    warmup_epochs: float = 0,
    step_epochs: float = 10,
    factor: float = 0.1,
) -> LambdaLR:
    """Step decay: multiply the rate by ``factor`` every ``step_epochs`` epochs."""
    interval = max(1, _steps(step_epochs, steps_per_epoch))
    return _scheduler(optimizer, lambda index: factor ** (index // interval), steps_per_epoch, warmup_epochs)


def multistep(
    optimizer: Optimizer,
    steps_per_epoch: int,
    epochs: float,
    warmup_epochs: float = 0,
    milestone_fractions: tuple[float, ...] = (0.5, 0.75),
    factor: float = 0.1,
) -> LambdaLR:
    """Multiply the rate by ``factor`` at each milestone, given as fractions of the run (He et al. 2016 drop
    it tenfold at 50% and 75% of training), so the schedule keeps its shape when ``trainer.epochs`` changes."""
    milestones = [_steps(fraction * epochs, steps_per_epoch) for fraction in milestone_fractions]
    return _scheduler(
        optimizer,
        lambda index: factor ** sum(index >= milestone for milestone in milestones),
        steps_per_epoch,
        warmup_epochs,
    )


def exponential(
    optimizer: Optimizer, steps_per_epoch: int, epochs: float, warmup_epochs: float = 0, factor: float = 0.9
) -> LambdaLR:
    """Exponential decay: ``factor`` per epoch, applied smoothly at every step (factor ** (step / steps_per_epoch))."""
    return _scheduler(optimizer, lambda index: factor ** (index / steps_per_epoch), steps_per_epoch, warmup_epochs)


def half_cosine(progress: float, final: float) -> float:
    """From 1 at progress 0 to ``final`` at progress 1 along half a cosine."""
    return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * progress))


def cosine(
    optimizer: Optimizer, steps_per_epoch: int, epochs: float, warmup_epochs: float = 0, final: float = 0.0
) -> LambdaLR:
    """Half a cosine from the base rate to ``final`` times it (Loshchilov and Hutter 2017, no restarts)."""
    total = max(1, _steps(epochs, steps_per_epoch))

    def multiplier(index: int) -> float:
        return half_cosine(min(index, total) / total, final)

    return _scheduler(optimizer, multiplier, steps_per_epoch, warmup_epochs)


def linear(
    optimizer: Optimizer, steps_per_epoch: int, epochs: float, warmup_epochs: float = 0, final: float = 0.0
) -> LambdaLR:
    """A straight line from the base rate to ``final`` times it at the last step."""
    total = max(1, _steps(epochs, steps_per_epoch))
    return _scheduler(
        optimizer, lambda index: 1 - (1 - final) * min(index, total) / total, steps_per_epoch, warmup_epochs
    )


def inverse_sqrt(
    optimizer: Optimizer, steps_per_epoch: int, epochs: float, warmup_epochs: float = 0, timescale_epochs: float = 1
) -> LambdaLR:
    """Inverse square-root decay (Vaswani et al. 2017): sqrt(T / max(step + 1, T)) with T the timescale
    (the warm-up length when there is one, else ``timescale_epochs``), so warm-up and decay meet at 1."""
    timescale = max(1, _steps(warmup_epochs or timescale_epochs, steps_per_epoch))
    return _scheduler(
        optimizer, lambda index: math.sqrt(timescale / max(index + 1, timescale)), steps_per_epoch, warmup_epochs
    )


def cosine_restarts(
    optimizer: Optimizer,
    steps_per_epoch: int,
    epochs: float,
    warmup_epochs: float = 0,
    cycle_epochs: float = 10,
    cycle_multiplier: float = 1.0,
    final: float = 0.0,
) -> LambdaLR:
    """SGDR (Loshchilov and Hutter 2017): cosine cycles from the base rate to ``final`` times it, restarting
    at the base rate; the first cycle lasts ``cycle_epochs`` and each next one ``cycle_multiplier`` times
    longer. The ends of cycles are where snapshot ensembles (Huang et al. 2017) take their snapshots.
    (torch's CosineAnnealingWarmRestarts takes no warm-up and integer multipliers only.)"""
    first = max(1, _steps(cycle_epochs, steps_per_epoch))

    def multiplier(index: int) -> float:
        for start, length in _cycles(first, cycle_multiplier):
            if index < start + length:
                return half_cosine((index - start) / length, final)

    scheduler = _scheduler(optimizer, multiplier, steps_per_epoch, warmup_epochs)
    # Where the rate is lowest, the snapshot ensemble (runner.callbacks.averaging) takes its snapshots.
    scheduler.cycle_ends = cycle_ends(steps_per_epoch, epochs, cycle_epochs, cycle_multiplier)
    return scheduler


def _cycles(first_length: int, cycle_multiplier: float) -> Iterator[tuple[int, int]]:
    """(first step, length) of every cycle of ``cosine_restarts``, each cycle_multiplier times longer."""
    start, length = 0, first_length
    while True:
        yield start, length
        start, length = start + length, max(1, round(length * cycle_multiplier))


def cycle_ends(steps_per_epoch: int, epochs: float, cycle_epochs: float, cycle_multiplier: float) -> list[int]:
    """The step counts at which the cycles of ``cosine_restarts`` end within the run's steps."""
    total = _steps(epochs, steps_per_epoch)
    first = max(1, _steps(cycle_epochs, steps_per_epoch))
    within = itertools.takewhile(lambda cycle: sum(cycle) <= total, _cycles(first, cycle_multiplier))
    return [start + length for start, length in within]


def onecycle(
    optimizer: Optimizer,
    steps_per_epoch: int,
    epochs: float,
    warmup_epochs: float = 0,
    peak_fraction: float = 0.3,
    initial_division: float = 25.0,
    final_division: float = 1e4,
    cycle_momentum: bool = True,
    base_momentum: float = 0.85,
    max_momentum: float = 0.95,
    anneal: str = "cos",
) -> OneCycleLR:
    """The one-cycle policy (Smith and Topin 2019) as ``torch.optim.lr_scheduler.OneCycleLR``: a rise from
    base / initial_division to the base rate, then a fall to base / (initial_division * final_division), with
    momentum cycling the opposite way. The rise is the warm-up: it lasts ``warmup_epochs`` when set, else
    ``peak_fraction`` of the run. ``anneal``: ``cos`` curves, ``linear`` straight lines (the triangular
    schedule of airbench)."""
    # OneCycleLR divides by the length of each phase: the rise needs at least 2 steps, the fall at least 1.
    total = max(3, _steps(epochs, steps_per_epoch))
    rise = warmup_epochs / epochs if warmup_epochs else peak_fraction
    has_momentum = any(group.get("momentum", 0) > 0 or "betas" in group for group in optimizer.param_groups)
    return OneCycleLR(
        optimizer,
        max_lr=[group["lr"] for group in optimizer.param_groups],
        total_steps=total,
        pct_start=min(max(rise, 2 / total), 1 - 1 / total),
        anneal_strategy=anneal,
        cycle_momentum=cycle_momentum and has_momentum,
        base_momentum=base_momentum,
        max_momentum=max_momentum,
        div_factor=initial_division,
        final_div_factor=final_division,
    )


class PlateauSchedule:
    """Warm-up, then ``torch.optim.lr_scheduler.ReduceLROnPlateau``: divide the rate by 1 / ``factor`` when
    the validation loss (the training loss when there is no validation split) has not improved for
    ``patience`` epochs."""

    def __init__(self, optimizer: Optimizer, warmup: LambdaLR, warmup_steps: int, plateau: ReduceLROnPlateau):
        self.optimizer = optimizer
        self.warmup = warmup
        self.warmup_steps = warmup_steps
        self.plateau = plateau
        self.steps = 0

    def step(self) -> None:
        self.steps += 1
        if self.steps <= self.warmup_steps:
            self.warmup.step()

    def epoch_end(self, metrics: dict) -> None:
        if self.steps >= self.warmup_steps:
            value = metrics.get("val_loss")
            self.plateau.step(metrics["train_loss"] if value is None else value)

    def get_last_lr(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        return {"steps": self.steps, "warmup": self.warmup.state_dict(), "plateau": self.plateau.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.steps = state["steps"]
        self.warmup.load_state_dict(state["warmup"])
        self.plateau.load_state_dict(state["plateau"])


def reduce_on_plateau(
    optimizer: Optimizer,
    steps_per_epoch: int,
    epochs: float,
    warmup_epochs: float = 0,
    factor: float = 0.1,
    patience: int = 3,
    threshold: float = 1e-4,
    cooldown: int = 0,
    min_lr: float = 0.0,
) -> PlateauSchedule:
    """Reduce the rate when the monitored loss stops improving (``epoch_end``), after a linear warm-up."""
    warmup_steps = _steps(warmup_epochs, steps_per_epoch)
    warmup = LambdaLR(optimizer, lambda index: warmup_multiplier(index, warmup_steps))
    plateau = ReduceLROnPlateau(
        optimizer, mode="min", factor=factor, patience=patience, threshold=threshold, cooldown=cooldown, min_lr=min_lr
    )
    return PlateauSchedule(optimizer, warmup, warmup_steps, plateau)
