"""Sweeps on a real SLURM cluster through hydra/launcher=slurm (Hydra's submitit launcher): an array sweep, a job
requeued mid-run, a job that reaches its time limit, a sweep with a bad value.

Every test needs a running cluster and is skipped where there is none. CI starts a one-node cluster on the
machine first (``sudo scripts/slurm-local.sh start``), then runs ``pytest -m slurm``; with
``RUNNER_SLURM_START=1`` this module starts it itself and stops it at the end if it was not running before.
The jobs train on one core each (``hydra.launcher.cpus_per_task=1``, ``trainer.threads=1``), so that a job and
a reference run of the same config started beside it on the same machine compute the same numbers.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from runner.files import read_jsonl
from tests.conftest import PROJECT, SMALL_MODEL, SMOKE, run_entrypoint, train_in_process, without_times

pytestmark = pytest.mark.slurm
OPTIONS_TESTED = {"hydra/launcher": {"slurm"}}

SCRIPT = PROJECT / "scripts" / "slurm-local.sh"
# One core and 1 GB per job, a generous time limit: the tests that are not about time limits never reach it.
LAUNCHER = [
    "-m",
    "hydra/launcher=slurm",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=1",
    "hydra.launcher.timeout_min=10",
]
QUICK = SMOKE + SMALL_MODEL + ["trainer.threads=1"]


def slurm_missing() -> str | None:
    """Why there is no cluster to test on, or None when ``sinfo`` answers with a node."""
    if shutil.which("sbatch") is None:
        return "no SLURM here (sbatch not found): apt-get install slurm-wlm munge; sudo scripts/slurm-local.sh start"
    try:
        answer = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20)
    except OSError as error:
        return f"sinfo cannot run ({error}): apt-get install slurm-wlm munge"
    except subprocess.TimeoutExpired:
        return "sinfo did not answer within 20 s: start a cluster with sudo scripts/slurm-local.sh start"
    states = answer.stdout.split()
    if answer.returncode != 0 or not states:
        said = (answer.stderr.strip().splitlines() or ["no node"])[-1]
        return f"sinfo does not answer ({said}): start a cluster with sudo scripts/slurm-local.sh start"
    if not any(state.startswith(("idle", "mix", "alloc")) for state in states):
        return f"no SLURM node takes jobs (sinfo: {' '.join(states)})"
    return None


def local_cluster(command: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), command], capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module", autouse=True)
def cluster():
    """Skip where SLURM is absent; with RUNNER_SLURM_START=1, start the local cluster first (and stop it after
    the module, when this fixture is the one that started it)."""
    started_here = False
    if os.environ.get("RUNNER_SLURM_START") == "1":
        state = os.environ.get("RUNNER_SLURM_STATE", "/tmp/runner-slurm")
        os.environ.setdefault("SLURM_CONF", f"{state}/slurm.conf")
        started_here = local_cluster("status").returncode != 0  # nothing of it running yet
        start = local_cluster("start")
        if start.returncode != 0:
            pytest.skip(f"scripts/slurm-local.sh start failed: {(start.stderr or start.stdout).strip()}")
    reason = slurm_missing()
    if reason:
        pytest.skip(reason)
    yield
    if started_here:
        local_cluster("stop")


@pytest.fixture
def jobs():
    """Sweep folders a test submitted from; whatever of their jobs is still queued or running at the end of the
    test (one that failed or timed out) is cancelled, so that no job outlives its test."""
    folders: list[Path] = []
    yield folders
    ids = {
        path.parent.name.split("_")[0] for folder in folders for path in folder.glob("**/.submitit/*/*_submitted.pkl")
    }
    if ids:
        subprocess.run(["scancel", *sorted(ids)], capture_output=True, timeout=30)


def queue() -> str:
    """squeue's lines, for the test's output."""
    return subprocess.run(
        ["squeue", "-o", "%.10i %.9P %.8j %.2t %.8M %.10l %R"], capture_output=True, text=True, timeout=20
    ).stdout


def submitted_jobs(sweep: Path) -> list[str]:
    """The SLURM job ids of a sweep's jobs (``<array>_<task>``, or one id for a sweep of one job)."""
    return sorted(path.parent.name for path in sweep.glob(".submitit/*/*_submitted.pkl"))


def summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


def last_lines(result: subprocess.CompletedProcess, count: int = 8) -> list[str]:
    return result.stderr.strip().splitlines()[-count:]


