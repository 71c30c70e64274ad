"""Start-up: the seconds from command start to exit of ``python -m runner.train data=synthetic trainer.epochs=0``
(imports, config, build, data, the initial diagnostics), beside the floor that Python and PyTorch set on this
machine before any of the runner's code runs, and the load of a cached dataset.

    python benchmarks/startup.py [--repeats 5] [-- data=folder data.root=PATH]

Each command row is the median of ``--repeats`` fresh processes, run one after the other, each run into a new
output folder (a finished folder would make the runner skip the run). The floor rows:

- ``python -c pass``: the interpreter alone;
- ``import torch``;
- ``import torch, torch._dynamo``: what any ``torch.optim`` optimizer costs to build, because its
  ``add_param_group`` goes through ``torch._disable_dynamo``, which imports ``torch._dynamo`` on first call.

With data overrides after ``--`` (a source with a cache: ``data=folder`` or ``data=cifar10``), one more row
times ``runner.data.load`` in this process after a first, untimed load has written the cache. Prints a table
and writes benchmarks/results/startup.json (or ``--output``), with the machine's name.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import compose_config, device_name, save, split_overrides, table

from runner import project_path
from runner.data import load

FLOOR = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "import torch": [sys.executable, "-c", "import torch"],
    "import torch, torch._dynamo": [sys.executable, "-c", "import torch, torch._dynamo"],
}
RUNS = {
    "runner.train data=synthetic trainer.epochs=0": ["data=synthetic", "trainer.epochs=0"],
    "the same with diagnostics=off": ["data=synthetic", "trainer.epochs=0", "diagnostics=off"],
}


def wall_times(command: list[str], repeats: int, folder: Path | None = None) -> list[float]:
    times = []
    for repeat in range(repeats):
        extra = [f"hydra.run.dir={folder / str(repeat)}"] if folder else []
        start = time.perf_counter()
        subprocess.run(command + extra, check=True, cwd=project_path(), capture_output=True)
        times.append(time.perf_counter() - start)
    return times


def cached_load_times(overrides: list[str], repeats: int) -> list[float]:
    data = compose_config(overrides).data
    load(data)  # writes the cache when there is none yet
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        load(data)
        times.append(time.perf_counter() - start)
    return times


def row(name: str, times: list[float]) -> dict:
    return {
        "what": name,
        "median_s": round(statistics.median(times), 2),
        "min_s": round(min(times), 2),
        "max_s": round(max(times), 2),
        "times_s": [round(value, 3) for value in times],
    }


def main(argv: list[str]) -> None:
    own, overrides = split_overrides(argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", default="startup", help="a name in benchmarks/results/, or a path ending .json")
    arguments = parser.parse_args(own)

    rows = [row(name, wall_times(command, arguments.repeats)) for name, command in FLOOR.items()]
    with tempfile.TemporaryDirectory() as folder:
        for index, (name, runner_overrides) in enumerate(RUNS.items()):
            command = [sys.executable, "-m", "runner.train", *runner_overrides]
            rows.append(row(name, wall_times(command, arguments.repeats, Path(folder) / str(index))))
    if overrides:
        rows.append(row(f"cached load: {' '.join(overrides)}", cached_load_times(overrides, arguments.repeats)))

    medians = {entry["what"]: entry["median_s"] for entry in rows}
    floor = medians["import torch, torch._dynamo"]
    runner_share = round(medians["runner.train data=synthetic trainer.epochs=0"] - floor, 2)
    print(table(rows, ["what", "median_s", "min_s", "max_s"]))
    print(f"runner's own share (start-up median over the torch + torch._dynamo floor): {runner_share} s")
    path = save(
        arguments.output,
        {"device": device_name(), "repeats": arguments.repeats, "rows": rows, "runner_share_s": runner_share},
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
