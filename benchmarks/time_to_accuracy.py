"""Accuracy and time of shipped recipes, several seeds in a row, each as a user runs it.

    python benchmarks/time_to_accuracy.py experiment=cpu_fast --seeds 3 -- data=folder data.root=PATH
    python benchmarks/time_to_accuracy.py experiment=fast94 --reference airbench94 -- data=folder data.root=PATH

For each experiment: mean and spread of final test accuracy and of training time (the loop's own clock),
the warm-up before that clock (CUDA: cuDNN's kernel search, compilation), and the whole command's wall time
(Python start-up, config, data load, warm-up, evaluation), on whatever device is present. Extra runner
overrides go after ``--``.

``--reference airbench94`` (or 95, 96) also trains Keller Jordan's own airbench, from its PyPI package
(``pip install airbench==0.1.8``; CUDA only), over the same seeds on the same images, and prints each
experiment's training time over airbench's. ``--reference airbench94_muon --reference-source PATH`` does the
same with airbench94_muon, which the package lacks: PATH is ``airbench94_muon.py`` of
github.com/KellerJordan/cifar10-airbench, kept outside the project, whose ``main`` is called with the compiled
network its own script builds. Clocks: the runner's is its training epochs plus the final test evaluation;
airbench's own clock covers its training, whitening and final test evaluation. Both keep the one-off CUDA costs
off the clock: airbench with a warm-up run, the runner with ``trainer.device_warmup``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import compose_config, device_name, save, split_overrides, table

from runner import data as data_module
from runner import project_path
from runner.files import read_jsonl

REFERENCES = ("airbench94", "airbench95", "airbench96", "airbench94_muon")
MUON_SOURCE = "airbench94_muon.py of github.com/KellerJordan/cifar10-airbench"


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
    evaluations = [entry["eval_time_s"] for entry in read_jsonl(folder / "metrics.jsonl") if "eval_time_s" in entry]
    if summary.get("train_time_s") is not None and evaluations:
        summary["train_eval_time_s"] = summary["train_time_s"] + evaluations[-1]
    return {"seed": seed, "wall_time_s": wall, **summary}


def write_airbench_data(splits: data_module.Splits, folder: Path) -> None:
    """The runner's images in airbench's own cache files (``train.pt`` and ``test.pt``: uint8 images in NHWC,
    labels, class names), so that airbench trains on the same images and downloads nothing."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, images, labels in (
        ("train", splits.train_images, splits.train_labels),
        ("test", splits.test_images, splits.test_labels),
    ):
        stored = {"images": images.permute(0, 2, 3, 1).contiguous(), "labels": labels.long(), "classes": splits.classes}
        torch.save(stored, folder / f"{name}.pt")


def airbench_result(printed: str) -> tuple[float, float]:
    """Test accuracy (with its test-time augmentation) and airbench's own clock, from the final row of the table
    that airbench prints, whose last two columns are those: the package's (0.1.8) ``| run | epoch | train_loss |
    train_acc | val_acc | tta_val_acc | total_time_seconds |`` and airbench94_muon's, without train_loss."""
    for line in reversed(printed.splitlines()):
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 6 and cells[1] == "eval":
            return float(cells[-2]), float(cells[-1])
    raise RuntimeError(f"airbench printed no final 'eval' row; its output ended with:\n{printed[-1000:]}")


def check_reference(name: str, source: Path | None) -> None:
    """Exit, saying what is missing, before any run when ``name`` cannot be trained here."""
    if name == "airbench94_muon":
        if source is None or not source.is_file():
            sys.exit(f"--reference airbench94_muon needs --reference-source PATH: the {MUON_SOURCE}.")
    elif importlib.util.find_spec("airbench") is None:
        sys.exit(f"--reference {name} needs airbench's package: pip install airbench==0.1.8")
    if not torch.cuda.is_available():
        sys.exit(f"--reference {name}: airbench runs on CUDA only, and no CUDA device is present.")