def launch(arguments: list[str], outputs: Path) -> subprocess.Popen:
    """``python -m runner.train ARGS`` in the background, as a user starts a sweep, its output in a file."""
    environment = {**os.environ, "RUNNER_OUTPUTS": str(outputs), "PYTHONUNBUFFERED": "1"}
    log = open(outputs / f"launch-{time.time_ns()}.log", "w+")
    process = subprocess.Popen(
        [sys.executable, "-m", "runner.train", *arguments],
        cwd=PROJECT,
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    process.log = log
    return process


def finish(process: subprocess.Popen, timeout: float) -> str:
    """Wait for a launched command; its output. A command still running at the timeout is killed."""
    try:
        process.wait(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    process.log.seek(0)
    output = process.log.read()
    process.log.close()
    return output


def reference_run(arguments: list[str], outputs: Path) -> tuple[subprocess.Popen, Path]:
    """The same config trained uninterrupted, as a single run on this machine beside the cluster's job."""
    folder = outputs / "reference"
    return launch([*arguments, f"hydra.run.dir={folder}"], outputs), folder


def assert_same_training(folder: Path, reference: Path) -> None:
    """Metrics without their times, and the test logits, equal to the reference run's."""
    assert without_times(read_jsonl(folder / "metrics.jsonl")) == without_times(read_jsonl(reference / "metrics.jsonl"))
    assert np.array_equal(np.load(folder / "test_logits.npy"), np.load(reference / "test_logits.npy"))
    assert summary(folder)["test_acc"] == summary(reference)["test_acc"]


def wait_for(condition, timeout: float, what: str, poll: float = 0.1):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"{what} did not happen within {timeout:.0f} s; squeue:\n{queue()}")


def test_an_array_sweep_runs_every_job_in_its_own_folder(tmp_path, jobs):
    sweep = tmp_path / "sweep"
    jobs.append(sweep)
    result = run_entrypoint([*LAUNCHER, *QUICK, "seed=0,1,2,3", f"hydra.sweep.dir={sweep}"], tmp_path, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    submitted = submitted_jobs(sweep)
    assert len(submitted) == 4 and len({job.split("_")[0] for job in submitted}) == 1, submitted  # one array job
    for job in range(4):
        record = summary(sweep / str(job))
        assert record["status"] == "completed" and record["seed"] == job, record
        assert record["output_dir"] == str(sweep / str(job))
    assert f"Sweep {sweep}: 4 completed." in last_lines(result)
    assert f"Compare: python -m runner.compare {sweep}" in last_lines(result)


def test_a_requeued_job_continues_in_its_folder_with_the_same_numbers(tmp_path, jobs):
    # No hydra.sweep.dir: the default <outputs>/multirun/<date>/<time> folder. The requeued job runs the same
    # pickled job again, whose config was composed with the launching process's date and time: same folder.
    arguments = QUICK + ["data.train_size=4000", "trainer.epochs=8", "trainer.log_every=1"]
    launched = launch([*LAUNCHER, *arguments], tmp_path)
    reference, reference_folder = reference_run(arguments, tmp_path)
    jobs.append(tmp_path / "multirun")
    try:
        folder = wait_for(lambda: next(tmp_path.glob("multirun/*/*/0"), None), 120, "the job's folder")
        sweep = folder.parent
        wait_for(lambda: (folder / "checkpoint.pt").exists() and read_jsonl(folder / "metrics.jsonl"), 180, "epoch 1")
        (job,) = submitted_jobs(sweep)
        subprocess.run(["scontrol", "requeue", job], check=True, timeout=30)
        print(f"requeued {job} after epoch {len(read_jsonl(folder / 'metrics.jsonl'))}:\n{queue()}")
        stopped = wait_for(lambda: summary(folder)["status"] == "interrupted" and summary(folder), 60, "the stop")
        assert stopped["signal"] == "SIGTERM" and stopped["epochs_completed"] >= 1, stopped
        print(f"pending again:\n{wait_for(lambda: ' PD ' in queue() and queue(), 60, 'the requeue')}")
    finally:
        output = finish(launched, timeout=300)
        finish(reference, timeout=300)
    print(output[-2000:])
    assert launched.returncode == 0, output[-4000:]
    record = summary(folder)
    assert record["status"] == "completed" and record["resumes"] == 1, record
    assert sorted(path.name for path in sweep.iterdir() if not path.name.startswith(".")) == ["0", "multirun.yaml"]
    assert "Resuming" in (folder / "train.log").read_text()
    assert_same_training(folder, reference_folder)
    assert f"Sweep {sweep}: 1 completed." in output


class Transitions(threading.Thread):
    """Every distinct (status, signal, epochs) a run's summary.json goes through, read as it happens; an
    interrupted run's checkpoint is read at that moment too."""

    def __init__(self, folder: Path):
        super().__init__(daemon=True)
        self.folder, self.seen, self.checkpoints, self.done = folder, [], [], threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                record = summary(self.folder)
            except (OSError, ValueError):
                record = None
            if record is not None:
                state = (record["status"], record.get("signal"), record.get("epochs_completed"))
                if not self.seen or self.seen[-1] != state:
                    self.seen.append(state)
                    if state[0] == "interrupted" and state[2]:
                        try:
                            saved = torch.load(self.folder / "checkpoint.pt", map_location="cpu", weights_only=True)
                            self.checkpoints.append((state[2], saved["epoch"]))
                        except Exception as error:  # noqa: BLE001 - a torn checkpoint, whatever the exception
                            self.checkpoints.append((state[2], repr(error)))
            self.done.wait(0.2)


def epochs_lasting(seconds: float, arguments: list[str], folder: Path) -> int:
    """Epochs of ``arguments``' training that take about ``seconds`` on this machine, timed here on one thread."""
    threads = torch.get_num_threads()
    try:
        timed = train_in_process([*arguments, "trainer.epochs=3"], folder)
    finally:
        torch.set_num_threads(threads)
    return max(20, math.ceil(seconds / (timed["wall_time_s"] / 3)))  # an epoch with its evaluation and records


def test_a_job_at_its_time_limit_stops_cleanly_is_requeued_and_finishes_with_the_same_numbers(tmp_path, jobs):
    # A one-minute limit and about 70 s of training: SLURM sends submitit's SIGUSR2 between 25 and 55 s into each
    # attempt (signal_delay_s=5 before the limit; SLURM looks at time limits every 30 s). The run ends its step
    # and writes its records; submitit requeues the job (max_num_timeout), which continues from the checkpoint:
    # two or three attempts. A busy machine takes an attempt or two more: max_num_timeout=6 leaves room for them.
    sweep = tmp_path / "sweep"
    jobs.append(sweep)
    arguments = QUICK + ["data.train_size=4000"]
    arguments.append(f"trainer.epochs={epochs_lasting(70, arguments, tmp_path / 'timing')}")
    limits = ["hydra.launcher.timeout_min=1", "hydra.launcher.signal_delay_s=5", "hydra.launcher.max_num_timeout=6"]
    launched = launch([*LAUNCHER, *limits, *arguments, f"hydra.sweep.dir={sweep}"], tmp_path)
    reference, reference_folder = reference_run(arguments, tmp_path)
    watcher = Transitions(sweep / "0")
    watcher.start()
    try:
        output = finish(launched, timeout=420)
        finish(reference, timeout=300)
    finally:
        watcher.done.set()
        watcher.join()
    print(output[-2000:])
    print("summary.json went through:", watcher.seen)
    assert launched.returncode == 0, output[-4000:]
    record = summary(sweep / "0")
    assert record["status"] == "completed" and record["resumes"] >= 1, (record, watcher.seen)
    interrupted = [state for state in watcher.seen if state[0] == "interrupted"]
    assert interrupted and all(signal == "SIGUSR2" for _, signal, _ in interrupted), watcher.seen
    # Each stop after a checkpoint is one resume (one before the first checkpoint starts the run over).
    assert record["resumes"] == len([state for state in interrupted if state[2]]) >= 1, watcher.seen
    # Stopped after whole epochs with the checkpoint of the last one: nothing torn, nothing half-written.
    assert watcher.checkpoints and all(epochs == saved for epochs, saved in watcher.checkpoints), watcher.checkpoints
    log = (sweep / "0" / "train.log").read_text()
    assert log.count("Received SIGUSR2: finishing the current step and saving.") >= len(interrupted)
    (job,) = submitted_jobs(sweep)
    submitit_log = (sweep / ".submitit" / job / f"{job}_0_log.out").read_text()
    assert "this job is timed-out" in submitit_log and f"Requeued job {job}" in submitit_log
    print(
        "\n".join(line for line in submitit_log.splitlines() if re.match("submitit .*(SIGUSR2|Requeued|Exiting)", line))
    )
    restarts = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True, timeout=20).stdout
    print(" ".join(re.findall(r"(?:JobState|Restarts|TimeLimit)=\S+", restarts)))
    assert_same_training(sweep / "0", reference_folder)


def test_a_bad_value_fails_its_job_and_the_sweep_names_it(tmp_path, jobs):
    sweep = tmp_path / "sweep"
    jobs.append(sweep)
    result = run_entrypoint(
        [*LAUNCHER, *QUICK, "optimizer.lr=0.1,-1,0.05", f"hydra.sweep.dir={sweep}"], tmp_path, timeout=300
    )
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    assert [summary(sweep / str(job))["status"] for job in range(3)] == ["completed", "failed", "completed"]
    assert summary(sweep / "1").get("refused") is True
    assert "optimizer.lr" in (sweep / "1" / "error.txt").read_text()
    lines = last_lines(result)
    assert f"Sweep {sweep}: 2 completed, 1 failed." in lines, lines
    assert any(line.startswith(f"  failed: {sweep / '1'}  (optimizer.lr") for line in lines), lines
