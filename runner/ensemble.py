"""Model ensembles after training: average the test-set class probabilities of several finished runs.

    python -m runner.ensemble outputs/multirun/2025-01-31/12-00-00-000000/0 outputs/multirun/.../1
    python -m runner.ensemble outputs/multirun/2025-01-31/12-00-00-000000     # every run of a sweep
    python -m runner.ensemble RUN... --labels test_labels.npy --output ensemble.json

Each member is a run folder holding ``test_logits.npy`` (one row of logits per test image). The test labels
come from ``--labels FILE.npy`` or else from ``test_labels.npy`` in the run folders. Prints each member's
accuracy, their mean and the ensemble's accuracy, and writes them to ``ensemble.json`` in a folder of its own
under the outputs root, ``<outputs>/ensembles/<date>/<time>/`` like the run folders (``--output`` elsewhere),
and says where: never into the current folder, where a second ensemble would overwrite the first. Arrays are read with
``allow_pickle=False``: a file from elsewhere can hold numbers, never code. It imports no torch, so it starts
at once. Averages taken during one run (EMA, snapshots) are the ``averaging`` group instead.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path

import numpy as np

from runner import outputs_dir
from runner.errors import USER_ERROR_EXIT, RecordError
from runner.files import natural_key, read_array, run_status, write_json

LOGITS = "test_logits.npy"
LABELS = "test_labels.npy"


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
                raise RecordError(
                    f"{path}: no {LOGITS} in this folder or below (a run writes it after its first epoch)."
                )
            members.update(dict.fromkeys(found))
        else:
            raise RecordError(f"{path}: no such run folder or file.")
    return list(members)


def load_labels(labels_path: Path | None, members: list[Path]) -> tuple[np.ndarray, str]:
    """The test labels from ``--labels``, else from the members' folders, which must all agree."""
    if labels_path is not None:
        return read_array(labels_path, "test labels"), str(labels_path)
    candidates = [member.parent / LABELS for member in members if (member.parent / LABELS).is_file()]
    if not candidates:
        raise RecordError(
            f"No {LABELS} beside the members' logits: pass the test labels with --labels FILE.npy "
            "(one integer class per test image, in the order the run evaluated them)."
        )
    labels = read_array(candidates[0], "test labels")
    for other in candidates[1:]:
        different = read_array(other, "test labels")
        if different.shape != labels.shape or not np.array_equal(different, labels):
            raise RecordError(f"{candidates[0]} and {other} differ: these runs were evaluated on different test sets.")
    return labels, str(candidates[0])


def check_shapes(logits: dict[Path, np.ndarray], labels: np.ndarray, labels_source: str) -> None:
    shapes = {str(path): array.shape for path, array in logits.items()}
    if any(array.ndim != 2 for array in logits.values()) or len(set(shapes.values())) > 1:
        listing = "\n".join(f"  {path}: {shape}" for path, shape in shapes.items())
        raise RecordError("The members' logits must all have the same shape (test images, classes); found:\n" + listing)
    first, (images, classes) = next(iter(shapes.items()))
    if images == 0 or classes == 0:
        raise RecordError(f"{first}: logits have shape {(images, classes)}: no test images or no classes to score.")
    if labels.shape != (images,):
        raise RecordError(f"{labels_source}: labels have shape {labels.shape}, the logits need ({images},).")
    if labels.dtype.kind not in "iu":
        raise RecordError(f"{labels_source}: labels must be integers, found {labels.dtype}.")
    if images and (labels.min() < 0 or labels.max() >= classes):
        raise RecordError(f"{labels_source}: labels must lie in [0, {classes - 1}] for {classes} classes.")
    for path, array in logits.items():
        if not np.isfinite(array).all():
            raise RecordError(f"{path}: logits contain inf or NaN (a diverged run?); leave this run out.")


def build_ensemble(paths: list[Path], labels_path: Path | None = None) -> dict:
    """Load, check and score the members; returns what ``ensemble.json`` holds."""
    members = find_members(paths)
    logits = {member: read_array(member, "test logits") for member in members}
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


def default_output() -> Path:
    """``<outputs>/ensembles/<date>/<time>/ensemble.json``: a new folder per ensemble, as for runs."""
    now = datetime.now()
    return Path(outputs_dir()) / "ensembles" / f"{now:%Y-%m-%d}" / f"{now:%H-%M-%S-%f}" / "ensemble.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m runner.ensemble",
        description="Average the test-set probabilities of several runs and report the ensemble's accuracy.",
    )
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN", help="run folders, sweep folders or logits files")
    parser.add_argument("--labels", type=Path, metavar="FILE.npy", help=f"test labels (default: {LABELS} in the runs)")
    parser.add_argument(
        "--output",
        type=Path,
        metavar="FILE.json",
        help="where to write the result (default: <outputs>/ensembles/<date>/<time>/ensemble.json)",
    )
    arguments = parser.parse_args(argv)
    try:
        result = build_ensemble(arguments.runs, arguments.labels)
        output = arguments.output or default_output()
        output.parent.mkdir(parents=True, exist_ok=True)
        write_json(output, result)
    except (RecordError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return USER_ERROR_EXIT
    print(report(result))
    print(f"Wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
