"""A hand-written reference beside ``experiment=cpu_fast``: plain PyTorch in one screen, nothing of the runner
but its data loading (``runner.data.load_folder``: the same uint8 images and cache the runner reads).

    python benchmarks/cpu_reference.py --data /work/shared/data/cifar10-jpeg.tar.gz --epochs 4 [--seed 0]

An airbench-style network (Jordan 2024) at widths 16/32/64/64 (stem and three blocks), a flip per image and one
translation per batch, label smoothing 0.2, Nesterov SGD on a one-cycle schedule, flip test-time augmentation.
The last line is JSON: test accuracy and seconds from command start (also in benchmarks/results/cpu_reference.json).
"""

# ruff: noqa: E402 - the clock starts before the imports, which take seconds here (PyTorch's alone 2-4 s)
import time

STARTED = time.time()

import argparse
import json

import torch
import torch.nn.functional as F
from common import device_name, save
from omegaconf import OmegaConf
from torch import nn

from runner.data import load_folder


def block(inputs: int, outputs: int) -> nn.Sequential:
    """airbench's block: conv, max-pool, norm, ReLU, conv, norm, ReLU; fast-moving norm statistics for short runs."""
    return nn.Sequential(
        nn.Conv2d(inputs, outputs, 3, padding=1, bias=False),
        nn.MaxPool2d(2),
        nn.BatchNorm2d(outputs, momentum=0.4),
        nn.ReLU(),
        nn.Conv2d(outputs, outputs, 3, padding=1, bias=False),
        nn.BatchNorm2d(outputs, momentum=0.4),
        nn.ReLU(),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="the image tree or its .tar.gz archive")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args()
    torch.manual_seed(arguments.seed)
    arrays = load_folder(OmegaConf.create({"root": arguments.data}))

    def tensor(array) -> torch.Tensor:  # a copy of its own: the loader's arrays are read-only
        return torch.from_numpy(array.copy())

    train_pixels, test_pixels = tensor(arrays.train_images).float(), tensor(arrays.test_images).float()
    mean, std = train_pixels.mean((0, 2, 3), keepdim=True), train_pixels.std((0, 2, 3), keepdim=True)

    def standardized(pixels) -> torch.Tensor:  # in the layout that oneDNN's convolutions run fastest in
        return ((pixels - mean) / std).contiguous(memory_format=torch.channels_last)

    train_images, test_images = standardized(train_pixels), standardized(test_pixels)
    del train_pixels, test_pixels  # 600 MB of float copies the loop does not read
    train_labels, test_labels = tensor(arrays.train_labels), tensor(arrays.test_labels)

    # A 2x2 stem without padding, three blocks, global max-pooling, a head scaled down by 9 (small first logits).
    body = nn.Sequential(nn.Conv2d(3, 16, 2), nn.ReLU(), block(16, 32), block(32, 64), block(64, 64))
    model = nn.Sequential(body, nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(64, 10, bias=False))
    model = model.to(memory_format=torch.channels_last)
    batch_size, steps = 128, len(train_labels) // 128
    optimizer = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.85, nesterov=True, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, 0.2, total_steps=arguments.epochs * steps, pct_start=0.25)
    for epoch in range(arguments.epochs):
        model.train()
        order = torch.randperm(len(train_labels))
        for step in range(steps):
            indices = order[step * batch_size : (step + 1) * batch_size]
            images, labels = train_images[indices], train_labels[indices]
            flipped = torch.rand(len(images), 1, 1, 1) < 0.5  # each image its own coin, drawn for the batch at once
            images = torch.where(flipped, images.flip(3), images)
            rows, columns = torch.randint(0, 5, (2,)).tolist()  # one shift of up to 2 pixels for the whole batch
            images = F.pad(images, (2, 2, 2, 2), mode="reflect")[:, :, rows : rows + 32, columns : columns + 32]
            loss = F.cross_entropy(model(images) / 9, labels, label_smoothing=0.2)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        print(f"epoch {epoch + 1}/{arguments.epochs}: last loss {loss.item():.3f}, {time.time() - STARTED:.1f} s")
    model.eval()
    with torch.no_grad():  # each test image and its mirror image, their probabilities averaged
        scores = [model(part).softmax(1) + model(part.flip(3)).softmax(1) for part in test_images.split(500)]
    accuracy = (torch.cat(scores).argmax(1) == test_labels).float().mean().item()
    result = {
        "test_acc": accuracy,
        "seconds": time.time() - STARTED,
        "epochs": arguments.epochs,
        "seed": arguments.seed,
    }
    save("cpu_reference", {"device": device_name(), "data": arguments.data, **result})
    print(json.dumps(result))


if __name__ == "__main__":
    main()
