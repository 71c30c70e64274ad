"""Model ensembles after training: average the test-set class probabilities of several finished runs.

    python -m runner.ensemble outputs/multirun/2025-01-31/12-00-00-000000/0 outputs/multirun/.../1
    python -m runner.ensemble outputs/multirun/2025-01-31/12-00-00-000000     # every run of a sweep
    python -m runner.ensemble RUN... --labels test_labels.npy --output ensemble.json

Each member is a run folder holding ``test_logits.npy`` (one row of logits per test image). The test labels
come from ``--labels FILE.npy`` or else from ``test_labels.npy`` in the run folders. Prints each member's
accuracy, their mean and the ensemble's accuracy, and writes them to ``ensemble.json``. Arrays are read with
``allow_pickle=False``: a file from elsewhere can hold numbers, never code.

Two averages are taken during training instead, as loop callbacks (``runner.loop``) that the build stage adds:
``SnapshotEnsemble`` (``trainer.snapshots=true`` with ``schedule=cosine_restarts``) and
``ExponentialMovingAverage`` (``trainer.ema_decay``). This module imports torch only for them, so the
command above starts at once.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from runner.compare import natural_key

LOGITS = "test_logits.npy"
LABELS = "test_labels.npy"


class EnsembleError(Exception):
    """A missing or mismatched file; printed without a traceback, exit code 2."""


def softmax(logits: np.ndarray) -> np.ndarray:
    """Class probabilities per row, in float64; subtracting the row maximum keeps exp from overflowing."""
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    exponentials = np.exp(shifted)
    return exponentials / exponentials.sum(axis=1, keepdims=True)


def accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    """The fraction of rows whose highest score is the label (logits and probabilities alike)."""
    return float((scores.argmax(axis=1) == labels).mean())


def ensemble_accuracy(member_logits: list[np.ndarray], labels: np.ndarray) -> dict:
    """Average the members' softmax probabilities and score the average (Hansen and Salamon, "Neural network
    ensembles", 1990; probabilities rather than votes as in Lakshminarayanan et al., "Deep ensembles", 2017)."""
    probabilities = np.mean([softmax(logits) for logits in member_logits], axis=0)
    members = [accuracy(logits, labels) for logits in member_logits]
    return {
        "member_accuracies": members,
        "mean_member_accuracy": float(np.mean(members)),
        "ensemble_accuracy": accuracy(probabilities, labels),
    }


def load_array(path: Path, what: str) -> np.ndarray:
    """A NumPy array saved with ``np.save``; never unpickles."""
    if not path.is_file():
        raise EnsembleError(f"{path}: no {what} there.")
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise EnsembleError(f"{path}: cannot read {what} ({error}).") from None
    if not isinstance(array, np.ndarray):
        raise EnsembleError(f"{path}: expected one array saved with np.save, found an archive of several.")
    return array


def find_members(paths: list[Path]) -> list[Path]:
    """Each path is a run folder, a logits file, or a folder above run folders (a sweep): all its runs."""
    members: dict[Path, None] = {}
    for path in paths:
        if path.is_file():
            members.setdefault(path)
        elif (path / LOGITS).is_file():
            members.setdefault(path / LOGITS)
        elif path.is_dir():
            found = sorted(path.rglob(LOGITS), key=lambda found_path: natural_key(str(found_path)))
            if not found:
                raise EnsembleError(
                    f"{path}: no {LOGITS} in this folder or below (a run writes it after its first epoch)."
                )
            members.update(dict.fromkeys(found))
        else:
            raise EnsembleError(f"{path}: no such run folder or file.")
    return list(members)


def load_labels(labels_path: Path | None, members: list[Path]) -> tuple[np.ndarray, str]:
    """The test labels from ``--labels``, else from the members' folders, which must all agree."""
    if labels_path is not None:
        return load_array(labels_path, "test labels"), str(labels_path)
    candidates = [member.parent / LABELS for member in members if (member.parent / LABELS).is_file()]
    if not candidates:
        raise EnsembleError(
            f"No {LABELS} beside the members' logits: pass the test labels with --labels FILE.npy "
            "(one integer class per test image, in the order the run evaluated them)."
        )
    labels = load_array(candidates[0], "test labels")
    for other in candidates[1:]:
        different = load_array(other, "test labels")
        if different.shape != labels.shape or not np.array_equal(different, labels):
            raise EnsembleError(
                f"{candidates[0]} and {other} differ: these runs were evaluated on different test sets."
            )
    return labels, str(candidates[0])


