"""A run never loses work: SIGTERM ends it cleanly, `resume=` finishes it with the same metrics as an
uninterrupted run, damaged files get clear messages, and a failing sweep job does not stop the sweep."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from runner.files import read_jsonl
from tests.conftest import PROJECT, SMALL_MODEL, SMOKE, run_entrypoint, without_times

# Long enough to be killed in the middle of an epoch: 40 steps per epoch.
LONGER = SMOKE + SMALL_MODEL + ["data.train_size=2000", "trainer.epochs=3", "trainer.log_every=1"]


def contents(folder) -> dict:
    """Every file of a run folder and its bytes, but the runner's own bookkeeping: the folder lock and the
    attempt folders beside the records."""
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != ".lock" and ".hydra-attempts" not in path.parts
    }


@pytest.mark.slow
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
    assert list(folder.glob(".hydra-attempts/*/overrides.yaml"))  # the resuming command, beside the run's own
    assert "data=synthetic" in summary["overrides"]  # the original command, not the resuming one


@pytest.mark.slow
def test_a_completed_run_started_again_in_its_folder_does_nothing(tmp_path):
    folder = tmp_path / "run"
    arguments = SMOKE + SMALL_MODEL + [f"hydra.run.dir={folder}"]
    assert run_entrypoint(arguments, tmp_path).returncode == 0
    before = (folder / "metrics.jsonl").read_text()
    again = run_entrypoint(arguments, tmp_path)
    assert again.returncode == 0 and "nothing to do" in again.stdout + again.stderr
    assert (folder / "metrics.jsonl").read_text() == before


@pytest.mark.slow
def test_a_damaged_checkpoint_is_named_and_not_loaded(tmp_path):
    folder = tmp_path / "run"
    assert (
        run_entrypoint(SMOKE + SMALL_MODEL + ["trainer.epochs=2", f"hydra.run.dir={folder}"], tmp_path).returncode == 0
    )
    checkpoint = folder / "checkpoint.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    summary = json.loads((folder / "summary.json").read_text())
    (folder / "summary.json").write_text(json.dumps({**summary, "status": "interrupted"}))
    before = contents(folder)
    result = run_entrypoint([f"resume={folder}"], tmp_path)
    assert result.returncode == 2
    assert str(checkpoint) in result.stderr and "not a readable checkpoint" in result.stderr
    assert "Traceback" not in result.stderr
    assert contents(folder) == before  # the refused resume wrote nothing over the run's records


@pytest.mark.slow
def test_checkpoints_load_without_pickled_code(tmp_path):
    folder = tmp_path / "run"
    assert run_entrypoint(SMOKE + SMALL_MODEL + [f"hydra.run.dir={folder}"], tmp_path).returncode == 0
    checkpoint = torch.load(folder / "checkpoint.pt", weights_only=True)
    assert checkpoint["epoch"] == 1


@pytest.mark.slow
def test_a_stored_config_with_interpolations_is_refused(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"data": {"root": "${oc.env:HOME}"}}))
    result = run_entrypoint([f"resume={folder}"], tmp_path)
    assert result.returncode == 2 and "interpolation" in result.stderr


@pytest.mark.slow
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


def finished_run(tmp_path, *extra, epochs: int = 2):
    folder = tmp_path / "run"
    arguments = SMOKE + SMALL_MODEL + [f"trainer.epochs={epochs}", f"hydra.run.dir={folder}", *extra]
    result = run_entrypoint(arguments, tmp_path)
    assert result.returncode == 0, result.stderr
    return folder


def as_interrupted(folder):
    """The folder of a run stopped after its checkpoint, as SIGTERM leaves it."""
    summary = json.loads((folder / "summary.json").read_text())
    (folder / "summary.json").write_text(json.dumps({**summary, "status": "interrupted", "signal": "SIGTERM"}))


@pytest.mark.slow
def test_a_run_folder_never_runs_the_code_its_config_names(tmp_path):
    # Two attacks through config.json: a pickle loaded by torch.load, and builtins.open truncating a file.
    folder = finished_run(tmp_path)
    as_interrupted(folder)
    marker, victim = tmp_path / "pwned", tmp_path / "victim.txt"
    victim.write_text("precious\n")

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save(Payload(), tmp_path / "evil.pt")
    stored = json.loads((folder / "config.json").read_text())
    attacks = {
        "activation": {"_target_": "torch.load", "f": str(tmp_path / "evil.pt"), "weights_only": False},
        "norm": {"_target_": "builtins.open", "file": str(victim), "mode": "w"},
    }
    for key, node in attacks.items():
        (folder / "config.json").write_text(json.dumps({**stored, key: node}))
        before = contents(folder)
        result = run_entrypoint([f"resume={folder}"], tmp_path)
        assert result.returncode == 2, result.stderr
        assert f"{key}._target_='{node['_target_']}'" in result.stderr and "no option of this project" in result.stderr
        assert "Traceback" not in result.stderr
        assert contents(folder) == before
    assert not marker.exists() and victim.read_text() == "precious\n"


@pytest.mark.slow
def test_a_class_named_again_by_the_resuming_command_may_be_built(tmp_path):
    # A student's own layer is theirs to run: resume refuses it from the file, accepts it from the command line.
    folder = finished_run(tmp_path, "activation._target_=torch.nn.Hardswish", epochs=1)
    as_interrupted(folder)
    refused = run_entrypoint([f"resume={folder}"], tmp_path)
    assert refused.returncode == 2 and "torch.nn.Hardswish" in refused.stderr
    accepted = run_entrypoint([f"resume={folder}", "activation._target_=torch.nn.Hardswish"], tmp_path)
    assert accepted.returncode == 0, accepted.stderr


@pytest.mark.slow
def test_refused_starts_leave_an_earlier_runs_files_byte_for_byte(tmp_path):
    folder = finished_run(tmp_path)
    for state in ("completed", "interrupted"):
        if state == "interrupted":
            as_interrupted(folder)
        before = contents(folder)
        # Another config in its folder; a second start refused by a bad value; a damaged stored config.
        for arguments in (
            SMOKE + SMALL_MODEL + ["trainer.epochs=3", f"hydra.run.dir={folder}"],
            SMOKE + SMALL_MODEL + ["optimizer.lr=-1", f"hydra.run.dir={folder}"],
        ):
            result = run_entrypoint(arguments, tmp_path)
            assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
            assert contents(folder) == before, state
    refusals = list(folder.glob(".hydra-attempts/*/refused.txt"))
    assert len(refusals) == 4 and any("another config" in path.read_text() for path in refusals)


@pytest.mark.slow
def test_a_sweep_started_again_with_another_value_keeps_the_finished_jobs(tmp_path):
    sweep = tmp_path / "sweep"
    first = run_entrypoint(["-m", *SMOKE, *SMALL_MODEL, "seed=0,1", f"hydra.sweep.dir={sweep}"], tmp_path)
    assert first.returncode == 0, first.stderr
    before = {job: contents(sweep / job) for job in ("0", "1")}
    # One more value in front: job 0 is the same run (skipped), job 1 now means another seed (refused), job 2 is new.
    again = run_entrypoint(["-m", *SMOKE, *SMALL_MODEL, "seed=0,2,1", f"hydra.sweep.dir={sweep}"], tmp_path)
    assert again.returncode == 1
    assert {job: contents(sweep / job) for job in ("0", "1")} == before
    assert json.loads((sweep / "2" / "summary.json").read_text())["status"] == "completed"
    assert any(line.strip().startswith(f"refused: {sweep / '1'}") for line in again.stderr.splitlines())


@pytest.mark.slow
def test_one_run_per_folder_and_a_stale_lock_does_not_block(tmp_path):
    from runner.resume import FolderLock

    folder = tmp_path / "run"
    folder.mkdir()
    with FolderLock(folder):  # another process would hold it the same way
        result = run_entrypoint(SMOKE + SMALL_MODEL + [f"hydra.run.dir={folder}"], tmp_path)
        assert result.returncode == 2 and f"in use by another run (PID {os.getpid()})" in result.stderr
    assert not (folder / "metrics.jsonl").exists()
    # The holder is gone (its PID still in the file, as after a kill): the next run goes ahead.
    assert (folder / ".lock").read_text().strip() == str(os.getpid())
    assert run_entrypoint(SMOKE + SMALL_MODEL + [f"hydra.run.dir={folder}"], tmp_path).returncode == 0


@pytest.mark.slow
def test_a_resume_after_sigkill_removes_the_orphan_temporaries_and_keeps_the_command(tmp_path):
    folder = finished_run(tmp_path, "activation=gelu")
    as_interrupted(folder)
    (folder / ".checkpoint.pt.99999.tmp").write_bytes(b"half a checkpoint")
    choices = json.loads((folder / "summary.json").read_text())["choices"]
    (folder / "summary.json").write_text('{"status": "inter')  # torn by the kill
    result = run_entrypoint([f"resume={folder}"], tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads((folder / "summary.json").read_text())
    assert not list(folder.glob(".*.tmp"))
    # The run's own choices, read from Hydra's record of its command, not the resuming command's defaults.
    assert summary["choices"]["activation"] == "gelu" == choices["activation"]
    assert "activation=gelu" in summary["overrides"]


@pytest.mark.slow
def test_a_stored_config_of_the_wrong_shape_or_values_is_refused_naming_the_file(tmp_path):
    folder = finished_run(tmp_path)
    as_interrupted(folder)
    stored = json.loads((folder / "config.json").read_text())
    damages = {
        "a section missing": ({key: value for key, value in stored.items() if key != "optimizer"}, "optimizer.lr"),
        "a section of the wrong shape": ({**stored, "trainer": [1, 2]}, "trainer.epochs"),
        "a value no run can use": ({**stored, "optimizer": {**stored["optimizer"], "lr": "banana"}}, "banana"),
    }
    for damage, (config, named) in damages.items():
        (folder / "config.json").write_text(json.dumps(config))
        before = contents(folder)
        result = run_entrypoint([f"resume={folder}"], tmp_path)
        assert result.returncode == 2 and "Traceback" not in result.stderr, (damage, result.stderr[-2000:])
        assert str(folder / "config.json") in result.stderr and named in result.stderr, damage
        assert contents(folder) == before, damage
    # A setting the project added after the run started comes from the defaults: the run resumes.
    trainer = {key: value for key, value in stored["trainer"].items() if key != "threads"}
    (folder / "config.json").write_text(json.dumps({**stored, "trainer": trainer}))
    assert run_entrypoint([f"resume={folder}"], tmp_path).returncode == 0


@pytest.mark.slow
def test_a_checkpoint_that_loads_but_does_not_fit_is_refused_before_anything_is_written(tmp_path):
    folder = finished_run(tmp_path, epochs=2)
    as_interrupted(folder)
    checkpoint = torch.load(folder / "checkpoint.pt", weights_only=True)
    other = finished_run(tmp_path / "other", "model.widths=[4,8]")
    for damage, replacement, named in (
        ("not a run's", {"epoch": 1}, "is not a checkpoint of a run"),
        ("another network's", torch.load(other / "checkpoint.pt", weights_only=True), "weights of another network"),
    ):
        torch.save(replacement, folder / "checkpoint.pt")
        before = contents(folder)
        result = run_entrypoint([f"resume={folder}"], tmp_path)
        assert result.returncode == 2 and named in result.stderr and "Traceback" not in result.stderr, damage
        assert contents(folder) == before, damage
    torch.save(checkpoint, folder / "checkpoint.pt")
    assert run_entrypoint([f"resume={folder}"], tmp_path).returncode == 0
