"""Throughput of the default augmentation: the runner's batched flip + pad-crop + normalisation on CPU, beside
torchvision's per-image transforms (RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor, Normalize) in a
DataLoader with 2 workers, over the same uint8 images.

    python benchmarks/augment.py [--images 20000] [--batch-size 512] [--threads 1]

Prints a table, writes benchmarks/results/augment.json and ends with ``ratio: N.N`` (runner over torchvision).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from runner.augment import Compose, RandomCrop, RandomFlip
from runner.preprocess import Standardize

RESULTS = Path(__file__).resolve().parent / "results" / "augment.json"


def make_images(count: int) -> np.ndarray:
    """Smooth random uint8 images (N, 3, 32, 32), a stand-in for CIFAR-10 with the same size and type."""
    generator = np.random.default_rng(0)
    coarse = generator.integers(0, 256, size=(count, 3, 8, 8), dtype=np.uint8)
    return np.ascontiguousarray(coarse.repeat(4, axis=2).repeat(4, axis=3))


def runner_epoch(images: torch.Tensor, batch_size: int, augment: Compose, preprocess: Standardize, generator) -> int:
    """One epoch as the training loop sees it: a permutation, index slices, augmentation, preprocessing."""
    order = torch.randperm(len(images), generator=generator)
    labels = torch.zeros(len(images), dtype=torch.long)
    seen = 0
    for start in range(0, len(images) - batch_size + 1, batch_size):
        indices = order[start : start + batch_size]
        batch, _ = augment(images[indices], labels[indices], generator)
        seen += len(preprocess(batch))
    return seen


class PerImage(Dataset):
    """What torchvision's CIFAR10 does per item: a PIL image from the uint8 array, then the transforms."""

    def __init__(self, images: np.ndarray, transform):
        self.images = images.transpose(0, 2, 3, 1)  # HWC, as PIL wants
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return self.transform(Image.fromarray(self.images[index])), 0


def timed_epochs(run_epoch, epochs: int) -> tuple[float, int]:
    run_epoch()  # warm-up: worker start, allocator, first-call overheads
    started = time.perf_counter()
    seen = sum(run_epoch() for _ in range(epochs))
    return time.perf_counter() - started, seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the runner's batched version")
    parser.add_argument("--workers", type=int, default=2)
    arguments = parser.parse_args()

    torch.set_num_threads(arguments.threads)
    array = make_images(arguments.images)
    tensor = torch.from_numpy(array)
    preprocess = Standardize().fit(tensor)
    mean, std = preprocess.mean.flatten().tolist(), preprocess.std.flatten().tolist()

    augment = Compose([RandomFlip(0.5), RandomCrop(4, "constant")])
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        runner_time, runner_seen = timed_epochs(
            lambda: runner_epoch(tensor, arguments.batch_size, augment, preprocess, generator), arguments.epochs
        )

    pipeline = transforms.Compose(
        [
            transforms.RandomCrop(32, padding=4),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(mean, std),
        ]
    )
    loader = DataLoader(
        PerImage(array, pipeline),
        batch_size=arguments.batch_size,
        shuffle=True,
        num_workers=arguments.workers,
        persistent_workers=arguments.workers > 0,
        drop_last=True,
    )
    torchvision_time, torchvision_seen = timed_epochs(lambda: sum(len(batch) for batch, _ in loader), arguments.epochs)

    rows = [
        ("runner (batched, CPU)", runner_seen / runner_time, f"{arguments.threads} torch thread(s)"),
        ("torchvision (per image)", torchvision_seen / torchvision_time, f"DataLoader, {arguments.workers} workers"),
    ]
    ratio = rows[0][1] / rows[1][1]
    print(f"{'pipeline':<26}{'images/s':>12}  setting")
    for name, speed, setting in rows:
        print(f"{name:<26}{speed:>12,.0f}  {setting}")
    result = {
        "runner_images_per_s": rows[0][1],
        "torchvision_images_per_s": rows[1][1],
        "ratio": ratio,
        "images": arguments.images,
        "batch_size": arguments.batch_size,
        "epochs_timed": arguments.epochs,
        "runner_threads": arguments.threads,
        "torchvision_workers": arguments.workers,
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    temporary = RESULTS.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(temporary, RESULTS)
    print(f"ratio: {ratio:.1f}")


if __name__ == "__main__":
    main()
