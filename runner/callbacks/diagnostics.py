"""Babysitting every run (``diagnostics=on``, the default; ``diagnostics=off`` removes it): the lectures'
routine for watching a network learn, as a loop callback (``runner.callbacks``).

It checks the initial loss against ln(classes), records per-layer activation statistics on a fixed batch at
initialization and after every epoch (``activations.jsonl``), samples update/weight ratios and gradient norms
(``updates.jsonl``), adds the train/validation gap to ``metrics.jsonl`` and writes plain-words ``warnings``
into ``summary.json``. The measurements are ``runner.probes``', shared with ``python -m runner.diagnose``.
"""

from __future__ import annotations

import logging
import math

import torch

from runner.evaluate import evaluate
from runner.files import append_jsonl, read_jsonl, rewrite_jsonl
from runner.probes import (
    activation_warnings,
    identical_weights,
    initial_loss_warning,
    initial_losses,
    probe,
    weight_parameters,
)

log = logging.getLogger("runner")


def keep_rows(path, keep) -> None:
    """Rewrite a JSON-lines file with the rows ``keep`` accepts, when it exists."""
    if path.exists():
        rewrite_jsonl(path, [row for row in read_jsonl(path) if keep(row)])


def loss_trend(train_losses: list[float], start: float | None, epochs: int, tolerance: float) -> str | None:
    """``rising`` when each of the last ``epochs`` epochs' training loss is above (1 + tolerance) of where it
    started (an exploded loss that the divergence factor let through); ``flat`` when none fell below
    (1 - tolerance) of it: the run has learned nothing yet. A run that plateaus after learning is neither."""
    recent = train_losses[-epochs:]
    if not start or len(recent) < epochs:
        return None
    if min(recent) > (1 + tolerance) * start:
        return "rising"
    if min(recent) >= (1 - tolerance) * start:
        return "flat"
    return None


def plateau_then_drop(
    samples: list[tuple[int, float]], start: float | None, plateau: int, tolerance: float = 0.05, drop: float = 0.2
) -> tuple[tuple[int, float], tuple[int, float]] | None:
    """The lectures' sign of a bad initialization: the loss stays where it started (within ``tolerance`` of
    the initial loss) for ``plateau`` or more of the evenly spaced samples, then falls by more than ``drop`` of
    it in less than half the time it stayed flat. Returns ((last flat step, its loss), (step of the drop, its
    loss)) or None."""
    if not start:
        return None
    flat = 0
    while flat < len(samples) and abs(samples[flat][1] - start) <= tolerance * start:
        flat += 1
    if flat < plateau or flat == len(samples):
        return None
    flat_until = samples[flat - 1][0]
    for step, loss in samples[flat:]:
        if step - flat_until > flat_until / 2:
            return None  # a slow descent, not a sudden drop
        if loss < (1 - drop) * start:
            return samples[flat - 1], (step, loss)
    return None


def has_penalty(run) -> bool:
    """Whether the run's loss has a penalty or its optimizer a weight decay: the regularization the lectures'
    first check adds to the loss."""
    rates = (
        group.get("weight_decay", 0.0) + group.get("decoupled_weight_decay_rate", 0.0)
        for group in run.optimizer.param_groups
    )
    return bool(run.objective.penalties) or any(rate > 0 for rate in rates)


# The lectures' reading of the gap between training and validation accuracy.
BIG_GAP, NO_GAP, MEMORISED = 0.15, 0.02, 0.9


def gap_advice(gap: dict) -> str | None:
    """ "big gap: regularize more; no gap: add capacity", from the last epoch's eval-mode accuracies."""
    if not gap:
        return None
    train, other, split = gap["train_eval_acc"], gap["acc"], gap["split"]
    numbers = f"(training images {train:.1%}, {split} {other:.1%}, both in eval mode)"
    if train - other > BIG_GAP:
        return f"big gap {numbers}: the network overfits its training images; regularize more"
    if abs(train - other) < NO_GAP and train < MEMORISED:
        return f"no gap {numbers}: the network does not fit even its training images; train longer or add capacity"
    return None


