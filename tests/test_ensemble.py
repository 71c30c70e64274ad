"""runner.ensemble: the averaged-probability accuracy worked out by hand, the errors for files that do not fit,
and one end-to-end pass over real tiny runs (also through runner.compare)."""

import json
from pathlib import Path

import numpy as np
import pytest

from runner import compare, data, ensemble
from tests.conftest import SMALL_MODEL, SMOKE, compose_config, run_entrypoint
from tests.test_files import npy_header

OPTIONS_TESTED: dict[str, set[str]] = {}  # ensemble is a command, not a config group

# Three members, four test images, three classes. Each row is a member's probabilities for one image.
LABELS = np.array([0, 1, 2, 0])
PROBABILITIES = {
    "a": [[0.3, 0.4, 0.3], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.2, 0.45, 0.35]],  # wrong on 0 and 3: 2/4
    "b": [[0.8, 0.1, 0.1], [0.4, 0.35, 0.25], [0.1, 0.2, 0.7], [0.2, 0.35, 0.45]],  # wrong on 1 and 3: 2/4
    "c": [[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.1, 0.5, 0.4], [0.9, 0.05, 0.05]],  # wrong on 2: 3/4
}
# Averages: image 0 [1.8, 0.7, 0.5]/3 -> 0, image 1 [0.7, 1.85, 0.45]/3 -> 1, image 2 [0.3, 0.8, 1.9]/3 -> 2,
# image 3 [1.3, 0.85, 0.85]/3 -> 0, where the members vote 1, 2 and 0: the ensemble gets all four right.
MEMBER_ACCURACIES = [0.5, 0.5, 0.75]
ENSEMBLE_ACCURACY = 1.0


def write_member(folder: Path, probabilities, shift: float = 0.0, labels=None) -> Path:
    """Save log-probabilities as float16 logits, as runs do; a per-row shift must not change the softmax."""
    folder.mkdir(parents=True, exist_ok=True)
    logits = np.log(np.asarray(probabilities, dtype=np.float64)) + shift
    np.save(folder / ensemble.LOGITS, logits.astype(np.float16), allow_pickle=False)
    if labels is not None:
        np.save(folder / ensemble.LABELS, np.asarray(labels, dtype=np.int64), allow_pickle=False)
    (folder / "summary.json").write_text(json.dumps({"status": "completed"}))
    return folder


def run_ensemble(capsys, *arguments) -> tuple[int, str, str]:
    code = ensemble.main([str(argument) for argument in arguments])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def members(tmp_path) -> list[Path]:
    return [
        write_member(tmp_path / "sweep" / name, values, shift=3.0 * index, labels=LABELS)
        for index, (name, values) in enumerate(PROBABILITIES.items())
    ]


def test_softmax_is_shift_invariant_and_sums_to_one():
    logits = np.array([[1.0, 2.0, 3.0], [1001.0, 1002.0, 1003.0]])
    probabilities = ensemble.softmax(logits)
    assert np.allclose(probabilities.sum(axis=1), 1.0)
    assert np.allclose(probabilities[0], probabilities[1])  # no overflow at 1000
    assert np.allclose(probabilities[0], np.exp([1, 2, 3]) / np.exp([1, 2, 3]).sum())


def test_ensemble_accuracy_by_hand():
    logits = [np.log(np.array(values)) for values in PROBABILITIES.values()]
    result = ensemble.ensemble_accuracy(logits, LABELS)
    assert result["member_accuracies"] == MEMBER_ACCURACIES
    assert result["mean_member_accuracy"] == pytest.approx(np.mean(MEMBER_ACCURACIES))
    assert result["ensemble_accuracy"] == ENSEMBLE_ACCURACY


def test_command_prints_and_writes_ensemble_json(members, tmp_path, capsys):
    output = tmp_path / "out" / "ensemble.json"
    code, out, _ = run_ensemble(capsys, *members, "--output", output)
    assert code == 0
    written = json.loads(output.read_text())
    assert [member["accuracy"] for member in written["members"]] == MEMBER_ACCURACIES
    assert written["member_accuracies"] == MEMBER_ACCURACIES
    assert written["mean_member_accuracy"] == pytest.approx(0.583333, abs=1e-6)
    assert written["ensemble_accuracy"] == ENSEMBLE_ACCURACY
    assert written["members"][0]["status"] == "completed" and written["test_images"] == 4
    assert "58.33" in out and "100.00" in out and "+41.67 points" in out


def test_sweep_folder_means_all_its_runs_and_default_output_is_a_folder_of_its_own(
    members, tmp_path, capsys, monkeypatch
):
    """By default ensemble.json goes to <outputs>/ensembles/<date>/<time>/, like a run folder, never into the
    current folder; a second ensemble gets a folder of its own, and the command says where."""
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    monkeypatch.setenv("RUNNER_OUTPUTS", str(tmp_path / "outputs"))
    code, out, _ = run_ensemble(capsys, tmp_path / "sweep")
    code_again, out_again, _ = run_ensemble(capsys, tmp_path / "sweep")
    assert code == code_again == 0 and list(here.iterdir()) == []
    written = sorted((tmp_path / "outputs" / "ensembles").glob("*/*/ensemble.json"))
    assert len(written) == 2 and f"Wrote {written[0]}" in out and f"Wrote {written[1]}" in out_again
    date, time = written[0].parent.parent.name, written[0].parent.name
    assert len(date.split("-")) == 3 and len(time.split("-")) == 4  # 2025-01-31 / 12-00-00-000000
    result = json.loads(written[0].read_text())
    assert len(result["members"]) == 3 and result["ensemble_accuracy"] == ENSEMBLE_ACCURACY


