"""Two runs started at once on one machine: with the default threads (each takes every core) against a thread
budget each (``trainer.threads``), as when a student starts two terminals, a script starts two runs, or a
launcher runs jobs side by side without splitting the cores.

    python benchmarks/threads.py [--threads 1] [--repeats 1] [-- data=folder data.root=PATH]

Each row is the wall time, from the first start to the last exit, of two identical runs started together
(a first-run size: ``data.subset=2000 data.test_subset=1000 trainer.epochs=1``), with each run's epoch and
evaluation times from its metrics.jsonl. Extra runner overrides go after ``--``. Run it on an otherwise idle
machine: it measures contention, so anything else running adds to both rows. Prints a table and writes
benchmarks/results/threads.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import device_name, save, split_overrides, table

from runner import project_path
from runner.device import available_cores
from runner.files import read_jsonl

FIRST_RUN = [
    "data.subset=2000",
    "data.test_subset=1000",
    "trainer.epochs=1",
    "diagnostics=off",
    "trainer.progress=false",
]


def pair(overrides: list[str], outputs: Path) -> dict:
    """Start two runs together; the wall time until both have exited and each run's own epoch figures."""
    started = time.perf_counter()
    environment = {**os.environ, "RUNNER_OUTPUTS": str(outputs)}
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "runner.train", *overrides, f"hydra.run.dir={outputs / str(index)}"],
            cwd=project_path(),
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(2)
    ]
    errors = [process.communicate()[1] for process in processes]
    wall = time.perf_counter() - started
    for process, error in zip(processes, errors, strict=True):
        if process.returncode != 0:
            raise SystemExit(f"a run failed ({process.returncode}):\n{error[-2000:]}")
    rows = [read_jsonl(outputs / str(index) / "metrics.jsonl")[-1] for index in range(2)]
    return {
        "wall_s": wall,
        "epoch_s": [row["epoch_time_s"] for row in rows],
        "evaluation_s": [row.get("eval_time_s") for row in rows],
    }


def main(argv: list[str]) -> None:
    own, extra = split_overrides(argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="each run's budget in the second row")
    parser.add_argument("--repeats", type=int, default=1, help="pairs per row (the median is reported)")
    arguments = parser.parse_args(own)
    overrides = FIRST_RUN + extra
    budget_override = f"trainer.threads={arguments.threads}"
    rows = []
    for name, budget in (("default threads", []), (budget_override, [budget_override])):
        results = []
        for _ in range(arguments.repeats):
            with tempfile.TemporaryDirectory() as folder:
                results.append(pair(overrides + budget, Path(folder)))
        middle = sorted(results, key=lambda result: result["wall_s"])[len(results) // 2]
        rows.append(
            {
                "runs": f"2 at once, {name}",
                "wall s": f"{statistics.median(result['wall_s'] for result in results):.1f}",
                "epoch s": " / ".join(f"{value:.1f}" for value in middle["epoch_s"]),
                "evaluation s": " / ".join(f"{value:.1f}" for value in middle["evaluation_s"] if value is not None),
                "results": results,
            }
        )
    columns = ["runs", "wall s", "epoch s", "evaluation s"]
    print(f"device: {device_name('cpu')}, {available_cores()} cores; overrides: {' '.join(overrides)}")
    print(table(rows, columns))
    default_wall, budget_wall = (statistics.median(r["wall_s"] for r in row["results"]) for row in rows)
    print(f"speed-up of the thread budget: {default_wall / budget_wall:.2f}x")
    measured = {"device": device_name("cpu"), "cores": available_cores(), "overrides": overrides, "rows": rows}
    path = save("threads", {**measured, "speedup": default_wall / budget_wall})
    print(f"wrote {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
