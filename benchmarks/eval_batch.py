"""Evaluation speed by batch size: test images per second of ``runner.loop.evaluate`` (eval mode, the run's
test-time views) at each ``trainer.eval_batch_size``, for a few networks, on this device. It is the figure
behind ``trainer.eval_batch_size=auto`` (``runner.device.EVAL_BATCH_SIZES``).

    python benchmarks/eval_batch.py [--sizes 64,128,256,512,1000,2000] [--repeats 3] [-- overrides]

Each cell is the best of ``--repeats`` passes over 4,000 synthetic test images, after one untimed batch.
Runner overrides after ``--`` apply to every network. Prints a table and writes
benchmarks/results/eval_batch.json (or ``--output``), with the device's name.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time

from common import compose_config, device_name, save, split_overrides, table

from runner.device import pick_eval_batch_size, synchronize
from runner.evaluate import evaluate
from runner.run import build

NETWORKS = {
    "cpu_fast (fastnet 32/64/128, flip views)": ["experiment=cpu_fast"],
    "resnet (the default)": [],
    "convnet": ["model=convnet"],
}
DATA = ["data=synthetic", "data.train_size=1000", "data.test_size=4000", "diagnostics=off"]


def images_per_second(run, batch_size: int, repeats: int) -> float:
    run = dataclasses.replace(run, eval_batch_size=batch_size)
    images, labels = run.splits.test_images, run.splits.test_labels
    evaluate(run, images[:batch_size], labels[:batch_size])  # one-off costs: allocation, oneDNN/cuDNN plans
    best = float("inf")
    for _ in range(repeats):
        synchronize(run.device)
        started = time.perf_counter()
        evaluate(run, images, labels)
        synchronize(run.device)
        best = min(best, time.perf_counter() - started)
    return len(labels) / best


def main(argv: list[str]) -> None:
    own, overrides = split_overrides(argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="64,128,256,512,1000,2000")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", default="eval_batch", help="a name in benchmarks/results/, or a path ending .json")
    arguments = parser.parse_args(own)
    sizes = [int(size) for size in arguments.sizes.split(",")]

    rows = []
    for name, network in NETWORKS.items():
        run = build(compose_config(DATA + network + overrides), tempfile.mkdtemp())
        rates = {size: images_per_second(run, size, arguments.repeats) for size in sizes}
        automatic = pick_eval_batch_size("auto", run.device)
        rows.append(
            {
                "network": name,
                **{str(size): f"{rate:.0f}" for size, rate in rates.items()},
                "auto": automatic,
                "best": max(rates, key=rates.get),
            }
        )
    device = device_name()
    print(f"device: {device}; test images per second by eval batch size")
    print(table(rows, ["network", *map(str, sizes), "auto", "best"]))
    results = {"device": device, "repeats": arguments.repeats, "overrides": overrides, "rows": rows}
    path = save(arguments.output, results)
    print(f"wrote {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
