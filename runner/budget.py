"""A run held to a time budget (``trainer.time_budget``): from the measured seconds of its steps, evaluations and
record writes, the number of steps whose run ends, ``summary.json`` written, within the budget from command start.
The last epoch may end early, as airbench's fractional epoch counts do, so that no budget leaves most of an epoch
unused.

The length is fixed once, before the learning-rate schedule is built for it (a schedule stretched or rebuilt
mid-run would be another schedule), and kept in the checkpoint, so that a resumed run trains to the same length
without measuring again. The measurement itself is ``runner.loop.measure``: throwaway steps whose every state is
put back. Where the steps then run slower than measured, past the margin, the ``Deadline`` ends the training
early, the schedule unfinished, so that the run still ends within its budget.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

from runner.errors import ConfigError

# Of the predicted time, for what the measurement does not see: a shared CPU's speed drifting over the run, the
# callbacks' work at their sampled steps, the progress bar, the log, a first epoch slower than the next. Measured
# on the 2-core CPU (2026-12-01, docs/speed.md): first epochs 6-20% longer than the throwaway steps predicted.
MARGIN = 0.10


def measuring_seconds(budget_s: float) -> float:
    """How long the steps are measured: 2% of the budget, at most 6 s. On this project's CPU, 2 s windows of the
    same steps, back to back, spread from 0.130 to 0.183 s a step (2026-12-01, docs/speed.md): a longer look
    averages several; a short budget cannot spare one."""
    return min(6.0, 0.02 * budget_s)


def process_start() -> float | None:
    """When this process started, on ``time.time()``'s clock, from its start time in /proc (Linux): a budget
    from command start then counts the interpreter's start and the imports (seconds on a CPU) before any line of
    the runner ran. None where there is no /proc."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()  # after "pid (command)"
        ticks = int(fields[19])  # starttime, field 22 of proc(5), in clock ticks since boot
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None
    return time.time() - age


@dataclass
class Costs:
    """Seconds of the parts of a run, measured on throwaway steps (``runner.loop.measure``), and how many of each
    part the run does."""

    step_s: float  # one training step (> 0)
    image_s: float  # evaluating one image, through the run's test-time views
    write_s: float  # one record written (a checkpoint's worth of bytes, flushed to disk)
    steps_per_epoch: int
    test_images: int
    validation_images: int = 0  # evaluated after every epoch
    evaluations: int = 1  # networks scored at each evaluation: the run's own and the averages' (an EMA)

    @property
    def test_s(self) -> float:
        """One test evaluation."""
        return self.evaluations * self.image_s * self.test_images

    @property
    def validation_s(self) -> float:
        """One validation, after every epoch."""
        return self.evaluations * self.image_s * self.validation_images

    def finish_s(self) -> float:
        """What follows a run's last step: its last epoch's validation and test evaluation, and the records."""
        return self.validation_s + self.test_s + 4 * self.write_s

    def besides_steps_s(self, epochs: int, eval_every: int, checkpoint_every: int) -> float:
        """What ``epochs`` epochs cost besides their steps: their validations, test evaluations and records."""
        tests = math.ceil(epochs / eval_every)  # every eval_every-th epoch, and the last
        checkpoints = math.ceil(epochs / checkpoint_every)
        writes = epochs + tests + checkpoints + 2  # metrics rows, test logits, checkpoints, the two summaries
        return epochs * self.validation_s + tests * self.test_s + writes * self.write_s

    def seconds(self, steps: int, eval_every: int, checkpoint_every: int) -> float:
        """Training ``steps`` steps with the evaluations and records of the epochs they make (a last one cut short
        counts as an epoch), to the summary written."""
        epochs = math.ceil(steps / self.steps_per_epoch)
        return steps * self.step_s + self.besides_steps_s(epochs, eval_every, checkpoint_every)


@dataclass
class Deadline:
    """When a budget run must have written its summary (on ``time.time()``), the step time measured before it
    began, and what follows the last step (its evaluation and records, with the margin). A CPU's speed drifts:
    steps that run slower than measured, past what the margin holds, end the training early rather than the run
    late, and what follows them is taken to run as much slower."""

    end: float
    step_s: float
    finish_s: float

    def last_step(self, now: float, observed_step_s: float) -> bool:
        """Whether the step about to start must be the last one: after another, the finish would end too late."""
        slower = max(1.0, observed_step_s / self.step_s)
        return now + 2 * self.step_s * slower + self.finish_s * slower > self.end


def choose_steps(available_s: float, costs: Costs, eval_every: int, checkpoint_every: int) -> int:
    """The most steps whose predicted time, with the margin, fits in ``available_s``; 0 when not even one does.
    The last epoch may end early: a budget held to whole epochs would leave up to one of them unused."""
    best, epochs = 0, 1
    while True:
        # The steps that end inside epoch ``epochs`` share its evaluations and records; each adds a step's time.
        first = (epochs - 1) * costs.steps_per_epoch + 1
        besides = costs.besides_steps_s(epochs, eval_every, checkpoint_every)
        fitting = math.floor((available_s / (1 + MARGIN) - besides) / costs.step_s)
        if fitting < first:  # later epochs have more to pay for, so none of theirs fits either
            return best
        best = min(fitting, epochs * costs.steps_per_epoch)
        epochs += 1


def choose_length(trainer, elapsed_s: float, costs: Costs) -> dict:
    """The steps that fit in what is left of ``trainer.time_budget`` after ``elapsed_s`` seconds, with what the
    choice was made from: the record that goes into the summary and the checkpoint. It replaces
    ``trainer.epochs``. A budget too short for one step is refused before any training: a run that overran the
    time it was given would break the promise the budget makes (to a scheduler's time limit, to a side-by-side
    comparison), where the refusal costs only the start-up and says what budget would do."""
    budget_s = float(trainer.time_budget)
    steps = choose_steps(budget_s - elapsed_s, costs, trainer.eval_every, trainer.checkpoint_every)
    if steps == 0:
        epoch = costs.seconds(costs.steps_per_epoch, trainer.eval_every, trainer.checkpoint_every)
        needed = math.ceil(elapsed_s + (1 + MARGIN) * epoch)
        raise ConfigError(
            f"trainer.time_budget={budget_s:g} is too short to train at all: {elapsed_s:.1f} s went to the start "
            "and to measuring the steps, and the test evaluation and records alone take about "
            f"{costs.besides_steps_s(1, trainer.eval_every, trainer.checkpoint_every):.1f} s. One epoch with them "
            f"takes about {epoch:.1f} s ({costs.steps_per_epoch} steps of {costs.step_s:.3g} s, a test evaluation of "
            f"{costs.test_s:.1f} s): give it at least {needed} s for one, or fewer training images (data.subset=N), "
            "or set trainer.epochs with trainer.time_budget=null."
        )
    return {
        "time_budget_s": budget_s,
        "budget_steps": steps,
        "budget_epochs": round(steps / costs.steps_per_epoch, 2),  # the last one may end early
        "trainer_epochs": int(trainer.epochs),  # the setting the budget replaced
        "budget_step_time_s": costs.step_s,
        "budget_test_time_s": costs.test_s,
        "budget_predicted_s": elapsed_s + costs.seconds(steps, trainer.eval_every, trainer.checkpoint_every),
    }
