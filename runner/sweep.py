"""Sweep-level behaviour: what a multirun reports when its jobs are done.

Hydra runs every job of a sweep even when some fail, then re-raises the first failure and exits 1. Its
message names one job; this callback makes the last lines printed name them all, with their error files,
by reading the jobs' own ``summary.json`` files, so it works for every launcher, in-process or not.
"""

from __future__ import annotations

import atexit
import json
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


def sweep_statuses(sweep_dir: Path) -> dict[str, list[Path]]:
    """Run folders of a sweep grouped by the status in their summary (``unreadable`` when there is none)."""
    statuses: dict[str, list[Path]] = {}
    for config in sorted(sweep_dir.glob("**/.hydra/config.yaml")):
        folder = config.parent.parent
        try:
            status = json.loads((folder / "summary.json").read_text()).get("status", "unreadable")
        except (OSError, json.JSONDecodeError):
            status = "unreadable"
        statuses.setdefault(status, []).append(folder)
    return statuses


def report(sweep_dir: Path, stream=None) -> None:
    stream = stream or sys.stderr
    statuses = sweep_statuses(sweep_dir)
    if not statuses:
        return
    counts = ", ".join(f"{len(folders)} {status}" for status, folders in sorted(statuses.items()))
    print(f"\nSweep {sweep_dir}: {counts}.", file=stream)
    for folder in statuses.get("failed", []) + statuses.get("unreadable", []):
        error = folder / "error.txt"
        last_line = error.read_text().strip().splitlines()[-1] if error.exists() else "no error.txt"
        print(f"  failed: {folder}  ({last_line})", file=stream)
    print(f"Compare: python -m runner.compare {sweep_dir}", file=stream)


class SweepReport(Callback):
    """At the very end of a multirun (after Hydra's own error message, if any), list failed jobs."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        atexit.register(report, Path(config.hydra.sweep.dir))