class Diagnostics:
    """Watches a run as the lectures' babysitting routine does (see the module docstring).

    Cost: one forward pass of a fixed batch at the start and after each epoch; at the sampled steps (the
    first ``first_steps`` and every ``every``-th), a copy of the weights and one read-back. Other steps are
    untouched: no host synchronisation.
    """

    def __init__(
        self,
        batch_size: int = 256,
        every: int = 50,
        first_steps: int = 5,
        loss_tolerance: float = 0.5,
        dead_fraction: float = 0.5,
        saturated_fraction: float = 0.5,
        collapsed_std: float = 1e-3,
        update_ratio_high: float = 0.15,
        update_ratio_low: float = 1e-5,
        flat_epochs: int = 2,
        flat_tolerance: float = 0.05,
        plateau_samples: int = 3,
        gap_images: int = 500,
    ):
        self.batch_size = batch_size
        self.every = every
        self.first_steps = first_steps
        self.loss_tolerance = loss_tolerance
        self.thresholds = {
            "dead_fraction": dead_fraction,
            "saturated_fraction": saturated_fraction,
            "collapsed_std": collapsed_std,
        }
        self.update_ratio_high = update_ratio_high
        self.update_ratio_low = update_ratio_low
        self.flat_epochs = flat_epochs
        self.flat_tolerance = flat_tolerance
        self.plateau_samples = plateau_samples
        self.gap_images = gap_images
        self.warnings: list[str] = []
        self.warned: set[str] = set()
        self.losses: dict = {}
        self.train_losses: list[float] = []
        self.epoch_ratios: list[float] = []
        self.sampled_losses: list[tuple[int, float]] = []  # (step, loss) at the sampled steps from every-th on
        self.gap: dict = {}  # the last epoch's eval-mode training accuracy and its gap
        self.saved: list[torch.Tensor] | None = None
        self.gradient_norms: list[torch.Tensor] = []

    def warn(self, kind: str, message: str) -> None:
        """Record a warning, once per kind: the first time a problem shows is the one worth reading."""
        if kind not in self.warned:
            self.warned.add(kind)
            self.warnings.append(message)
            log.warning("diagnostics: %s", message)

    def measure(self, run, state: dict, when: str) -> torch.Tensor:
        logits, rows, _ = probe(run.model, self.images)
        append_jsonl(
            run.recorder.path("activations.jsonl"), {"epoch": state["epoch"], "step": state["step"], "layers": rows}
        )
        for kind, message in activation_warnings(rows, when, **self.thresholds).items():
            self.warn(kind, message)
        symmetric = identical_weights(run.model)
        if symmetric:
            self.warn(
                "identical",
                f"units identical: all units of {symmetric[0]} have the same weights {when}"
                f"{f' (and {len(symmetric) - 1} more layers)' if len(symmetric) > 1 else ''}: symmetry not "
                "broken, every unit gets the same update",
            )
        return logits

    def on_train_start(self, run, state: dict) -> None:
        count = min(self.batch_size, len(run.splits.train_labels))
        self.images, self.labels = run.splits.train_images[:count], run.splits.train_labels[:count]
        self.layers = weight_parameters(run.model)
        if state["step"] > 0:
            # A resumed run: its measurements so far come back with load_state_dict; rows written after the
            # checkpoint go, because those steps are trained again.
            keep_rows(run.recorder.path("activations.jsonl"), lambda row: row.get("epoch", 0) <= state["epoch"])
            keep_rows(run.recorder.path("updates.jsonl"), lambda row: row.get("step", 0) < state["step"])
            return
        logits = self.measure(run, state, "at init")
        self.losses = initial_losses(run, logits, self.labels)
        log.info(
            "diagnostics: initial loss %.4f (ln %d classes = %.4f; with regularization %.4f)",
            self.losses["initial_loss"],
            run.splits.num_classes,
            self.losses["expected_initial_loss"],
            self.losses["initial_loss_regularized"],
        )
        message = initial_loss_warning(self.losses, self.loss_tolerance)
        if message:
            self.warn("initial_loss", message)
        if has_penalty(run) and not self.losses["initial_loss_regularized"] > self.losses["initial_loss"] * (1 + 1e-6):
            self.warn(
                "regularization_flat",
                f"the initial loss did not rise when the regularization was added ({self.losses['initial_loss']:.4g} "
                f"without, {self.losses['initial_loss_regularized']:.4g} with): the lectures' check says it must; "
                "the penalty is too weak to matter, or it does not reach the loss",
            )

    def sampled(self, step: int) -> bool:
        return step < self.first_steps or step % self.every == 0

    def on_before_step(self, run, state: dict) -> None:
        if not self.sampled(state["step"]):
            return
        self.learning_rate = run.optimizer.param_groups[0]["lr"]  # the schedule moves it after the step
        self.saved = [weight.detach().clone() for _, weight in self.layers]
        gradients = [w.grad if w.grad is not None else torch.zeros_like(w) for _, w in self.layers]
        self.gradient_norms = torch._foreach_norm(gradients)

    def on_step_end(self, run, state: dict, loss: torch.Tensor) -> None:
        if self.saved is None:
            return
        after = [weight.detach() for _, weight in self.layers]
        updates = torch._foreach_norm(torch._foreach_sub(after, self.saved))
        weights = torch._foreach_norm(self.saved)
        self.saved = None
        update_norms, weight_norms, gradient_norms = (
            torch.stack([torch.stack(updates), torch.stack(weights), torch.stack(self.gradient_norms)]).float().tolist()
        )
        if state["step"] >= self.every:  # the regular samples, evenly spaced, past the first steps
            self.sampled_losses.append((state["step"], loss.item()))
        layers = []
        for index, (name, _) in enumerate(self.layers):
            ratio = update_norms[index] / weight_norms[index] if weight_norms[index] > 0 else None
            layers.append(
                {
                    "layer": index + 1,
                    "name": name,
                    "update_ratio": ratio,
                    "gradient_norm": gradient_norms[index],
                    "weight_norm": weight_norms[index],
                }
            )
        append_jsonl(
            run.recorder.path("updates.jsonl"),
            {"step": state["step"], "epoch": state["epoch"] + 1, "lr": self.learning_rate, "layers": layers},
        )
        self.check_updates(layers, state["step"])

    def check_updates(self, layers: list[dict], step: int) -> None:
        """The lectures' rule of thumb: updates about 1e-3 of the weights, read over the whole network (the
        median layer), as the lectures' one ratio over all the weights reads it; far above, the learning rate
        is too high (a non-finite update counts as the highest); far below, too low (judged in the first
        epoch, so a schedule's decay towards zero at the end is not mistaken for it). One layer alone above
        the mark at the first steps (a small output layer starting near zero) is not the steady state."""
        ratios = [(row["layer"], row["name"], row["update_ratio"]) for row in layers if row["update_ratio"] is not None]
        if not ratios:
            return
        ordered = sorted(ratios, key=lambda item: item[2] if math.isfinite(item[2]) else math.inf)
        typical, worst = ordered[len(ordered) // 2], ordered[-1]
        if not math.isfinite(typical[2]) or typical[2] > self.update_ratio_high:
            self.warn(
                "update_high",
                f"update/weight ratio {typical[2]:.2g} (median layer; {worst[2]:.2g} at layer {worst[0]}, "
                f"{worst[1]}) at step {step}: learning rate likely too high (the lectures aim for about 1e-3)",
            )
        if math.isfinite(typical[2]):
            self.epoch_ratios.append(typical[2])

    def on_epoch_end(self, run, state: dict, row: dict) -> None:
        epoch = state["epoch"] + 1
        # The gap compares like with like: a fixed sample of training images scored in eval mode, as the
        # validation and test images are (the epoch's running train_acc has augmentation and dropout on).
        count = min(self.gap_images, len(run.splits.train_labels))
        row["train_eval_acc"] = evaluate(run, run.splits.train_images[:count], run.splits.train_labels[:count])["acc"]
        run.model.train()
        for split in ("val", "test"):
            if f"{split}_acc" in row:
                row[f"train_{split}_gap"] = row["train_eval_acc"] - row[f"{split}_acc"]
                self.gap = {"train_eval_acc": row["train_eval_acc"], "split": split, "acc": row[f"{split}_acc"]}
                break
        self.measure(run, {**state, "epoch": epoch}, f"at epoch {epoch}")
        drop = plateau_then_drop(self.sampled_losses, self.losses.get("initial_loss"), self.plateau_samples)
        if drop:
            (flat_until, flat_loss), (dropped_at, dropped_loss) = drop
            self.warn(
                "plateau",
                f"loss flat near its start ({flat_loss:.3g}) until step {flat_until}, then a sudden drop to "
                f"{dropped_loss:.3g} by step {dropped_at}: the lectures' sign of a bad initialization (the signal "
                "took that long to get through the network: try init=kaiming, or batch norm)",
            )
        if epoch == 1 and self.epoch_ratios:
            typical = sorted(self.epoch_ratios)[len(self.epoch_ratios) // 2]
            if typical < self.update_ratio_low:
                self.warn(
                    "update_low",
                    f"update/weight ratio {typical:.1g} (median layer, median step) in epoch 1: learning rate "
                    "likely too low (the lectures aim for about 1e-3)",
                )
        self.train_losses.append(row["train_loss"])
        trend = loss_trend(
            self.train_losses, self.losses.get("initial_loss_regularized"), self.flat_epochs, self.flat_tolerance
        )
        if trend == "rising":
            self.warn(
                "rising",
                f"loss rose for {self.flat_epochs} epochs ({row['train_loss']:.3g} after epoch {epoch}, "
                f"{self.losses['initial_loss_regularized']:.3g} at init): learning rate likely too high",
            )
        elif trend == "flat":
            cannot_learn = self.warned - {"update_high", "update_low"}
            self.warn(
                "flat",
                f"loss flat for {self.flat_epochs} epochs ({row['train_loss']:.3g} after epoch {epoch}, "
                f"{self.losses['initial_loss_regularized']:.3g} at init): learning rate likely too low"
                + (" (or the network cannot learn: see the warnings before this one)" if cannot_learn else ""),
            )

    def on_train_end(self, run, state: dict, summary: dict) -> None:
        summary.update(self.losses)
        summary["warnings"] = list(self.warnings)
        advice = gap_advice(self.gap)
        if advice:
            summary["gap_advice"] = advice
            log.info("diagnostics: %s", advice)

    # What the run has shown so far travels in the checkpoint, so a resumed run warns as an uninterrupted one.
    def state_dict(self) -> dict:
        return {
            "warnings": list(self.warnings),
            "warned": sorted(self.warned),
            "losses": dict(self.losses),
            "train_losses": list(self.train_losses),
            "epoch_ratios": list(self.epoch_ratios),
            "sampled_losses": [list(sample) for sample in self.sampled_losses],
            "gap": dict(self.gap),
        }

    def load_state_dict(self, state: dict) -> None:
        self.warnings = list(state["warnings"])
        self.warned = set(state["warned"])
        self.losses = dict(state["losses"])
        self.train_losses = list(state["train_losses"])
        self.epoch_ratios = list(state["epoch_ratios"])
        self.sampled_losses = [tuple(sample) for sample in state["sampled_losses"]]
        self.gap = dict(state["gap"])
