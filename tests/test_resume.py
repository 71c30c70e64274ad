"""A run never loses work: SIGTERM ends it cleanly, `resume=` finishes it with the same metrics as an
uninterrupted run, damaged files get clear messages, and a failing sweep job does not stop the sweep."""

import json
import os
import signal
import subprocess
import sys
import time

import torch

from runner.files import read_jsonl
from tests.conftest import PROJECT, SMALL_MODEL, SMOKE, run_entrypoint

# Long enough to be killed in the middle of an epoch: 40 steps per epoch.
LONGER = SMOKE + SMALL_MODEL + ["data.train_size=2000", "trainer.epochs=3", "trainer.log_every=1"]
TIMES = {"epoch_time_s", "eval_time_s", "images_per_s"}


def without_times(rows):
    return [{key: value for key, value in row.items() if key not in TIMES} for row in rows]


def test_sigterm_mid_epoch_then_resume_matches_an_uninterrupted_run(tmp_path):
    reference = tmp_path / "reference"
    assert run_entrypoint(LONGER + [f"hydra.run.dir={reference}"], tmp_path).returncode == 0

    folder = tmp_path / "interrupted"
    environment = {**os.environ, "RUNNER_OUTPUTS": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "runner.train", *LONGER, f"hydra.run.dir={folder}"],
        cwd=PROJECT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.time() + 120
    while len(read_jsonl(folder / "metrics.jsonl")) < 1 and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # into the second epoch
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, output
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["signal"] == "SIGTERM"
    assert summary["epochs_completed"] in (1, 2)
    assert f"resume={folder}" in output

    resumed = run_entrypoint([f"resume={folder}"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["resumes"] == 1
    assert without_times(read_jsonl(folder / "metrics.jsonl")) == without_times(read_jsonl(reference / "metrics.jsonl"))
    assert (folder / ".hydra-resume" / "overrides.yaml").exists()
    assert "data=synthetic" in summary["overrides"]  # the original command, not the resuming one


def test_a_completed_run_started_again_in_its_folder_does_nothing(tmp_path):
    folder = tmp_path / "run"
    arguments = SMOKE + SMALL_MODEL + [f"hydra.run.dir={folder}"]
    assert run_entrypoint(arguments, tmp_path).returncode == 0
    before = (folder / "metrics.jsonl").read_text()
    again = run_entrypoint(arguments, tmp_path)
    assert again.returncode == 0 and "nothing to do" in again.stdout + again.stderr
    assert (folder / "metrics.jsonl").read_text() == before


def test_a_damaged_checkpoint_is_named_and_not_loaded(tmp_path):
    folder = tmp_path / "run"
    assert (
        run_entrypoint(SMOKE + SMALL_MODEL + ["trainer.epochs=2", f"hydra.run.dir={folder}"], tmp_path).returncode == 0
    )
    checkpoint = folder / "checkpoint.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    result = run_entrypoint([f"resume={folder}"], tmp_path)
    assert result.returncode == 2
    assert str(checkpoint) in result.stderr and "not a readable checkpoint" in result.stderr
    assert "Traceback" not in result.stderr


def test_checkpoints_load_without_pickled_code(tmp_path):
    folder = tmp_path / "run"
    assert run_entrypoint(SMOKE + SMALL_MODEL + [f"hydra.run.dir={folder}"], tmp_path).returncode == 0
    checkpoint = torch.load(folder / "checkpoint.pt", weights_only=True)
    assert checkpoint["epoch"] == 1


def test_a_stored_config_with_interpolations_is_refused(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"data": {"root": "${oc.env:HOME}"}}))
    result = run_entrypoint([f"resume={folder}"], tmp_path)
    assert result.returncode == 2 and "interpolation" in result.stderr


def test_a_failing_job_does_not_stop_the_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    # The middle job asks for more images than the set has: it fails; the third still runs.
    result = run_entrypoint(
        ["-m", *SMOKE, *SMALL_MODEL, "data.subset=100,5000,100", f"hydra.sweep.dir={sweep}"], tmp_path
    )
    assert result.returncode != 0
    statuses = [json.loads((sweep / str(job) / "summary.json").read_text())["status"] for job in range(3)]
    assert statuses == ["completed", "failed", "completed"]
    assert "data.subset=5000" in (sweep / "1" / "error.txt").read_text()
    last_lines = result.stderr.strip().splitlines()[-3:]
    assert any(f"failed: {sweep / '1'}" in line for line in last_lines)
