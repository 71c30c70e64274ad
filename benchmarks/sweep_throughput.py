"""What a sweep costs beyond its training: per-job start-up, and what running jobs side by side buys.

    python benchmarks/sweep_throughput.py [--mode both] [--runs 8] [--epochs 2] [-- data=folder data.root=PATH]

The sweep is a multirun over activations (relu, gelu, selu, silu, elu, tanh, leaky_relu, softplus), each job a
small fixed training. Two figures, each a whole command's wall time over the training time of its runs (the
loop's own ``train_time_s`` from each ``summary.json``):

- start-up: the sweep with Hydra's basic launcher (one job after the other, in one process). Its wall time
  over the sum of its runs' training times is the price of per-job start-up (config, data, build, evaluation,
  records); Python start-up and imports are paid once.
- packed: the same sweep with ``hydra/launcher=gpus`` at 1, 2, ... jobs at once (``sweep.cpu_jobs`` on a CPU,
  ``sweep.jobs_per_gpu`` on a GPU machine). Its wall time over the sum of the same runs' training times when
  trained one at a time (the 1-job sweep): below 1.0, packing pays. A run's own training time grows when it
  shares the device, so the figure divides by the time each run takes alone.

The start-up sweep's wall time is also split by its runs' own records (training; the test set's and the
callbacks' seconds after each epoch; the rest of each run; what lies outside the runs), with its floor: the
figure if the runs' training and evaluations were the only cost.

Extra runner overrides go after ``--`` and replace the defaults of the same key. Prints a table and writes
benchmarks/results/sweep_throughput.json (or ``--output``), with the device's name.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import RESULTS, device_name, table

from runner import project_path
from runner.device import available_cores
from runner.files import read_jsonl, write_json

ACTIVATIONS = ["relu", "gelu", "selu", "silu", "elu", "tanh", "leaky_relu", "softplus"]
# A small fixed training: well under a second an epoch on a GPU, about ten seconds on a 2-core CPU.
TRAINING = [
    "data=synthetic",
    "data.train_size=5000",
    "data.test_size=1000",
    "data.batch_size=256",
    "model=convnet",
    "model.widths=[32,64,128]",
    "trainer.progress=false",
    "trainer.checkpoint_every=1000",
]


def merged(defaults: list[str], overrides: list[str]) -> list[str]:
    """``defaults`` without the keys that ``overrides`` names (Hydra refuses a key given twice), nor the knobs
    of a group that ``overrides`` picks another option of (``data=folder`` drops ``data.train_size``)."""
    keys = {override.split("=", 1)[0] for override in overrides}

    def replaced(override: str) -> bool:
        key = override.split("=", 1)[0]
        return key in keys or key.split(".", 1)[0] in keys

    return [override for override in defaults if not replaced(override)] + overrides


def run_sweep(name: str, arguments: list[str], runs_expected: int, folder: Path, threads: int) -> dict:
    """One multirun as a user types it; returns its wall time and its runs' summaries."""
    sweep_dir = folder / name
    environment = {**os.environ, "RUNNER_OUTPUTS": str(folder), "PYTHONUNBUFFERED": "1"}
    environment.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    command = [sys.executable, "-m", "runner.train", "-m", *arguments, f"hydra.sweep.dir={sweep_dir}"]
    started = time.perf_counter()
    result = subprocess.run(command, cwd=project_path(), env=environment, capture_output=True, text=True)
    wall = time.perf_counter() - started
    runs = []
    for path in sorted(sweep_dir.glob("*/summary.json"), key=lambda path: int(path.parent.name)):
        summary = json.loads(path.read_text())
        epochs = read_jsonl(path.parent / "metrics.jsonl")
        runs.append(
            {
                "test_time_s": sum(row.get("eval_time_s", 0.0) for row in epochs),
                "callbacks_time_s": sum(row.get("callbacks_time_s", 0.0) for row in epochs),
                "activation": summary.get("choices", {}).get("activation"),
                "status": summary.get("status"),
                "train_time_s": summary.get("train_time_s"),
                "wall_time_s": summary.get("wall_time_s"),
                "test_acc": summary.get("test_acc"),
                "slot": summary.get("slot"),
            }
        )
    if result.returncode != 0 or len(runs) != runs_expected:
        sys.stderr.write(result.stderr[-4000:])
        raise SystemExit(f"sweep {name} failed (exit {result.returncode}); its folder: {sweep_dir}")
    return {"name": name, "command": " ".join(command[1:]), "wall_s": wall, "runs": runs}


