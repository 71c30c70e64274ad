"""Soak test of interruption and resume: many short runs killed at random moments, then resumed until done.

    python benchmarks/soak.py [--jobs 20] [--seed 0] [--kill-probability 0.6]

Each job is a real ``python -m runner.train`` on synthetic data. With probability ``--kill-probability`` it
is sent SIGTERM, SIGINT or SIGKILL (the last gives no chance to clean up) after a random delay; then
``resume=FOLDER`` is run until the job completes (at most ``--max-resumes`` times). A job is lost when it
never completes. Every ``metrics.jsonl`` must parse line by line with consecutive epochs, and every
``summary.json`` must parse. Prints the counts and writes benchmarks/results/soak.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import save, table

from runner import project_path

TRAINING = [
    "data=synthetic",
    "data.train_size=1500",
    "data.test_size=200",
    "data.batch_size=50",
    "model=convnet",
    "model.widths=[8,16]",
    "trainer.epochs=8",
    "trainer.progress=false",
    "trainer.device=cpu",
]
SIGNALS = [signal.SIGTERM, signal.SIGINT, signal.SIGKILL]


def launch(arguments: list[str]) -> subprocess.Popen:
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "runner.train", *arguments],
        cwd=project_path(),
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def status(folder: Path) -> str | None:
    try:
        return json.loads((folder / "summary.json").read_text()).get("status")
    except (OSError, json.JSONDecodeError):
        return None


def records_are_whole(folder: Path) -> bool:
    """Every line of metrics.jsonl is JSON, the epochs run 1, 2, ... and summary.json parses."""
    try:
        rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
        json.loads((folder / "summary.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return [row["epoch"] for row in rows] == list(range(1, len(rows) + 1))


def soak_one(index: int, root: Path, chooser: random.Random, kill_probability: float, max_resumes: int) -> dict:
    folder = root / f"job-{index}"
    process = launch([*TRAINING, f"seed={index}", f"hydra.run.dir={folder}"])
    kills = []
    if chooser.random() < kill_probability:
        time.sleep(chooser.uniform(2.0, 12.0))  # from start-up (about 5 s) to the last epochs
        if process.poll() is None:
            number = chooser.choice(SIGNALS)
            process.send_signal(number)
            kills.append(signal.Signals(number).name)
    process.wait()
    resumes = 0
    while status(folder) != "completed" and resumes < max_resumes:
        resumes += 1
        if (folder / "config.json").exists():
            launch([f"resume={folder}"]).wait()
        else:  # killed before it wrote anything: start it again in its folder
            launch([*TRAINING, f"seed={index}", f"hydra.run.dir={folder}"]).wait()
    final = status(folder)
    return {
        "job": index,
        "kills": kills,
        "resumes": resumes,
        "status": final,
        "records_whole": records_are_whole(folder),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kill-probability", type=float, default=0.6)
    parser.add_argument("--max-resumes", type=int, default=3)
    arguments = parser.parse_args()
    chooser = random.Random(arguments.seed)
    root = Path(tempfile.mkdtemp(prefix="soak-"))
    started = time.perf_counter()
    jobs = []
    for index in range(arguments.jobs):
        job = soak_one(index, root, chooser, arguments.kill_probability, arguments.max_resumes)
        jobs.append(job)
        print(
            f"job {index}: killed by {','.join(job['kills']) or '-'}, resumed {job['resumes']}x, "
            f"{job['status']}, records {'whole' if job['records_whole'] else 'BROKEN'}",
            flush=True,
        )
    counts = {
        "jobs": len(jobs),
        "killed": sum(bool(job["kills"]) for job in jobs),
        "completed": sum(job["status"] == "completed" for job in jobs),
        "resumed": sum(job["resumes"] > 0 for job in jobs),
        "lost": sum(job["status"] != "completed" for job in jobs),
        "broken_records": sum(not job["records_whole"] for job in jobs),
        "wall_time_s": round(time.perf_counter() - started, 1),
    }
    print(table([counts], list(counts)))
    print(f"written: {save('soak', {**counts, 'folder': str(root), 'runs': jobs})}")
    print(f"lost: {counts['lost']}")
    sys.exit(1 if counts["lost"] or counts["broken_records"] else 0)


if __name__ == "__main__":
    main()