def airbench_trainers(name: str, source: Path | None):
    """airbench's train (taking the run's number) and warm-up functions for ``name``."""
    if name == "airbench94_muon":
        spec = importlib.util.spec_from_file_location("airbench94_muon", source)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        # The network as its script's own __main__ builds it, compiled once for every run.
        model = module.CifarNet().cuda().to(memory_format=torch.channels_last)
        model.compile(mode="max-autotune")
        return (lambda run: module.main(run, model)), (lambda: module.main("warmup", model))
    import airbench

    number = name.removeprefix("airbench")
    train = getattr(airbench, f"train{number}")
    return (lambda run: train(run=run)), getattr(airbench, f"warmup{number}")


def run_reference(name: str, source: Path | None, seeds: int, overrides: list[str], folder: Path) -> list[dict]:
    train, warmup = airbench_trainers(name, source)
    # airbench reads ./cifar10/{train,test}.pt relative to the working directory.
    write_airbench_data(data_module.load(compose_config(overrides).data), folder / "cifar10")
    runs = []
    working_directory = os.getcwd()
    os.chdir(folder)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            warmup()
        for seed in range(seeds):
            torch.manual_seed(seed)
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                train(seed)
            test_acc, own_time = airbench_result(printed.getvalue())
            # No whole-command wall time: these runs share one process, past its start-up and data load.
            runs.append({"seed": seed, "status": "completed", "test_acc": test_acc, "train_eval_time_s": own_time})
            print(f"{name} seed {seed}: test_acc={test_acc} train_eval_time_s={own_time:.2f}", flush=True)
    finally:
        os.chdir(working_directory)
    return runs


def row(name: str, runs: list[dict]) -> dict:
    done = [run for run in runs if run.get("status") == "completed"]

    def column(key: str) -> str:
        return spread([run[key] for run in done if run.get(key) is not None])

    times = [run["train_eval_time_s"] for run in done if run.get("train_eval_time_s") is not None]
    return {
        "experiment": name,
        "runs": f"{len(done)}/{len(runs)}",
        "test_acc": column("test_acc"),
        "train_time_s": column("train_time_s"),
        "train_eval_time_s": column("train_eval_time_s"),
        "warmup_time_s": column("warmup_time_s"),
        "wall_time_s": column("wall_time_s"),
        "mean_train_eval_time_s": statistics.mean(times) if times else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Runner overrides for every run (data=folder data.root=PATH) go after --.",
    )
    parser.add_argument("experiments", nargs="+", help="experiment=NAME entries (or any override sets)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument(
        "--reference", choices=REFERENCES, help="also train airbench's own recipe (CUDA; pip install airbench==0.1.8)"
    )
    parser.add_argument("--reference-source", type=Path, help=f"for airbench94_muon: the {MUON_SOURCE}")
    parser.add_argument(
        "--output", default="time_to_accuracy", help="a name in benchmarks/results/, or a path ending .json"
    )
    own, overrides = split_overrides(sys.argv[1:])
    arguments = parser.parse_args(own)
    if arguments.reference_source is not None and arguments.reference != "airbench94_muon":
        parser.error("--reference-source is airbench94_muon's script: it goes with --reference airbench94_muon")
    if arguments.reference:
        # Before the runs, so that a missing piece costs no time.
        check_reference(arguments.reference, arguments.reference_source)
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
        results[experiment] = runs
        rows.append(row(experiment, runs))
    columns = ["experiment", "runs", "test_acc", "train_time_s", "train_eval_time_s", "warmup_time_s", "wall_time_s"]
    if arguments.reference:
        runs = run_reference(
            arguments.reference, arguments.reference_source, arguments.seeds, overrides, root / arguments.reference
        )
        results[arguments.reference] = runs
        reference = row(arguments.reference, runs)
        for line in rows:
            if line["mean_train_eval_time_s"] and reference["mean_train_eval_time_s"]:
                line[f"time_over_{arguments.reference}"] = round(
                    line["mean_train_eval_time_s"] / reference["mean_train_eval_time_s"], 3
                )
        rows.append(reference)
        columns.append(f"time_over_{arguments.reference}")
    print(f"\ndevice: {device_name()}")
    print(table(rows, columns))
    path = save(arguments.output, {"device": device_name(), "overrides": overrides, "rows": rows, "runs": results})
    print(f"written: {path}")


if __name__ == "__main__":
    main()
