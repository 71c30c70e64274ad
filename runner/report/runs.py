"""Reading run folders into records, whatever state each folder is in: a half-written or garbled folder is a
record with its status (``partial``, ``unreadable``), never a crash."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from runner.errors import RecordError, is_number
from runner.files import find_run_folders, read_json, read_jsonl


@dataclass
class RunRecord:
    """What one folder tells about its run, however far it got."""

    folder: Path
    status: str
    metrics: dict[str, float | None]
    settings: dict[str, str] | None  # None: the folder does not say how the run was configured
    history: list[dict] = field(default_factory=list)
    note: str = ""
    label: str = ""


def number(value) -> float | None:
    """A finite number, or None for anything else an untrusted file may hold (null, text, NaN)."""
    return float(value) if is_number(value) else None


def history_metrics(history: list[dict]) -> dict[str, float | None]:
    """The summary's numbers as far as ``metrics.jsonl`` tells them, for a run that wrote no summary."""
    if not history:
        return {}
    tested = [number(row.get("test_acc")) for row in history]
    tested = [value for value in tested if value is not None]
    times = [number(row.get("epoch_time_s")) for row in history]
    rates = [number(row.get("images_per_s")) for row in history]
    timed = [(time, rate) for time, rate in zip(times, rates, strict=True) if time and rate is not None]
    total_time = sum(time for time in times if time is not None)
    last = history[-1]
    return {
        "test_acc": number(last.get("test_acc")),
        "best_test_acc": max(tested) if tested else None,
        "val_acc": number(last.get("val_acc")),
        "epochs_completed": number(last.get("epoch")) or float(len(history)),
        "train_time_s": total_time or None,
        "images_per_s": sum(time * rate for time, rate in timed) / sum(time for time, _ in timed) if timed else None,
        "test_loss": number(last.get("test_loss")),
        "train_loss": number(last.get("train_loss")),
        "train_acc": number(last.get("train_acc")),
        "val_loss": number(last.get("val_loss")),
    }


def override_key(text: str) -> str:
    """``+trainer.x@pkg=1`` -> ``trainer.x``: the config key a command-line override sets."""
    return text.split("=", 1)[0].lstrip("+~").split("@", 1)[0].strip()


def run_settings(summary: dict) -> dict[str, str] | None:
    """The option chosen in each config group, every other command-line override, and the seed."""
    choices = summary.get("choices")
    overrides = summary.get("overrides")
    if not isinstance(choices, dict) and not isinstance(overrides, list):
        return None
    choices = choices if isinstance(choices, dict) else {}
    settings: dict[str, str] = {}
    for text in overrides if isinstance(overrides, list) else []:
        if not isinstance(text, str) or "=" not in text:
            continue
        key = override_key(text)
        # Group selections are shown through their resolved choice; Hydra's own settings are not the run's.
        if key in choices or key == "hydra" or key.startswith(("hydra.", "hydra/")):
            continue
        settings[key] = text.split("=", 1)[1]
    for group, option in choices.items():
        settings[str(group)] = "none" if option is None else str(option)
    if summary.get("seed") is not None:
        settings["seed"] = str(summary["seed"])
    return settings


def load_run(folder: Path, extra: tuple[str, ...] = ()) -> RunRecord:
    """Read one run folder, whatever state it is in. Its metrics are the summary's numbers, or as far as
    ``metrics.jsonl`` tells them for a run that wrote no summary; ``extra``: further keys that may also come
    from the last epoch's row."""
    history = read_jsonl(folder / "metrics.jsonl")
    summary: dict = {}
    note = ""
    summary_path = folder / "summary.json"
    if summary_path.exists():
        try:
            summary = read_json(summary_path)
            status = str(summary.get("status") or "unknown")
        except (OSError, ValueError) as error:
            summary, status = {}, "unreadable"
            note = f"summary.json cannot be read ({error})"
    else:
        status = "partial"
        note = "no summary.json" + (f"; {len(history)} epochs in metrics.jsonl" if history else "")
    if status == "failed" and isinstance(summary.get("error"), str):
        lines = [line for line in summary["error"].strip().splitlines() if line.strip()]
        note = lines[-1].strip() if lines else ""

    metrics: dict[str, float | None] = {key: number(value) for key, value in summary.items()}
    for key, value in history_metrics(history).items():
        if metrics.get(key) is None:
            metrics[key] = value
    for key in extra:
        if metrics.get(key) is None and history:
            metrics[key] = number(history[-1].get(key))
    warnings = summary.get("warnings")
    metrics["warnings"] = float(len(warnings)) if isinstance(warnings, list) else (0.0 if summary else None)
    return RunRecord(folder, status, metrics, run_settings(summary), history, note)


def load_runs(paths: list[Path], extra: tuple[str, ...] = ()) -> list[RunRecord]:
    """Every run at or below ``paths``, labelled by its folder relative to their common root."""
    folders = find_run_folders(paths)
    if not folders:
        raise RecordError(f"No run folders (with summary.json or metrics.jsonl) under {', '.join(map(str, paths))}.")
    records = [load_run(folder, extra) for folder in folders]
    root = Path(os.path.commonpath(folders))
    for record in records:
        relative = record.folder.relative_to(root).as_posix()
        record.label = record.folder.name if relative == "." else relative
    return records
