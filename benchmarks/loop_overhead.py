"""How much the runner's loop costs: images per second of a full runner epoch (augmentation on the device,
metrics, progress bar) over a bare PyTorch loop training the same model on pre-augmented tensors.

    python benchmarks/loop_overhead.py                       # fastnet on synthetic images, this device
    python benchmarks/loop_overhead.py data=folder data.root=../shared/data/cifar10-jpeg.tar.gz data.subset=10000

Any runner override is accepted. Ends with ``ratio: N.NN`` (runner over bare; 1.0 means no overhead) and writes
benchmarks/results/loop_overhead.json (or ``--output``).

``--profile`` then trains one more epoch of each loop under PyTorch's profiler and prints where the difference
lies: each loop's wall time beside the host's time inside operators and, on a GPU, the device's busy time (a
wall above it is the host keeping the device waiting), and the operators whose self time differs most.
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


def runner_throughput(overrides: list[str], epochs: int, profiled: bool = False) -> tuple[float, dict | None]:
    """The best images/s of ``epochs`` runner epochs and, when ``profiled``, one more epoch's profile."""
    length = [f"trainer.epochs={epochs + 1}"] if profiled else []  # the run's steps include that epoch
    config = compose_config(DEFAULTS + overrides + length)
    run = build(config, tempfile.mkdtemp())
    state = {"epoch": 0, "step": 0, "first_loss": None, "train_time_s": 0.0}
    rates = []
    for hook in run.hooks("on_train_start"):
        hook(run, state)
    with StopRequest() as stop:
        for epoch in range(epochs):
            outcome = train_epoch(run, epoch, state, stop)
            rates.append(outcome["images_per_s"])
        profiled_epoch = profile(run.device, lambda: train_epoch(run, epochs, state, stop)) if profiled else None
    return max(rates[1:]), profiled_epoch  # the first epoch pays one-time costs (allocator, oneDNN/cuDNN plans)


def bare_throughput(overrides: list[str], epochs: int, profiled: bool = False) -> tuple[float, dict | None]:
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

    def epoch() -> None:
        network.train()
        for step in range(steps):
            batch = slice(step * batch_size, (step + 1) * batch_size)
            with torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=run.autocast_dtype is not None):
                logits = network(inputs[batch])
            loss = F.cross_entropy(logits.float(), labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    rates = [steps * batch_size / timed(run.device, epoch) for _ in range(epochs)]
    return max(rates[1:]), (profile(run.device, epoch) if profiled else None)


def timed(device: torch.device, epoch) -> float:
    """Seconds of ``epoch()``, the device's queued work included."""
    synchronize(device)
    started = time.perf_counter()
    epoch()
    synchronize(device)
    return time.perf_counter() - started


def profile(device: torch.device, epoch) -> dict:
    """One epoch under PyTorch's profiler: its wall seconds; the seconds the host spent inside operators (the rest
    of the wall is Python between them, or waiting); on CUDA the device's busy seconds (its kernels' time); and
    each operator's self time in ms: its kernels' on CUDA, its own on the host on a CPU."""
    on_cuda = device.type == "cuda"
    activities = [torch.profiler.ProfilerActivity.CPU]
    if on_cuda:
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as profiler:
        wall = timed(device, epoch)
    # The host-side operators: every kernel is counted once, under the operator that launched it.
    operators = [event for event in profiler.key_averages() if event.device_type == torch.autograd.DeviceType.CPU]
    result = {"wall_s": wall, "host_in_operators_s": sum(event.self_cpu_time_total for event in operators) / 1e6}
    if on_cuda:
        result["device_busy_s"] = sum(event.self_device_time_total for event in operators) / 1e6
    key = "self_device_time_total" if on_cuda else "self_cpu_time_total"
    result["operators_ms"] = {event.key: getattr(event, key) / 1000 for event in operators}
    return result


def differences(runner: dict, bare: dict, count: int = 15) -> list[dict]:
    """The operators whose self time differs most between the runner's epoch and the bare one."""
    names = set(runner["operators_ms"]) | set(bare["operators_ms"])
    rows = [
        {
            "operator": name,
            "runner ms": runner["operators_ms"].get(name, 0.0),
            "bare ms": bare["operators_ms"].get(name, 0.0),
        }
        for name in names
    ]
    rows.sort(key=lambda row: abs(row["runner ms"] - row["bare ms"]), reverse=True)
    return [
        {
            **row,
            "runner ms": f"{row['runner ms']:.1f}",
            "bare ms": f"{row['bare ms']:.1f}",
            "difference ms": f"{row['runner ms'] - row['bare ms']:+.1f}",
        }
        for row in rows[:count]
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="runner overrides for both loops")
    parser.add_argument(
        "--output", default="loop_overhead", help="a name in benchmarks/results/, or a path ending .json"
    )
    parser.add_argument("--profile", action="store_true", help="then one epoch of each under the profiler")
    options = parser.parse_args()
    overrides = options.overrides
    epochs = 3
    bare, bare_profile = bare_throughput(overrides, epochs, options.profile)
    runner, runner_profile = runner_throughput(overrides, epochs, options.profile)
    ratio = runner / bare
    rows = [
        {"loop": "bare PyTorch, pre-augmented tensors", "images/s": f"{bare:.0f}"},
        {"loop": "runner epoch (augment, metrics, bar)", "images/s": f"{runner:.0f}"},
    ]
    print(f"device: {device_name()}")
    print(table(rows, ["loop", "images/s"]))
    profiles = {}
    if options.profile:
        profiles = {"bare": bare_profile, "runner": runner_profile}
        print("\nOne epoch of each under the profiler (its own cost included):")
        for name, result in profiles.items():
            busy = f", device busy {result['device_busy_s']:.3f} s" if "device_busy_s" in result else ""
            print(
                f"{name}: wall {result['wall_s']:.3f} s, host in operators {result['host_in_operators_s']:.3f} s{busy}"
            )
        profiles["differences"] = differences(profiles["runner"], profiles["bare"])
        print(table(profiles["differences"], ["operator", "runner ms", "bare ms", "difference ms"]))
    path = save(
        options.output,
        {
            "device": device_name(),
            "overrides": DEFAULTS + overrides,
            "bare_images_per_s": bare,
            "runner_images_per_s": runner,
            "ratio": ratio,
            **({"profile": profiles} if profiles else {}),
        },
    )
    print(f"written: {path}")
    print(f"ratio: {ratio:.2f}")


if __name__ == "__main__":
    main()
