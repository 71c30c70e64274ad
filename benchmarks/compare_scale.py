"""Compare at scale: the seconds ``python -m runner.compare`` takes on 1,000 run folders, per mode.

    python benchmarks/compare_scale.py [--runs 1000] [--epochs 30] [--repeats 3]

The folders are a sweep as ``runner.train -m`` leaves it, written here without training: 5 activations x 4
inits x 5 learning rates x 10 seeds (for 1,000 runs), each with its resolved ``config.json`` (composed from
``conf/`` as a run composes it), a ``summary.json`` as ``runner.loop`` writes it, ``metrics.jsonl`` with one
line per epoch and ``.hydra/`` (config.yaml, hydra.yaml, overrides.yaml); the sweep folder holds the
``multirun.yaml`` of a sweep whose ``hydra.sweeper.params`` name the swept settings, so ``--plot`` and
``--report`` draw the score-against-parameter figure too. Each mode is timed as a fresh process (imports
included), ``--repeats`` times one after the other; the row is the median of the wall times, beside the
median CPU time (user + system) and the machine's load average, since on a shared machine the wall time
grows with the others' work. The budget is 3 s per mode.

Prints a table and writes benchmarks/results/compare_scale.json (or ``--output``), with the machine's name.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import compose_config, device_name, save, table
from omegaconf import OmegaConf

from runner import project_path

ACTIVATIONS = ["relu", "gelu", "silu", "tanh", "elu"]
INITS = ["default", "kaiming", "xavier", "orthogonal"]
RATES = [0.01, 0.02, 0.05, 0.1, 0.2]
BUDGET_S = 3.0
BASE = ["data=synthetic", "model=convnet", "trainer.progress=false"]


def resolved_configs() -> dict[tuple[str, str], dict]:
    """The resolved config of each activation and init, as runner.resume writes it into config.json."""
    configs = {}
    for activation, init in itertools.product(ACTIVATIONS, INITS):
        config = compose_config([*BASE, f"activation={activation}", f"init={init}"])
        configs[activation, init] = OmegaConf.to_container(config, resolve=True)
    return configs


def history(final: float, epochs: int, noise: random.Random) -> list[dict]:
    rows = []
    for epoch in range(1, epochs + 1):
        progress = 1 - math.exp(-4 * epoch / epochs)
        rows.append(
            {
                "epoch": epoch,
                "step": 20 * epoch,
                "lr": 0.1 * (1 - epoch / epochs),
                "train_loss": 2.3 - 1.6 * progress + noise.gauss(0, 0.02),
                "train_acc": final * progress + 0.05,
                "epoch_time_s": 2.0 + noise.random() * 0.1,
                "images_per_s": 2500 + noise.random() * 100,
                "test_loss": 2.3 - 1.4 * progress,
                "test_acc": final * progress + noise.gauss(0, 0.005),
                "eval_time_s": 0.2,
                "train_test_gap": 0.05 * progress,
            }
        )
    return rows


def summary_of(rows: list[dict], choices: dict, overrides: list[str], seed: int, folder: Path) -> dict:
    """A summary as runner.loop.summarize writes it."""
    return {
        "status": "completed",
        "test_acc": rows[-1]["test_acc"],
        "best_test_acc": max(row["test_acc"] for row in rows),
        "test_loss": rows[-1]["test_loss"],
        "train_loss": rows[-1]["train_loss"],
        "train_acc": rows[-1]["train_acc"],
        "val_acc": None,
        "val_loss": None,
        "epochs_completed": len(rows),
        "resumes": 0,
        "steps_completed": rows[-1]["step"],
        "first_loss": 2.4,
        "train_time_s": sum(row["epoch_time_s"] for row in rows),
        "wall_time_s": sum(row["epoch_time_s"] + row["eval_time_s"] for row in rows) + 3.0,
        "images_per_s": statistics.fmean(row["images_per_s"] for row in rows),
        "params": 12_345,
        "test_images": 500,
        "device": "cpu",
        "output_dir": str(folder),
        "choices": choices,
        "overrides": overrides,
        "seed": seed,
        "initial_loss": 2.31,
        "expected_initial_loss": 2.302585092994046,
        "warnings": [],
    }


def write_sweep(root: Path, runs: int, epochs: int) -> None:
    configs = resolved_configs()
    noise = random.Random(0)
    seeds = max(1, runs // (len(ACTIVATIONS) * len(INITS) * len(RATES)))
    settings = itertools.product(ACTIVATIONS, INITS, RATES, range(seeds))
    for job, (activation, init, lr, seed) in enumerate(itertools.islice(settings, runs)):
        folder = root / str(job)
        (folder / ".hydra").mkdir(parents=True)
        config = json.loads(json.dumps(configs[activation, init]))
        config["seed"], config["optimizer"]["lr"] = seed, lr
        overrides = [*BASE, f"activation={activation}", f"init={init}", f"optimizer.lr={lr}", f"seed={seed}"]
        choices = {"activation": activation, "init": init, "model": "convnet", "data": "synthetic"}
        rows = history(0.5 + 0.02 * ACTIVATIONS.index(activation) + 0.05 * lr + noise.gauss(0, 0.01), epochs, noise)
        (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        (folder / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
        (folder / "summary.json").write_text(json.dumps(summary_of(rows, choices, overrides, seed, folder), indent=2))
        (folder / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(config))
        (folder / ".hydra" / "overrides.yaml").write_text("".join(f"- {override}\n" for override in overrides))
        (folder / ".hydra" / "hydra.yaml").write_text(
            "hydra:\n  runtime:\n    choices:\n" + "".join(f"      {key}: {value}\n" for key, value in choices.items())
        )
    params = {
        "activation": ",".join(ACTIVATIONS),
        "init": ",".join(INITS),
        "optimizer.lr": ",".join(map(str, RATES)),
        "seed": f"range(0,{seeds})",
    }
    multirun = {
        "hydra": {"sweeper": {"params": params}, "sweep": {"dir": str(root)}},
        **configs[ACTIVATIONS[0], INITS[0]],
    }
    (root / "multirun.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(multirun)))


def modes(root: Path, scratch: Path) -> dict[str, list[str]]:
    return {
        "plain": [],
        "--group-seeds": ["--group-seeds"],
        "--group-seeds --baseline activation=relu": ["--group-seeds", "--baseline", "activation=relu"],
        "--plot": ["--plot", str(scratch / "curves.png")],
        "--report": ["--report", str(scratch / "report")],
    }


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(arguments: list[str], repeats: int) -> tuple[list[float], list[float]]:
    """Wall seconds, and the CPU seconds of the process (user + system): on a machine shared with other work the
    wall time grows with the load, the CPU time much less."""
    walls, cpus = [], []
    for _ in range(repeats):
        started, cpu = time.perf_counter(), children_cpu_s()
        subprocess.run(
            [sys.executable, "-m", "runner.compare", *arguments], check=True, cwd=project_path(), capture_output=True
        )
        walls.append(time.perf_counter() - started)
        cpus.append(children_cpu_s() - cpu)
    return walls, cpus


def load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--output", default="compare_scale", help="a name in benchmarks/results/, or a path ending .json"
    )
    arguments = parser.parse_args(argv)

    rows = []
    load_before = None
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "multirun" / "2026-01-01" / "12-00-00-000000"
        started = time.perf_counter()
        write_sweep(root, arguments.runs, arguments.epochs)
        print(f"wrote {arguments.runs} run folders in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        load_before = load_average()
        for name, extra in modes(root, Path(folder)).items():
            times, cpus = timed([str(root), *extra], arguments.repeats)
            median = statistics.median(times)
            rows.append(
                {
                    "mode": name,
                    "median_s": round(median, 3),
                    "min_s": round(min(times), 3),
                    "max_s": round(max(times), 3),
                    "cpu_median_s": round(statistics.median(cpus), 3),
                    "times_s": [round(value, 3) for value in times],
                    "under_budget": median < BUDGET_S,
                }
            )
            print(f"{name}: {median:.2f} s ({statistics.median(cpus):.2f} s of CPU)", file=sys.stderr)
    print(table(rows, ["mode", "median_s", "min_s", "max_s", "cpu_median_s", "under_budget"]))
    print(f"load average (1 min) before and after: {load_before}, {load_average()}")
    path = save(
        arguments.output,
        {
            "device": device_name("cpu"),
            "runs": arguments.runs,
            "epochs": arguments.epochs,
            "repeats": arguments.repeats,
            "budget_s": BUDGET_S,
            "load_average_1min": [load_before, load_average()],
            "rows": rows,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
