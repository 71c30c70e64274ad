"""What a run leaves behind: plain files that outlive the code.

``metrics.jsonl`` (one JSON object per epoch), ``summary.json``, ``checkpoint.pt`` and
``test_logits.npy``. Every whole-file write goes to a temporary name first and is then renamed, so a run
killed at any moment leaves the previous complete file, never half of a new one.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def atomic_write_bytes(path: Path, write) -> None:
    """Call ``write(handle)`` on a temporary file, flush it to disk, then rename it over ``path``."""
    temporary = _temporary(path)
    try:
        with open(temporary, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def plain(value: Any) -> Any:
    """JSON-ready: tensors and NumPy scalars become numbers, non-finite floats become null."""
    if isinstance(value, torch.Tensor):
        value = value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


def write_json(path: Path, data: dict) -> None:
    text = json.dumps(plain(data), indent=2, sort_keys=False) + "\n"
    atomic_write_bytes(path, lambda handle: handle.write(text.encode()))


def append_jsonl(path: Path, data: dict) -> None:
    # One write call per line: a reader sees whole lines, and a kill loses at most the line being written.
    with open(path, "a") as handle:
        handle.write(json.dumps(plain(data)) + "\n")
        handle.flush()


def read_jsonl(path: Path) -> list[dict]:
    """Every complete line of a JSON-lines file; a torn last line (a killed writer) is skipped."""
    rows = []
    if not path.exists():
        return rows
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def save_checkpoint(path: Path, state: dict) -> None:
    atomic_write_bytes(path, lambda handle: torch.save(state, handle))


def save_array(path: Path, array: np.ndarray) -> None:
    atomic_write_bytes(path, lambda handle: np.save(handle, array, allow_pickle=False))


class Recorder:
    """Writes one run's files into its output folder."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def path(self, name: str) -> Path:
        return self.folder / name

    def metrics(self, row: dict) -> None:
        append_jsonl(self.path("metrics.jsonl"), row)

    def rewrite_metrics(self, rows: list[dict]) -> None:
        text = "".join(json.dumps(plain(row)) + "\n" for row in rows)
        atomic_write_bytes(self.path("metrics.jsonl"), lambda handle: handle.write(text.encode()))

    def summary(self, data: dict) -> None:
        write_json(self.path("summary.json"), data)

    def checkpoint(self, state: dict) -> None:
        save_checkpoint(self.path("checkpoint.pt"), state)

    def test_logits(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Logits as float16 (for ensembles and compare), with the labels they are scored against."""
        save_array(self.path("test_logits.npy"), logits.float().cpu().numpy().astype(np.float16))
        save_array(self.path("test_labels.npy"), labels.cpu().numpy().astype(np.int64))
