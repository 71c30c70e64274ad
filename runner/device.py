"""Where a run trains and in what precision: the device, its autocast type, loss scaling, kernel choice, and
the batch size its evaluation runs at.

Kept out of ``runner.train`` on purpose: ``python -m runner.train`` makes that module ``__main__``, whose
functions a joblib sweep pickles by value, and ``torch.backends.cudnn`` cannot be pickled.
"""

from __future__ import annotations

import os

import torch


def pick_device(requested: str) -> torch.device:
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(requested)
    if device.type == "cuda":
        # Every batch has the same image size, so cuDNN's one-off search for the fastest kernels pays back.
        torch.backends.cudnn.benchmark = True
    return device


# trainer.precision's values besides auto, and the autocast type each stands for (None: no autocast).
AUTOCAST_TYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def pick_autocast(precision: str, device: torch.device) -> torch.dtype | None:
    """bfloat16 autocast on CUDA by default; fp32 on CPU, where bfloat16 matmuls are slower without AMX."""
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    return AUTOCAST_TYPES[precision]


def autocast(device: torch.device, dtype: torch.dtype | None):
    """The autocast context for ``dtype`` on ``device``; a disabled one (fp32) for None."""
    return torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so that a clock read after it measures that work (CUDA only)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def loss_scaler(device: torch.device, autocast_dtype: torch.dtype | None) -> torch.amp.GradScaler:
    """Dynamic loss scaling under float16 autocast, whose range is far narrower than float32's; bfloat16 spans
    as much as float32 and needs none, so there (and without autocast) the scaler passes everything through."""
    return torch.amp.GradScaler(device.type, enabled=autocast_dtype is torch.float16)


# trainer.eval_batch_size=auto on each kind of device. A GPU does best with few, full launches. A CPU does not:
# at 2,000 images a layer's activations no longer fit its caches, and evaluation ran 1.5-2.3 times slower than
# at 64 on this project's 2-core CPU (benchmarks/eval_batch.py).
EVAL_BATCH_SIZES = {"cuda": 2000, "cpu": 64}


def pick_eval_batch_size(setting: int | str, device: torch.device) -> int:
    if setting == "auto":
        return EVAL_BATCH_SIZES.get(device.type, EVAL_BATCH_SIZES["cuda"])
    return int(setting)


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask: a container's or a scheduler's share)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity mask
        return os.cpu_count() or 1


def set_threads(setting: int | str) -> None:
    """``trainer.threads``: the CPU threads of this run's tensor operations; ``auto`` keeps PyTorch's (one per
    core, or what a sweep's device slot gave the job)."""
    if setting != "auto":
        torch.set_num_threads(int(setting))
