"""Accuracy and time of shipped recipes, several seeds in a row, each as a user runs it.

    python benchmarks/time_to_accuracy.py experiment=cpu_fast --seeds 3 -- data=folder data.root=PATH

For each experiment: mean and spread of final test accuracy and of training time (the loop's own clock),
and the whole command's wall time (Python start-up, config, data load, compilation, evaluation), on
whatever device is present. Extra runner overrides go after ``--``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import device_name, save, table

from runner import project_path


def spread(values: list[float]) -> str:
    if not values:
        return "n/a"
    deviation = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {deviation:.4f}"


def run_once(experiment: str, seed: int, overrides: list[str], folder: Path) -> dict:
    started = time.perf_counter()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "runner.train",
            experiment,
            f"seed={seed}",
            f"hydra.run.dir={folder}",
            "trainer.progress=false",
            *overrides,
        ],
        cwd=project_path(),
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    wall = time.perf_counter() - started
    try:
        summary = json.loads((folder / "summary.json").read_text())
    except (OSError, json.JSONDecodeError):
        summary = {"status": "failed", "error": result.stderr[-2000:]}
    return {"seed": seed, "wall_time_s": wall, **summary}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiments", nargs="+", help="experiment=NAME entries (or any override sets)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("overrides", nargs=argparse.REMAINDER, help="after --: overrides for every run")
    arguments = parser.parse_args()
    overrides = [item for item in arguments.overrides if item != "--"]
    root = Path(tempfile.mkdtemp(prefix="time_to_accuracy-"))
    rows, results = [], {}
    for experiment in arguments.experiments:
        runs = []
        for seed in range(arguments.seeds):
            run = run_once(experiment, seed, overrides, root / f"{experiment.replace('=', '-')}-{seed}")
            runs.append(run)
            print(
                f"{experiment} seed {seed}: {run.get('status')} test_acc={run.get('test_acc')} "
                f"train_time_s={run.get('train_time_s')} wall_time_s={run['wall_time_s']:.1f}",
                flush=True,
            )
        done = [run for run in runs if run.get("status") == "completed"]
        results[experiment] = runs
        rows.append(
            {
                "experiment": experiment,
                "runs": f"{len(done)}/{len(runs)}",
                "test_acc": spread([run["test_acc"] for run in done]),
                "train_time_s": spread([run["train_time_s"] for run in done]),
                "wall_time_s": spread([run["wall_time_s"] for run in done]),
            }
        )
    print(f"\ndevice: {device_name()}")
    print(table(rows, ["experiment", "runs", "test_acc", "train_time_s", "wall_time_s"]))
    path = save("time_to_accuracy", {"device": device_name(), "overrides": overrides, "rows": rows, "runs": results})
    print(f"written: {path}")


if __name__ == "__main__":
    main()
