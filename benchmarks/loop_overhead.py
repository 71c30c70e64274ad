"""How much the runner's loop costs: images per second of a full runner epoch (augmentation on the device,
metrics, progress bar) over a bare PyTorch loop training the same model on pre-augmented tensors.

    python benchmarks/loop_overhead.py                       # fastnet on synthetic images, this device
    python benchmarks/loop_overhead.py data=folder data.root=../shared/data/cifar10-jpeg.tar.gz data.subset=10000

Any runner override is accepted. Ends with ``ratio: N.NN`` (runner over bare; 1.0 means no overhead) and writes
benchmarks/results/loop_overhead.json (or ``--output``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

import torch
import torch.nn.functional as F
from common import compose_config, device_name, save, table

from runner.device import synchronize
from runner.loop import StopRequest, train_epoch
from runner.run import build

DEFAULTS = [
    "data=synthetic",
    "data.train_size=10000",
    "data.test_size=500",
    "data.batch_size=500",
    "model=fastnet",
    "model.widths=[32,64,128]",
    "trainer.epochs=3",
    "diagnostics=off",
]


def runner_throughput(overrides: list[str], epochs: int) -> float:
    config = compose_config(DEFAULTS + overrides)
    run = build(config, tempfile.mkdtemp())
    state = {"epoch": 0, "step": 0, "first_loss": None, "train_time_s": 0.0}
    rates = []
    for hook in run.hooks("on_train_start"):
        hook(run, state)
    with StopRequest() as stop:
        for epoch in range(epochs):
            outcome = train_epoch(run, epoch, state, stop)
            rates.append(outcome["images_per_s"])
    return max(rates[1:])  # the first epoch pays one-time costs (allocator, oneDNN/cuDNN plans)


def bare_throughput(overrides: list[str], epochs: int) -> float:
    """The same model, optimizer and batch size on tensors augmented and normalised beforehand."""
    config = compose_config(DEFAULTS + overrides)
    run = build(config, tempfile.mkdtemp())
    images, labels = run.splits.train_images, run.splits.train_labels
    augmented, _ = run.augment(images, labels, run.generator)
    preprocess, network = run.model[0], run.model[1]
    with torch.no_grad():
        inputs = preprocess(augmented)
    if config.trainer.channels_last:
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    batch_size = config.data.batch_size
    steps = len(labels) // batch_size
    if steps < 1:
        sys.exit(f"data.batch_size={batch_size} is larger than the {len(labels)} training images: no full step.")
    optimizer = run.optimizer
    rates = []
    for _ in range(epochs):
        network.train()
        synchronize(run.device)
        started = time.perf_counter()
        for step in range(steps):
            batch = slice(step * batch_size, (step + 1) * batch_size)
            with torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=run.autocast_dtype is not None):
                logits = network(inputs[batch])
            loss = F.cross_entropy(logits.float(), labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        synchronize(run.device)
        rates.append(steps * batch_size / (time.perf_counter() - started))
    return max(rates[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="runner overrides for both loops")
    parser.add_argument(
        "--output", default="loop_overhead", help="a name in benchmarks/results/, or a path ending .json"
    )
    options = parser.parse_args()
    overrides = options.overrides
    epochs = 3
    bare = bare_throughput(overrides, epochs)
    runner = runner_throughput(overrides, epochs)
    ratio = runner / bare
    rows = [
        {"loop": "bare PyTorch, pre-augmented tensors", "images/s": f"{bare:.0f}"},
        {"loop": "runner epoch (augment, metrics, bar)", "images/s": f"{runner:.0f}"},
    ]
    print(f"device: {device_name()}")
    print(table(rows, ["loop", "images/s"]))
    path = save(
        options.output,
        {
            "device": device_name(),
            "overrides": DEFAULTS + overrides,
            "bare_images_per_s": bare,
            "runner_images_per_s": runner,
            "ratio": ratio,
        },
    )
    print(f"written: {path}")
    print(f"ratio: {ratio:.2f}")


if __name__ == "__main__":
    main()
