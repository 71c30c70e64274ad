"""A run held to a time budget (``trainer.time_budget``): from the measured seconds of its steps, evaluations and
record writes, the number of epochs whose run ends, ``summary.json`` written, within the budget from command start.

The length is fixed once, before the learning-rate schedule is built for it (a schedule stretched or cut mid-run
would be another schedule), and kept in the checkpoint, so that a resumed run trains to the same length without
measuring again. The measurement itself is ``runner.loop.measure``: throwaway steps whose every state is put back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from runner.errors import ConfigError

# Of the predicted time, for what the measurement does not see: a shared CPU's speed drifting over the run, the
# callbacks' work at their sampled steps, the progress bar, the log, a first epoch slower than the next. Measured
# on the 2-core CPU (2026-12-01, docs/speed.md): first epochs 6-20% longer than the throwaway steps predicted.
MARGIN = 0.10


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

    def seconds(self, epochs: int, eval_every: int, checkpoint_every: int) -> float:
        """Training ``epochs`` epochs with their evaluations and records, to the summary written."""
        tests = math.ceil(epochs / eval_every)  # every eval_every-th epoch, and the last
        checkpoints = math.ceil(epochs / checkpoint_every)
        writes = epochs + tests + checkpoints + 2  # metrics rows, test logits, checkpoints, the two summaries
        validation_s = self.evaluations * self.image_s * self.validation_images
        training = epochs * (self.steps_per_epoch * self.step_s + validation_s)
        return training + tests * self.test_s + writes * self.write_s


def choose_epochs(available_s: float, costs: Costs, eval_every: int, checkpoint_every: int) -> int:
    """The most epochs whose predicted time, with the margin, fits in ``available_s``; 0 when not even one does."""
    epochs = 0
    while (1 + MARGIN) * costs.seconds(epochs + 1, eval_every, checkpoint_every) <= available_s:
        epochs += 1
    return epochs


def choose_length(trainer, elapsed_s: float, costs: Costs) -> dict:
    """The epochs that fit in what is left of ``trainer.time_budget`` after ``elapsed_s`` seconds, with what the
    choice was made from: the record that goes into the summary and the checkpoint. It replaces
    ``trainer.epochs``. A budget too short for one epoch is refused before any training: a run that overran the
    time it was given would break the promise the budget makes (to a scheduler's time limit, to a side-by-side
    comparison), where the refusal costs only the start-up and says what budget would do."""
    budget_s = float(trainer.time_budget)
    epochs = choose_epochs(budget_s - elapsed_s, costs, trainer.eval_every, trainer.checkpoint_every)
    if epochs == 0:
        one = costs.seconds(1, trainer.eval_every, trainer.checkpoint_every)
        needed = math.ceil(elapsed_s + (1 + MARGIN) * one)
        raise ConfigError(
            f"trainer.time_budget={budget_s:g} is too short for one epoch: {elapsed_s:.1f} s went to the start and "
            f"to measuring the steps, and one epoch with its evaluation and records takes about {one:.1f} s "
            f"({costs.steps_per_epoch} steps of {costs.step_s:.3g} s, a test evaluation of {costs.test_s:.1f} s). "
            f"Give it at least {needed} s, or fewer training images (data.subset=N), or set trainer.epochs with "
            "trainer.time_budget=null."
        )
    return {
        "time_budget_s": budget_s,
        "budget_epochs": epochs,
        "trainer_epochs": int(trainer.epochs),  # the setting the budget replaced
        "budget_step_time_s": costs.step_s,
        "budget_test_time_s": costs.test_s,
        "budget_predicted_s": elapsed_s + costs.seconds(epochs, trainer.eval_every, trainer.checkpoint_every),
    }