def check_shapes(logits: dict[Path, np.ndarray], labels: np.ndarray, labels_source: str) -> None:
    shapes = {str(path): array.shape for path, array in logits.items()}
    if any(array.ndim != 2 for array in logits.values()) or len(set(shapes.values())) > 1:
        listing = "\n".join(f"  {path}: {shape}" for path, shape in shapes.items())
        raise EnsembleError(
            "The members' logits must all have the same shape (test images, classes); found:\n" + listing
        )
    images, classes = next(iter(logits.values())).shape
    if labels.shape != (images,):
        raise EnsembleError(f"{labels_source}: labels have shape {labels.shape}, the logits need ({images},).")
    if labels.dtype.kind not in "iu":
        raise EnsembleError(f"{labels_source}: labels must be integers, found {labels.dtype}.")
    if images and (labels.min() < 0 or labels.max() >= classes):
        raise EnsembleError(f"{labels_source}: labels must lie in [0, {classes - 1}] for {classes} classes.")
    for path, array in logits.items():
        if not np.isfinite(array).all():
            raise EnsembleError(f"{path}: logits contain inf or NaN (a diverged run?); leave this run out.")


def run_status(folder: Path) -> str | None:
    try:
        summary = json.loads((folder / "summary.json").read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return str(summary.get("status")) if isinstance(summary, dict) and summary.get("status") else None


def write_json(path: Path, data: dict) -> None:
    """Write to a temporary name, then rename, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(temporary, path)


def build_ensemble(paths: list[Path], labels_path: Path | None = None) -> dict:
    """Load, check and score the members; returns what ``ensemble.json`` holds."""
    members = find_members(paths)
    logits = {member: load_array(member, "test logits") for member in members}
    labels, labels_source = load_labels(labels_path, members)
    check_shapes(logits, labels, labels_source)
    scores = ensemble_accuracy(list(logits.values()), labels)
    images, classes = next(iter(logits.values())).shape
    return {
        "members": [
            {
                "run": str(member.parent if member.name == LOGITS else member),
                "status": run_status(member.parent),
                "accuracy": member_accuracy,
            }
            for member, member_accuracy in zip(members, scores["member_accuracies"], strict=True)
        ],
        **scores,
        "gain": scores["ensemble_accuracy"] - scores["mean_member_accuracy"],
        "method": "mean of the members' softmax probabilities",
        "test_images": images,
        "classes": classes,
        "labels": labels_source,
    }


def report(result: dict) -> str:
    """The members, their mean and the ensemble as an aligned table, accuracies in percent."""
    rows = [(member["run"], member["status"] or "-", member["accuracy"]) for member in result["members"]]
    rows.append(
        (
            f"mean of {len(result['members'])} member" + ("s" if len(result["members"]) > 1 else ""),
            "",
            result["mean_member_accuracy"],
        )
    )
    rows.append(("ensemble (mean probability)", "", result["ensemble_accuracy"]))
    width = max(len(name) for name, _, _ in rows)
    lines = [f"{'member'.ljust(width)}  {'status':<11}  accuracy %"]
    lines += [f"{name.ljust(width)}  {status:<11}  {100 * value:10.2f}" for name, status, value in rows]
    return "\n".join(lines) + f"  ({100 * result['gain']:+.2f} points)"


# --- Averages taken during training: loop callbacks added by the build stage --------------------------------


def checked_decay(decay, key: str) -> float:
    """An averaging decay in (0, 1), or the config error that names ``key``."""
    from runner.validate import ConfigError

    if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0 < decay < 1:
        raise ConfigError(f"{key}={decay!r} is not allowed: it must be null or a decay in (0, 1).")
    return float(decay)


class ExponentialMovingAverage:
    """Polyak averaging as an exponential moving average of the weights (Polyak and Juditsky 1992; the EMA
    form as in Szegedy et al. 2016): after every optimizer step, average = decay * average + (1 - decay) *
    weights, starting from the weights after the first step (``torch.optim.swa_utils.AveragedModel`` with
    ``get_ema_multi_avg_fn``, one fused update on the training device). The averaged network is evaluated after
    every epoch (``ema_test_acc``, ``ema_val_acc`` in metrics.jsonl and summary.json); its test logits are
    kept as ``ema_test_logits.npy``.

    The norm layers' running statistics are averaged the same way (``use_buffers=True``, as timm's ModelEma
    does), so the statistics belong to averaged weights rather than to the last ones. The average forgets
    with a time constant of 1 / (1 - decay) steps: 0.999 suits runs of several thousand steps, 0.99 short ones.
    """

    def __init__(self, model, decay: float):
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        self.decay = checked_decay(decay, "trainer.ema_decay")
        self.averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(self.decay), use_buffers=True)
        self.last: dict = {}
        self.logits = None

    def on_step_end(self, run, state: dict, loss) -> None:
        self.averaged.update_parameters(run.model)

    def evaluate(self, run, images, labels) -> dict:
        """``runner.loop.evaluate`` with the averaged network in place of the model (and inside test-time
        augmentation, when the run has it)."""
        import copy
        import dataclasses

        from runner.loop import evaluate  # here: runner.loop imports runner.train, which imports this module

        predict = None
        if run.predict is not None:
            predict = copy.copy(run.predict)
            predict.model = self.averaged.module
        return evaluate(dataclasses.replace(run, model=self.averaged.module, predict=predict), images, labels)

    def on_epoch_end(self, run, state: dict, row: dict) -> None:
        if run.splits.val_images is not None:
            validation = self.evaluate(run, run.splits.val_images, run.splits.val_labels)
            row.update(ema_val_loss=validation["loss"], ema_val_acc=validation["acc"])
        if "test_acc" not in row:  # trainer.eval_every skipped this epoch's test evaluation
            return
        test = self.evaluate(run, run.splits.test_images, run.splits.test_labels)
        row.update(ema_test_loss=test["loss"], ema_test_acc=test["acc"])
        self.last = {key: value for key, value in row.items() if key.startswith("ema_")}
        self.logits = test["logits"]

    def on_train_end(self, run, state: dict, summary: dict) -> None:
        from runner.record import save_array

        summary.update(ema_decay=self.decay, **self.last)
        if self.logits is not None:
            save_array(run.recorder.path("ema_test_logits.npy"), self.logits.float().cpu().numpy().astype(np.float16))

    # A checkpoint keeps the average, so a resumed run goes on averaging where it stopped.
    def state_dict(self) -> dict:
        return self.averaged.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.averaged.load_state_dict(state)


class Lookahead:
    """Lookahead averaging as airbench94 uses it (Zhang et al. 2019; Jordan 2024): from ``start`` of the run on,
    every ``every`` steps the slow weights move towards the trained ones, slow = rho * slow + (1 - rho) *
    weights, and training goes on from the slow weights. rho = decay^every * (step / total steps)^power grows
    over the run, so the weights move freely early and are averaged strongly at the end; at the end of each
    epoch the network takes the slow weights, so every evaluation sees them. Norm statistics are averaged too.
    """

    def __init__(self, decay: float, total_steps: int, every: int = 5, power: float = 3.0, start: float = 0.3):
        self.decay = checked_decay(decay, "trainer.lookahead")
        self.total_steps = max(1, total_steps)
        self.every = every
        self.power = power
        self.start_step = round(start * total_steps)
        self.slow: list | None = None  # the slow weights, in the order of the network's state dict

    def on_step_end(self, run, state: dict, loss) -> None:
        import torch  # here, so that runner.ensemble's command starts without PyTorch's import time

        step = state["step"] + 1  # the loop counts this step after its hooks
        epoch_ends = step % run.steps_per_epoch == 0
        if step < self.start_step or (step % self.every and not epoch_ends):
            return
        # The state dict's tensors share storage with the network's: parameters and norm statistics alike.
        weights = [tensor for tensor in run.model.state_dict().values() if tensor.is_floating_point()]
        if self.slow is not None and self.slow[0].device != weights[0].device:  # resumed from a CPU checkpoint
            self.slow = [slow.to(weight.device) for slow, weight in zip(self.slow, weights, strict=True)]
        with torch.no_grad():
            if self.slow is None:
                self.slow = [tensor.clone() for tensor in weights]
                return
            if step % self.every == 0:
                rho = self.decay**self.every * (step / self.total_steps) ** self.power
                torch._foreach_lerp_(self.slow, weights, 1 - rho)
            torch._foreach_copy_(weights, self.slow)

    def state_dict(self) -> dict:
        return {"slow": self.slow}

    def load_state_dict(self, state: dict) -> None:
        self.slow = state["slow"]


def cycle_ends(steps_per_epoch: int, epochs: int, cycle_epochs: float, cycle_multiplier: float) -> list[int]:
    """The step counts at which the cycles of ``runner.schedules.cosine_restarts`` end within the run: the
    first cycle lasts round(cycle_epochs * steps_per_epoch) steps, each next one cycle_multiplier times longer."""
    total = steps_per_epoch * epochs
    ends, start, length = [], 0, max(1, round(cycle_epochs * steps_per_epoch))
    while start + length <= total:
        start += length
        ends.append(start)
        length = max(1, round(length * cycle_multiplier))
    return ends


class SnapshotEnsemble:
    """Snapshot ensembles (Huang et al., "Snapshot ensembles: train 1, get M for free", 2017): at the end of
    every cycle of a cosine schedule with restarts, where the learning rate is lowest, evaluate the network on
    the test set and keep its logits (``snapshot_<k>_test_logits.npy``); at the end, report every snapshot's
    accuracy and the accuracy of their averaged probabilities (``snapshot_ensemble_acc`` in summary.json).

    ``ends`` are the step counts at which cycles end, worked out by the build stage from the schedule's config
    (``cycle_ends``). Snapshots live on disk only, so a resumed run still has those taken before it stopped.
    """

    def __init__(self, ends: list[int], steps_per_epoch: int):
        self.ends = list(ends)
        self.steps_per_epoch = steps_per_epoch

    @staticmethod
    def file_name(cycle: int) -> str:
        return f"snapshot_{cycle}_{LOGITS}"

    def on_step_end(self, run, state: dict, loss) -> None:
        completed = state["step"] + 1  # the loop counts this step once its hooks have run
        if completed not in self.ends:
            return
        from runner.loop import evaluate  # here: runner.loop imports runner.train, which imports this module
        from runner.record import save_array

        logits = evaluate(run, run.splits.test_images, run.splits.test_labels)["logits"]
        run.model.train()  # evaluation switched to eval mode in the middle of the epoch
        cycle = self.ends.index(completed) + 1
        save_array(run.recorder.path(self.file_name(cycle)), logits.float().cpu().numpy().astype(np.float16))

    def on_train_end(self, run, state: dict, summary: dict) -> None:
        taken = [(cycle, end) for cycle, end in enumerate(self.ends, start=1) if end <= state["step"]]
        paths = [run.recorder.path(self.file_name(cycle)) for cycle, _ in taken]
        if not taken or not all(path.is_file() for path in paths):
            summary["snapshots"] = []
            return
        labels = run.splits.test_labels.cpu().numpy()
        scores = ensemble_accuracy([load_array(path, "snapshot logits") for path in paths], labels)
        summary["snapshots"] = [
            {"cycle": cycle, "epoch": end / self.steps_per_epoch, "step": end, "test_acc": accuracy_value}
            for (cycle, end), accuracy_value in zip(taken, scores["member_accuracies"], strict=True)
        ]
        summary["snapshot_mean_acc"] = scores["mean_member_accuracy"]
        summary["snapshot_ensemble_acc"] = scores["ensemble_accuracy"]


def averaging_callbacks(config, model, steps_per_epoch: int) -> list:
    """The build stage's averages: lookahead (``trainer.lookahead``), an EMA of the weights
    (``trainer.ema_decay``) and snapshots at the ends of the schedule's cycles (``trainer.snapshots``)."""
    from runner.validate import ConfigError

    trainer = config.trainer
    callbacks = []
    if trainer.get("lookahead") is not None:
        callbacks.append(Lookahead(trainer.lookahead, steps_per_epoch * trainer.epochs))
    if trainer.get("ema_decay") is not None:
        callbacks.append(ExponentialMovingAverage(model, trainer.ema_decay))
    if trainer.get("snapshots"):
        schedule = config.schedule
        if "cycle_epochs" not in schedule:
            raise ConfigError(
                "trainer.snapshots=true takes its snapshots at the ends of the learning-rate cycles: use "
                "schedule=cosine_restarts (its schedule.cycle_epochs and schedule.cycle_multiplier set the cycles)."
            )
        ends = cycle_ends(steps_per_epoch, trainer.epochs, schedule.cycle_epochs, schedule.get("cycle_multiplier", 1.0))
        if len(ends) < 2:
            raise ConfigError(
                f"trainer.snapshots=true: {len(ends)} cycle(s) of schedule.cycle_epochs={schedule.cycle_epochs} "
                f"(cycle_multiplier={schedule.get('cycle_multiplier', 1.0)}) end within trainer.epochs="
                f"{trainer.epochs}; a snapshot ensemble needs at least 2. Shorten the cycles or train longer."
            )
        callbacks.append(SnapshotEnsemble(ends, steps_per_epoch))
    return callbacks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m runner.ensemble",
        description="Average the test-set probabilities of several runs and report the ensemble's accuracy.",
    )
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN", help="run folders, sweep folders or logits files")
    parser.add_argument("--labels", type=Path, metavar="FILE.npy", help=f"test labels (default: {LABELS} in the runs)")
    parser.add_argument("--output", type=Path, default=Path("ensemble.json"), help="where to write the result")
    arguments = parser.parse_args(argv)
    try:
        result = build_ensemble(arguments.runs, arguments.labels)
        write_json(arguments.output, result)
    except (EnsembleError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(report(result))
    print(f"Wrote {arguments.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
