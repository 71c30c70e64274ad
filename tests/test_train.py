"""The training entrypoint (runner.train), as a user runs it: ``python -m runner.train`` trains, prints where
its outputs are, records the choices and overrides, a diverged run exits 0 so that a sweep goes on, a signal at
any point leaves a folder its resume completes exactly, and a full disk is named without damage."""

import errno
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import runner.data
import runner.loop
import runner.train
from runner.files import read_jsonl
from runner.record import Recorder
from tests.conftest import SMALL_MODEL, SMOKE, TIMES, invoke, run_entrypoint


@pytest.mark.slow
def test_entrypoint_end_to_end(tmp_path):
    result = run_entrypoint(SMOKE + SMALL_MODEL + ["activation=gelu"], tmp_path)
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    folder = re.search(r"Outputs: (\S+)", output).group(1)
    assert re.search(r"final test accuracy: \d+\.\d\d%", output)
    assert re.fullmatch(rf"{re.escape(str(tmp_path))}/runs/\d{{4}}-\d\d-\d\d/\d\d-\d\d-\d\d-\d+", folder)
    summary = json.loads((tmp_path / folder / "summary.json").read_text())
    assert summary["choices"]["activation"] == "gelu" and summary["choices"]["model"] == "convnet"
    assert "activation=gelu" in summary["overrides"]
    assert (tmp_path / folder / ".hydra" / "config.yaml").exists()


@pytest.mark.slow
def test_divergence_exits_zero_so_a_sweep_goes_on(tmp_path):
    overrides = ["model=mlp", "norm=none", "optimizer=sgd", "optimizer.lr=50", "trainer.log_every=1"]
    result = run_entrypoint(SMOKE + overrides + ["trainer.epochs=2"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Status: diverged" in result.stdout + result.stderr


# --- Signals and the disk, from the first line of a run to its last write ---------------------------------

TRUST = SMOKE + SMALL_MODEL + ["trainer.epochs=2", "averaging=[ema]", "averaging.ema.decay=0.9"]
VARIES = TIMES | {"train_time_s", "wall_time_s", "resumes", "output_dir", "overrides", "started"}


def folder_records(folder: Path) -> dict:
    """What must be the same in a resumed run's folder as in an uninterrupted one's."""
    records = {}
    for name in ("metrics.jsonl", "activations.jsonl", "updates.jsonl"):
        records[name] = [{k: v for k, v in row.items() if k not in VARIES} for row in read_jsonl(folder / name)]
    summary = json.loads((folder / "summary.json").read_text())
    records["summary.json"] = {key: value for key, value in summary.items() if key not in VARIES}
    for path in sorted(folder.glob("*.npy")):
        records[path.name] = np.load(path, allow_pickle=False).tolist()
    return records


def signal_at(monkeypatch, owner, name, when=lambda *args, **kwargs: True, number=signal.SIGTERM):
    """Send this process ``number`` just before ``owner.name`` runs, the first time ``when`` holds."""
    original = getattr(owner, name)
    sent = []

    def wrapped(*args, **kwargs):
        if not sent and when(*args, **kwargs):
            sent.append(1)
            os.kill(os.getpid(), number)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapped)
    return sent


def calls_from(count: int):
    seen = []
    return lambda *args, **kwargs: seen.append(1) or len(seen) >= count


PHASES = {
    "start-up": (runner.train, "prepare", None),
    "data load": (runner.data, "load", None),
    "mid-epoch": (runner.loop, "optimize", calls_from(5)),  # the second epoch's first step (4 per epoch)
    "evaluation": (runner.loop, "evaluate", None),
    "checkpoint write": (Recorder, "checkpoint", None),
    "final writes": (Recorder, "summary", lambda self, data: data["status"] != "running"),
}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    outputs = tmp_path_factory.mktemp("reference")
    with pytest.MonkeyPatch.context() as monkeypatch:
        assert invoke([*TRUST, f"hydra.run.dir={outputs / 'run'}"], monkeypatch, outputs) == 0
    return folder_records(outputs / "run")


@pytest.mark.slow
def test_a_job_of_a_sweep_ends_as_the_same_run_started_alone(tmp_path, monkeypatch):
    """What a basic-launcher sweep's jobs share in their one process (the data set read once, runner.data's
    ``remembered``) changes no result: the second job's records are those of the same run in a fresh process."""
    arguments = [*SMOKE, *SMALL_MODEL, "trainer.epochs=2"]
    sweep = tmp_path / "sweep"
    assert invoke(["-m", *arguments, "activation=gelu,relu", f"hydra.sweep.dir={sweep}"], monkeypatch, tmp_path) == 0
    alone = run_entrypoint([*arguments, "activation=relu", f"hydra.run.dir={tmp_path / 'alone'}"], tmp_path)
    assert alone.returncode == 0, alone.stderr
    assert folder_records(sweep / "1") == folder_records(tmp_path / "alone")


@pytest.mark.parametrize("phase", sorted(PHASES))
def test_a_sigterm_at_any_point_then_resume_gives_the_uninterrupted_runs_files(phase, uninterrupted, tmp_path):
    owner, name, when = PHASES[phase]
    folder = tmp_path / "run"
    with pytest.MonkeyPatch.context() as monkeypatch:
        sent = signal_at(monkeypatch, owner, name, when or (lambda *args, **kwargs: True))
        code = invoke([*TRUST, f"hydra.run.dir={folder}"], monkeypatch, tmp_path)
    assert sent, phase
    # The final writes always complete: that run is done. Anywhere else it stops, resumable.
    assert code == (0 if phase == "final writes" else 128 + signal.SIGTERM), phase
    if code:
        assert json.loads((folder / "summary.json").read_text())["status"] == "interrupted"
        with pytest.MonkeyPatch.context() as monkeypatch:
            assert invoke([f"resume={folder}"], monkeypatch, tmp_path) == 0
    assert folder_records(folder) == uninterrupted


def test_a_second_ctrl_c_stops_at_once_without_a_traceback(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "run"
    original = runner.loop.optimize
    calls = []

    def twice(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)  # "now": the step is not finished
        return original(*args, **kwargs)

    monkeypatch.setattr(runner.loop, "optimize", twice)
    assert invoke([*TRUST, f"hydra.run.dir={folder}"], monkeypatch, tmp_path) == 128 + signal.SIGINT
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["signal"] == "SIGINT" and summary["epochs_completed"] == 0
    assert "Traceback" not in capsys.readouterr().err


def test_a_full_disk_stops_with_the_path_and_damages_nothing_written_before(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "run"
    original = Recorder.checkpoint

    def fills_the_disk(self, state):
        if state["epoch"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.path("checkpoint.pt")))
        return original(self, state)

    monkeypatch.setattr(Recorder, "checkpoint", fills_the_disk)
    assert invoke([*TRUST, f"hydra.run.dir={folder}"], monkeypatch, tmp_path) == 2
    printed = capsys.readouterr().err
    assert f"Cannot write {folder / 'checkpoint.pt'}: No space left on device" in printed and "Traceback" not in printed
    assert torch.load(folder / "checkpoint.pt", weights_only=True)["epoch"] == 1  # the earlier checkpoint is whole
    monkeypatch.setattr(Recorder, "checkpoint", original)
    assert invoke([f"resume={folder}"], monkeypatch, tmp_path) == 0
    assert json.loads((folder / "summary.json").read_text())["status"] == "completed"


def test_a_refused_single_run_leaves_no_folder_behind(tmp_path, monkeypatch, capsys):
    assert invoke([*SMOKE, "optimizer.lr=-1"], monkeypatch, tmp_path) == 2
    assert "optimizer.lr=-1 is not allowed" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*"))


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["trainer.epoch=2"], "trainer.epoch: no such setting (did you mean trainer.epochs?)."),
        (["activation=gleu"], "activation=gleu: no such option (did you mean gelu?). The options: elu, gelu,"),
        (["-m", "regularizer=[l2],[l2,dropuot]"], "regularizer=dropuot: no such option (did you mean dropout?)"),
        (["+trainer.epoch=2"], "+trainer.epoch: no part of the run reads a setting of that name (did you mean"),
        (["optimizers=momentum"], "optimizers: no such group or setting (did you mean optimizer?)."),
    ],
)
def test_a_mistyped_key_or_option_gets_the_nearest_valid_names(arguments, expected, tmp_path, monkeypatch, capsys):
    assert invoke([*SMOKE, *arguments], monkeypatch, tmp_path) == 2
    printed = capsys.readouterr().err
    assert expected in printed and "Traceback" not in printed