def test_labels_option_wins_over_run_folders(tmp_path, capsys):
    folders = [write_member(tmp_path / name, values) for name, values in PROBABILITIES.items()]
    code, _, err = run_ensemble(capsys, *folders, "--output", tmp_path / "e.json")
    assert code == 2 and "--labels" in err  # no labels anywhere: say how to give them
    np.save(tmp_path / "labels.npy", LABELS)
    code, _, _ = run_ensemble(capsys, *folders, "--labels", tmp_path / "labels.npy", "--output", tmp_path / "e.json")
    assert code == 0 and json.loads((tmp_path / "e.json").read_text())["ensemble_accuracy"] == ENSEMBLE_ACCURACY


def test_mismatched_shapes_are_a_clear_error(tmp_path, capsys):
    first = write_member(tmp_path / "first", PROBABILITIES["a"], labels=LABELS)
    second = write_member(tmp_path / "second", PROBABILITIES["b"][:3], labels=LABELS)
    code, out, err = run_ensemble(capsys, first, second, "--output", tmp_path / "e.json")
    assert code == 2 and "(4, 3)" in err and "(3, 3)" in err and "Traceback" not in err
    assert not (tmp_path / "e.json").exists()

    np.save(tmp_path / "short.npy", LABELS[:3])
    code, _, err = run_ensemble(capsys, first, "--labels", tmp_path / "short.npy")
    assert code == 2 and "(3,)" in err and "(4,)" in err


def test_disagreeing_labels_missing_files_and_pickles_are_refused(tmp_path, capsys):
    first = write_member(tmp_path / "first", PROBABILITIES["a"], labels=LABELS)
    second = write_member(tmp_path / "second", PROBABILITIES["b"], labels=[0, 0, 0, 0])
    code, _, err = run_ensemble(capsys, first, second)
    assert code == 2 and "different test sets" in err

    (tmp_path / "empty").mkdir()
    code, _, err = run_ensemble(capsys, first, tmp_path / "empty")
    assert code == 2 and "test_logits.npy" in err

    code, _, err = run_ensemble(capsys, first, tmp_path / "nowhere")
    assert code == 2 and "nowhere" in err

    # An object array needs pickle to load; allow_pickle=False refuses it instead of running its code.
    np.save(tmp_path / "pickled.npy", np.array([{"not": "numbers"}], dtype=object), allow_pickle=True)
    code, _, err = run_ensemble(capsys, first, "--labels", tmp_path / "pickled.npy")
    assert code == 2 and "cannot read" in err and "Traceback" not in err

    (tmp_path / "torn").mkdir()
    (tmp_path / "torn" / ensemble.LOGITS).write_bytes((first / ensemble.LOGITS).read_bytes()[:60])
    code, _, err = run_ensemble(capsys, first, tmp_path / "torn")
    assert code == 2 and "cannot read" in err


@pytest.mark.parametrize("shape", [(0, 0), (0, 3), (4, 0)])
def test_logits_without_images_or_classes_are_refused(tmp_path, capsys, shape):
    folder = write_member(tmp_path / "empty", PROBABILITIES["a"], labels=np.zeros(shape[0], dtype=np.int64))
    np.save(folder / ensemble.LOGITS, np.zeros(shape, dtype=np.float16))
    code, _, err = run_ensemble(capsys, folder, "--output", tmp_path / "e.json")
    assert code == 2 and f"{folder / ensemble.LOGITS}: logits have shape {shape}: no test images or no classes" in err
    assert not (tmp_path / "e.json").exists()


@pytest.mark.slow
def test_real_runs_through_compare_and_ensemble(tmp_path, capsys):
    """Two seeds of a tiny real run, made by the real entrypoint, then compared and ensembled."""
    overrides = [*SMOKE, *SMALL_MODEL, "trainer.epochs=2"]
    result = run_entrypoint(["-m", *overrides, "seed=0,1", f"hydra.sweep.dir={tmp_path / 'sweep'}"], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]

    assert compare.main([str(tmp_path / "sweep"), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert sorted(row["seed"] for row in rows) == ["0", "1"]  # the only setting that differs
    assert all(row["status"] == "completed" and row["epochs_completed"] == 2 for row in rows)

    test_labels = data.load(compose_config(overrides).data).test_labels.numpy()
    np.save(tmp_path / "labels.npy", test_labels)
    output = tmp_path / "ensemble.json"
    code = ensemble.main([str(tmp_path / "sweep"), "--labels", str(tmp_path / "labels.npy"), "--output", str(output)])
    written = json.loads(output.read_text())
    assert code == 0 and len(written["members"]) == 2 and written["test_images"] == len(test_labels)
    # The members' accuracies match what the runs measured; float16 logits may flip a near-tie or two.
    measured = sorted(row["test_acc"] for row in rows)
    assert sorted(written["member_accuracies"]) == pytest.approx(measured, abs=2.5 / len(test_labels))
    for saved in (tmp_path / "sweep").rglob(ensemble.LABELS):  # once the loop saves the labels beside the logits
        assert np.array_equal(np.load(saved, allow_pickle=False), test_labels)


def test_a_logits_file_whose_header_lies_is_refused_in_one_line(tmp_path):
    """A run folder from someone else whose test_logits.npy claims 10^13 values: refused before anything is
    allocated, by the command as a user runs it."""
    folder = write_member(tmp_path / "stranger", PROBABILITIES["a"], labels=LABELS)
    logits = folder / ensemble.LOGITS
    logits.write_bytes(npy_header(1, (10**13, 3), descr="<f2") + bytes(24))
    result = run_entrypoint([str(folder), "--output", str(tmp_path / "e.json")], tmp_path, module="runner.ensemble")
    assert result.returncode == 2 and result.stdout == ""
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {logits}: cannot read test logits: its header promises an array of shape")
    assert not (tmp_path / "e.json").exists()
