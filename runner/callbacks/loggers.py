"""Optional loggers of the per-epoch metrics (``logger=tensorboard``), as loop callbacks (``runner.callbacks``).

The run's own records (``metrics.jsonl``, ``summary.json``) are always written; a logger only copies each
epoch's row to a tool with a live viewer. ``tensorboard --logdir outputs`` shows every run and sweep job.
"""

from __future__ import annotations

import numbers
from pathlib import Path

from runner.errors import ConfigError


class TensorBoard:
    """Every number of each epoch's metrics row as a scalar (tag = the metrics.jsonl key, step = the epoch),
    written with ``torch.utils.tensorboard.SummaryWriter`` into ``<run folder>/<folder>``."""

    def __init__(self, folder: str = "tensorboard"):
        try:
            import tensorboard  # noqa: F401 - SummaryWriter needs it, and a missing one should say so now
        except ImportError:
            raise ConfigError(
                'logger=tensorboard needs the tensorboard package: pip install -e ".[tensorboard]"'
            ) from None
        self.folder = folder
        self.writer = None

    def open(self, run_folder: Path, first_epoch: int):
        from torch.utils.tensorboard import SummaryWriter

        # purge_step hides events a killed attempt wrote at this epoch or later, so a resumed run's curves
        # show each epoch once.
        return SummaryWriter(log_dir=str(Path(run_folder) / self.folder), purge_step=first_epoch)

    def on_epoch_end(self, run, state: dict, row: dict) -> None:
        if self.writer is None:
            self.writer = self.open(run.recorder.folder, row["epoch"])
        for key, value in row.items():
            if key != "epoch" and isinstance(value, numbers.Real) and not isinstance(value, bool):
                self.writer.add_scalar(key, float(value), global_step=row["epoch"])
        self.writer.flush()  # a live TensorBoard sees each epoch as it ends

    def on_train_end(self, run, state: dict, summary: dict) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
