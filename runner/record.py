"""What a run leaves behind in its folder: ``metrics.jsonl`` (one JSON object per epoch), ``summary.json``,
``checkpoint.pt`` and ``test_logits.npy`` with ``test_labels.npy``, all written through ``runner.files``'
atomic writes, so a run killed at any moment leaves whole files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from runner.files import append_jsonl, atomic_write_bytes, rewrite_jsonl, save_array, write_json


def logits_array(logits: torch.Tensor) -> np.ndarray:
    """Logits as the float16 array the records keep (for ensembles and compare): half the size, and the
    ranking of classes survives the rounding."""
    return logits.float().cpu().numpy().astype(np.float16)


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
        rewrite_jsonl(self.path("metrics.jsonl"), rows)

    def summary(self, data: dict) -> None:
        write_json(self.path("summary.json"), data)

    def checkpoint(self, state: dict) -> None:
        atomic_write_bytes(self.path("checkpoint.pt"), lambda handle: torch.save(state, handle))

    def logits(self, name: str, logits: torch.Tensor) -> None:
        save_array(self.path(name), logits_array(logits))

    def test_logits(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """The test logits with the labels they are scored against."""
        self.logits("test_logits.npy", logits)
        save_array(self.path("test_labels.npy"), labels.cpu().numpy().astype(np.int64))
