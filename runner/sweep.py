"""Sweep-level behaviour: device slots for jobs that run side by side, and what a multirun reports at its end.

Device slots. ``hydra/launcher=gpus`` (conf/hydra/launcher/gpus.yaml, Hydra's joblib launcher underneath) runs
``sweep.jobs_per_gpu x visible GPUs`` jobs at once, or ``sweep.cpu_jobs`` on a machine without GPUs. Each job
takes the first free slot, a lock file held for as long as it trains, so a job that ends early hands its slot
to the next one; slot ``k`` trains on visible GPU ``k % GPUs`` (round robin: a sweep smaller than the machine
still gets one GPU per job before any GPU gets a second), with its memory capped to its share of that GPU and
the CPU cores split between the jobs. Every joblib-launched job takes a slot, whatever its launcher config.

Failure report. Hydra runs every job of a sweep even when some fail, then re-raises the first failure and
exits 1. Its message names one job; ``SweepReport`` makes the last lines printed name them all, with their
error files, by reading the jobs' own ``summary.json`` files, so it works for every launcher.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import hashlib
import logging
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from runner.device import available_cores
from runner.errors import USER_ERROR_EXIT
from runner.files import run_status
from runner.validate import sweep_problems

log = logging.getLogger("runner")


def visible_gpus() -> list[str]:
    """The GPUs this process may use, in CUDA ordinal order (entry ``i`` is ``cuda:i``), named as in
    ``CUDA_VISIBLE_DEVICES`` (an index or a UUID) when it is set, else by their index."""
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    listed = [name.strip() for name in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if name.strip()]
    return listed[:count] if len(listed) >= count else [str(index) for index in range(count)]


def parallel_jobs(jobs_per_gpu: int, cpu_jobs: int, gpus: list[str] | None = None) -> int:
    """Jobs to run at once: ``jobs_per_gpu`` on each visible GPU, or ``cpu_jobs`` when there is none."""
    if int(jobs_per_gpu) < 1 or int(cpu_jobs) < 1:
        raise ValueError(f"sweep.jobs_per_gpu={jobs_per_gpu} and sweep.cpu_jobs={cpu_jobs} must both be >= 1.")
    gpus = visible_gpus() if gpus is None else gpus
    return int(jobs_per_gpu) * len(gpus) if gpus else int(cpu_jobs)


# The launcher config's n_jobs: ${parallel_jobs:${sweep.jobs_per_gpu},${sweep.cpu_jobs}}
OmegaConf.register_new_resolver("parallel_jobs", parallel_jobs, replace=True)


@dataclass(frozen=True)
class Slot:
    """Where one job of a packed sweep trains, as recorded in its ``summary.json``."""

    index: int
    slots: int
    device: str  # the torch device of the job: cuda:<ordinal> or cpu
    gpu: str | None  # that GPU's name in CUDA_VISIBLE_DEVICES (the physical index or UUID)
    threads: int  # torch CPU threads: the cores split between the jobs
    memory_fraction: float | None  # the cap on the GPU's memory: 1 / the most jobs sharing that GPU


def slot_device(index: int, slots: int, gpus: list[str], cores: int, requested: str = "auto") -> Slot:
    """Slot ``index`` of ``slots``: ``cores // slots`` torch threads, and, for a run on ``auto`` or ``cuda``,
    visible GPU ``index % len(gpus)`` with its memory capped to one share of a GPU used by the most jobs.

    ``cpu``, or ``auto`` without a GPU, trains on the CPU; a run that names its device (``cuda:1``) keeps it.
    """
    threads = max(1, cores // slots)
    if requested not in ("auto", "cuda") or not gpus:
        return Slot(index, slots, "cpu" if requested == "auto" else requested, None, threads, None)
    ordinal = index % len(gpus)
    sharing = math.ceil(slots / len(gpus))
    return Slot(index, slots, f"cuda:{ordinal}", gpus[ordinal], threads, 1.0 / sharing if sharing > 1 else None)


# The slot each process last held, per slot folder: a worker process reused for the next job goes back to
# its GPU instead of opening a CUDA context (and a memory cache) on a second one.
_last_slot: dict[Path, int] = {}


def acquire_slot(folder: Path, slots: int, poll_s: float = 0.2) -> tuple[int, IO]:
    """Lock the first free slot of ``folder`` (this process's previous one first); waits while all are taken.

    Returns the slot and its open lock file; closing the file frees the slot, and so does the process dying,
    so a crashed job never keeps its slot.
    """
    import fcntl  # POSIX only; imported here so that the rest of this module loads everywhere

    folder.mkdir(parents=True, exist_ok=True)
    previous = _last_slot.get(folder)
    order = sorted(range(slots), key=lambda index: index != previous)
    waited = False
    while True:
        for index in order:
            handle = open(folder / f"slot-{index}.lock", "a")  # held open until the job ends
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            _last_slot[folder] = index
            return index, handle
        if not waited:
            log.info("All %d device slots in %s are taken; waiting for one.", slots, folder)
            waited = True
        time.sleep(poll_s)


@contextlib.contextmanager
def device_slot(
    folder: Path, slots: int, gpus: list[str], cores: int, requested: str = "auto", apply: bool = True
) -> Iterator[Slot]:
    """Hold a slot of ``folder`` for the duration of the block; with ``apply``, set this process's torch
    threads and the GPU's memory cap for it."""
    index, handle = acquire_slot(folder, slots)
    try:
        slot = slot_device(index, slots, gpus, cores, requested)
        if apply:
            release_cached_memory()
            torch.set_num_threads(slot.threads)
            if slot.memory_fraction is not None:
                torch.cuda.set_per_process_memory_fraction(slot.memory_fraction, torch.device(slot.device))
        yield slot
    finally:
        handle.close()
        if apply:
            release_cached_memory()


def release_cached_memory() -> None:
    """Return the CUDA memory a finished job's tensors left in PyTorch's cache, for the jobs sharing the GPU."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        gc.collect()
        torch.cuda.empty_cache()


def slot_folder(sweep_dir: str | Path) -> Path:
    """The lock files of one sweep on this machine: a local temporary folder named after the sweep folder, so
    slots stay per machine even when the sweep folder is on a shared file system."""
    key = hashlib.sha1(str(Path(sweep_dir).resolve()).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"runner-slots-{key}"


def joblib_slots(n_jobs: int, cores: int) -> int:
    """The jobs joblib runs at once for ``n_jobs`` (-1 is one per core, -2 all cores but one, ...)."""
    return n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)


@contextlib.contextmanager
def job_slot(config: DictConfig) -> Iterator[dict | None]:
    """In a multirun whose launcher runs jobs side by side (joblib's ``n_jobs``), take a device slot for this
    job and set ``trainer.device`` to it; yields the slot as a dict for the summary, else None.

    A run that names its device (``cuda:1``) keeps it and only takes its share of the CPU threads.
    """
    hydra_config = HydraConfig.get() if HydraConfig.initialized() else None
    if hydra_config is None or hydra_config.mode != RunMode.MULTIRUN or "n_jobs" not in hydra_config.launcher:
        yield None
        return
    cores = available_cores()
    slots = joblib_slots(int(hydra_config.launcher.n_jobs), cores)
    requested = str(config.trainer.device)
    with device_slot(slot_folder(hydra_config.sweep.dir), slots, visible_gpus(), cores, requested) as slot:
        config.trainer.device = slot.device
        log.info("Device slot %d of %d: %s, %d threads.", slot.index, slot.slots, slot.device, slot.threads)
        yield asdict(slot)


def out_of_memory_reason(error: BaseException, slot: dict | None) -> str:
    """One line for a summary: the job ran out of GPU memory, under which cap, and what to lower."""
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if slot and slot.get("memory_fraction"):
        share = f"capped at {slot['memory_fraction']:.2f} of {slot['device']}'s memory, one of the jobs sharing it"
        advice = "lower sweep.jobs_per_gpu or data.batch_size"
    else:
        share, advice = "the whole GPU", "lower data.batch_size or use a smaller model"
    return f"CUDA out of memory ({share}): {advice}. {first_line}"


def sweep_statuses(sweep_dir: Path) -> dict[str, list[Path]]:
    """Run folders of a sweep grouped by the status in their summary (``unreadable`` when there is none)."""
    statuses: dict[str, list[Path]] = {}
    for config in sorted(sweep_dir.glob("**/.hydra/config.yaml")):
        folder = config.parent.parent
        status = run_status(folder) or "unreadable"
        statuses.setdefault(status, []).append(folder)
    return statuses


def last_line(path: Path, otherwise: str) -> str:
    lines = path.read_text().strip().splitlines() if path.exists() else []
    return lines[-1] if lines else otherwise


def refusals(sweep_dir: Path, since: float) -> list[tuple[Path, Path]]:
    """(job folder, refused.txt) for the jobs whose start in this sweep was refused in a folder that already
    held a run (their own records untouched: runner.train's Attempt)."""
    found = []
    for path in sorted(sweep_dir.glob("**/.hydra-attempts/*/refused.txt")):
        if path.stat().st_mtime >= since:
            found.append((path.parent.parent.parent, path))
    return found


def report(sweep_dir: Path, stream=None, since: float = 0.0) -> bool:
    """Print the sweep's outcome; returns whether any job failed, was refused or was left interrupted."""
    stream = stream or sys.stderr
    statuses = sweep_statuses(sweep_dir)
    refused = refusals(sweep_dir, since)
    if not statuses and not refused:
        return False
    counts = ", ".join(f"{len(folders)} {status}" for status, folders in sorted(statuses.items()))
    if refused:
        counts += f"; {len(refused)} refused to start again in a folder that holds a run"
    print(f"\nSweep {sweep_dir}: {counts}.", file=stream)
    failed = statuses.get("failed", []) + statuses.get("unreadable", [])
    jobs = sum(len(folders) for folders in statuses.values())
    if failed and len(failed) == jobs:
        first = failed[0]
        print(
            f"Every one of the {jobs} jobs failed, so there is no result. The first, {first}: "
            f"{last_line(first / 'error.txt', 'no error.txt')}",
            file=stream,
        )
    for folder in failed:
        print(f"  failed: {folder}  ({last_line(folder / 'error.txt', 'no error.txt')})", file=stream)
    for folder, path in refused:
        print(f"  refused: {folder}  ({last_line(path, 'no reason recorded')}; its records are unchanged)", file=stream)
    interrupted = statuses.get("interrupted", [])
    for folder in interrupted:
        print(f"  interrupted: {folder}  (the same sweep command again resumes it from its checkpoint)", file=stream)
    print(f"Compare: python -m runner.compare {sweep_dir}", file=stream)
    return bool(failed or refused or interrupted)


class SweepReport(Callback):
    """Before the first job, refuse a sweep whose every job would be refused; at the very end, list the jobs
    that failed or were left interrupted (exit code 1 when any were) and remove the sweep's slot lock files."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.sweep_dir = Path(config.hydra.sweep.dir)
        self.started = time.time()
        self.reported = False
        problems = sweep_problems(config)
        if problems:
            print("\n" + "\n".join(problems) + "\n\nNo job of the sweep was started.\n", file=sys.stderr)
            sys.exit(USER_ERROR_EXIT)
        # A sweep stopped by a signal or a crash never reaches on_multirun_end: report at exit then.
        atexit.register(self.report_once)
        # Every job has ended when the launching process exits, so the sweep's slot lock files can go.
        atexit.register(shutil.rmtree, slot_folder(self.sweep_dir), ignore_errors=True)

    def report_once(self) -> bool:
        if self.reported:
            return False
        self.reported = True
        return report(self.sweep_dir, since=self.started)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.report_once():
            sys.exit(1)