@pytest.mark.slow
def test_help_lists_every_option_with_its_line_the_launchers_and_examples(tmp_path):
    result = run_entrypoint(["--help"], tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    help_text = result.stdout
    assert "python -m runner.train experiment=cpu_quick" in help_text and "--multirun,-m" in help_text
    assert "    * relu " in help_text and "Rectified linear unit" in help_text  # the default, with its one line
    for launcher in ("joblib", "gpus", "slurm_gpu", "submitit_slurm"):
        assert f"    {launcher} " in help_text, launcher


def test_the_command_leaves_its_imports_and_its_exit_to_no_collector_walk_yet_frees_later_garbage(tmp_path):
    """``python -m runner.train`` freezes what its imports made (some 200,000 objects), so that full
    collections skip them, and freezes everything at exit, after the run's and Hydra's exit handlers; garbage in
    cycles made after the first freeze is still collected."""
    script = """
import atexit, gc, runpy, sys
sys.argv = ["runner.train", "--cfg", "job"]
try:
    runpy.run_module("runner.train", run_name="__main__", alter_sys=True)
except SystemExit:
    pass
after_imports = gc.get_freeze_count()
class Node:
    pass
node = Node()
node.itself = node
del node
collected = gc.collect()
atexit._run_exitfuncs()
print(after_imports, collected, gc.get_freeze_count() - after_imports)
"""
    environment = {**os.environ, "RUNNER_OUTPUTS": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=environment, timeout=120
    )
    assert result.returncode == 0, result.stderr
    after_imports, collected, frozen_at_exit = map(int, result.stdout.split()[-3:])
    assert after_imports > 100_000
    assert collected >= 1  # the cycle made after the freeze
    assert frozen_at_exit > 0  # what the run made since, frozen by the last exit handler
