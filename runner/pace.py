"""How fast a run trains, and what that means for whoever waits for it: after its first seconds, how long the
whole run will take (on a CPU, with the recipe that gets a result in minutes when it is long); after its first
epoch, how long is left; and, once, a notice in plain words when the run's speed falls far below what it was,
or the load is above the cores, because other busy processes share the CPU.

It reads the host's clock between steps (no device synchronisation) and is told how many images each step
took; it never changes what the run computes.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

from runner.device import available_cores

log = logging.getLogger("runner")

WINDOW_S = 5.0  # seconds of training per speed measurement
SLOWER = 0.5  # a window this much slower than the best one means another process took the cores
LONG_S = 20 * 60  # a run this long on a CPU gets pointed at the recipes that take minutes
CPU_ADVICE = (
    "experiment=cpu_quick reached 84% test accuracy in about 6 minutes on this project's 2-core CPU, and "
    "data.subset=2000 trainer.epochs=1 tries a setting in under a minute (docs/speed.md)"
)


def duration(seconds: float) -> str:
    """12 s, 4 min 10 s, 2 h 05 min."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def epoch_count(epochs: float) -> str:
    """4 epochs; 2.46 epochs where a time budget's last epoch is part of one."""
    return f"{round(epochs, 2):g} epochs"


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # not on Windows
        return None


class Pace:
    """The run's speed in windows of ``WINDOW_S`` seconds of training (reset at each epoch's start)."""

    def __init__(
        self,
        total_images: int,
        epochs: float,
        on_cpu: bool,
        clock: Callable[[], float] = time.perf_counter,
        load: Callable[[], float | None] = load_average,
        cores: int | None = None,
    ):
        self.total_images = total_images  # what the rest of the run will train, from the first step on
        self.epochs = epochs
        self.on_cpu = on_cpu
        self.clock = clock
        self.load = load
        self.cores = cores or available_cores()
        self.best: float | None = None  # the fastest window's images per second
        self.trained = 0  # images trained in this attempt so far
        self.estimated = False  # the whole run's estimate was given
        self.warned = False  # the notice of a shared CPU was given
        self.told_left = False  # the time left after the first epoch was given
        self.start_epoch()

    def start_epoch(self) -> None:
        self.window_start = self.clock()
        self.window_images = 0

    def step(self, images: int) -> None:
        self.trained += images
        self.window_images += images
        now = self.clock()
        if now - self.window_start < WINDOW_S:
            return
        rate = self.window_images / (now - self.window_start)
        self.window_start, self.window_images = now, 0
        if not self.estimated:
            self.estimated = True
            self.estimate(rate)
        if self.best is not None:
            self.watch(rate)
        self.best = max(self.best or 0.0, rate)

    def estimate(self, rate: float) -> None:
        """After the first window: the whole run at this speed."""
        left = (self.total_images - self.trained) / rate
        what = "the epoch takes" if self.epochs == 1 else f"the {epoch_count(self.epochs)} take"
        message = f"Training at {rate:,.0f} images/s: {what} about {duration(left)}"
        message += ", plus evaluation."
        if self.on_cpu and left > LONG_S:
            message += f" That is long for a CPU: {CPU_ADVICE}."
        log.info("%s", message)

    def watch(self, rate: float) -> None:
        """Say once that the CPU is shared, when the speed or the load shows it."""
        if self.warned or not self.on_cpu:
            return
        load = self.load()
        slower = rate < SLOWER * self.best
        if slower or (load is not None and load > self.cores + 1):
            self.warned = True
            load_text = f"load average {load:.1f} on {self.cores} cores" if load is not None else ""
            if slower:
                seen = f"its speed fell from {self.best:,.0f} to {rate:,.0f} images/s"
                seen += f" ({load_text})" if load_text else ""
            else:
                seen = f"the {load_text}"
            log.warning(
                "This run is sharing the CPU with other busy processes: %s. Runs that share the cores slow each "
                "other down, often many times over. Give each its own thread budget: trainer.threads=1 for runs "
                "started side by side, sweep.cpu_jobs=N with hydra/launcher=gpus for a sweep, or "
                "OMP_NUM_THREADS=1.",
                seen,
            )

    def epoch_end(self, epoch: int, epochs_left: float, epoch_time: float, eval_time: float | None) -> None:
        """After the first epoch of this attempt: how long the rest will take (``epoch`` is the run's epoch
        number, which a resumed run counts from its start; ``epochs_left`` what this attempt still trains)."""
        if epochs_left <= 0 or self.told_left:
            return
        self.told_left = True
        left = epochs_left * (epoch_time + (eval_time or 0.0))
        evaluation = f" (evaluation {duration(eval_time)})" if eval_time is not None else ""
        log.info(
            "Epoch %d took %s%s: about %s left for the other %s%s.",
            epoch,
            duration(epoch_time),
            evaluation,
            duration(left),
            "epoch" if epochs_left == 1 else epoch_count(epochs_left),
            ""
            if eval_time is not None
            else (", plus its evaluation" if epochs_left == 1 else ", plus their evaluations"),
        )