def processor_name() -> str:
    """The CPU's model name (Linux), else what the platform module knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def train_time(sweep: dict) -> float:
    return sum(run["train_time_s"] or 0.0 for run in sweep["runs"])


def parts(sweep: dict) -> dict:
    """Where a sweep's wall time went, in seconds, from its runs' own records: training; the evaluations the
    runs' config asks for after each epoch (the test set; the callbacks: the diagnostics' training images and
    probe); the rest of each run (build, the diagnostics at init, checkpoints, records); and what lies outside
    the runs (Python and PyTorch imported, Hydra's compositions, the sweep's check, exit). ``floor``: the
    figure if nothing but the runs' training and evaluations took time."""
    training, runs_wall = train_time(sweep), sum(run["wall_time_s"] or 0.0 for run in sweep["runs"])
    test = sum(run["test_time_s"] for run in sweep["runs"])
    callbacks = sum(run["callbacks_time_s"] for run in sweep["runs"])
    return {
        "training": training,
        "test set": test,
        "callbacks": callbacks,
        "rest of the runs": runs_wall - training - test - callbacks,
        "outside the runs": sweep["wall_s"] - runs_wall,
        "floor": (training + test + callbacks) / training,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=["startup", "packed", "both"], default="both")
    parser.add_argument("--runs", type=int, default=8, help="jobs in the sweep: the first N activations")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--cpu-jobs", default="1,2", help="packed mode without a GPU: jobs at once to compare")
    parser.add_argument("--jobs-per-gpu", default="1,2,4", help="packed mode on GPUs: jobs per GPU to compare")
    parser.add_argument("--threads", type=int, default=available_cores(), help="CPU threads for the whole sweep")
    parser.add_argument("--output", type=Path, default=RESULTS / "sweep_throughput.json")
    parser.add_argument("overrides", nargs="*", help="runner overrides, after --")
    options = parser.parse_args()

    if not 1 <= options.runs <= len(ACTIVATIONS):
        parser.error(f"--runs must be between 1 and {len(ACTIVATIONS)}")
    if options.mode != "startup" and importlib.util.find_spec("hydra_plugins.hydra_joblib_launcher") is None:
        # Before any sweep runs, so that the start-up figure is not lost to the packed sweep failing later.
        parser.error('packed mode needs the joblib launcher: pip install -e ".[sweep]" (or --mode startup)')
    activations = ACTIVATIONS[: options.runs]
    training = merged(TRAINING + [f"trainer.epochs={options.epochs}"], options.overrides)
    sweep_values = f"activation={','.join(activations)}"
    on_gpu = torch.cuda.is_available() and "trainer.device=cpu" not in training
    knob, levels = ("sweep.jobs_per_gpu", options.jobs_per_gpu) if on_gpu else ("sweep.cpu_jobs", options.cpu_jobs)
    levels = sorted({int(level) for level in levels.split(",")} | {1})  # 1 at a time: each run's time alone

    sweeps = []
    with tempfile.TemporaryDirectory(prefix="sweep-throughput-") as scratch:
        folder = Path(scratch)
        if options.mode in ("startup", "both"):
            sweep = run_sweep("startup", training + [sweep_values], len(activations), folder, options.threads)
            sweeps.append(
                {**sweep, "launcher": "basic", "jobs_at_once": 1, "figure": sweep["wall_s"] / train_time(sweep)}
            )
        if options.mode in ("packed", "both"):
            packed = []
            for level in levels:
                arguments = training + ["hydra/launcher=gpus", f"{knob}={level}", sweep_values]
                sweep = run_sweep(f"packed-{level}", arguments, len(activations), folder, options.threads)
                at_once = level * torch.cuda.device_count() if on_gpu else level
                packed.append({**sweep, "launcher": f"gpus {knob}={level}", "jobs_at_once": at_once})
            alone = {run["activation"]: run["train_time_s"] for run in packed[0]["runs"]}
            for sweep in packed:
                sweep["figure"] = sweep["wall_s"] / sum(alone.values())
                sweep["speedup"] = packed[0]["wall_s"] / sweep["wall_s"]
            sweeps += packed

    rows = [
        {
            "sweep": sweep["name"],
            "launcher": sweep["launcher"],
            "jobs at once": sweep["jobs_at_once"],
            "runs": len(sweep["runs"]),
            "wall s": f"{sweep['wall_s']:.1f}",
            "sum of train s": f"{train_time(sweep):.1f}",
            "wall / train alone": f"{sweep['figure']:.2f}",
            "wall / own train": f"{sweep['wall_s'] / train_time(sweep):.2f}",
            "speedup": f"{sweep['speedup']:.2f}" if "speedup" in sweep else "",
        }
        for sweep in sweeps
    ]
    device = device_name() if on_gpu else f"cpu: {processor_name()}"
    print(f"device: {device}, {available_cores()} cores, {torch.cuda.device_count()} GPUs")
    print(f"training: {' '.join(training)}")
    print(table(rows, list(rows[0])))
    for sweep in sweeps:
        if sweep["launcher"] == "basic":
            sweep["parts"] = parts(sweep)
            seconds = {key: value for key, value in sweep["parts"].items() if key != "floor"}
            print(f"\n{sweep['name']}, where its {sweep['wall_s']:.1f} s went:")
            print(
                table(
                    [{key: f"{value:.1f} s ({value / sweep['wall_s']:.0%})" for key, value in seconds.items()}],
                    list(seconds),
                )
            )
            print(f"its runs' training and evaluations alone: {sweep['parts']['floor']:.2f} (no other cost)")
    options.output.parent.mkdir(parents=True, exist_ok=True)
    write_json(
        options.output,
        {
            "measured": time.strftime("%Y-%m-%d %H:%M:%S"),
            "device": device,
            "cores": available_cores(),
            "gpus": torch.cuda.device_count(),
            "threads": options.threads,
            "training": training,
            "activations": activations,
            "sweeps": sweeps,
        },
    )
    print(f"written: {options.output}")


if __name__ == "__main__":
    main()
