"""A run held to a time budget (runner.budget, and runner.loop's measure and budget_length): the steps that fit
from measured costs (the last epoch cut short), the schedule built for them, the choice recorded and kept across a
resume, a budget too short refused before training, and one real run through ``python -m runner.train``."""

import json
import signal
import subprocess
import sys
import time

import pytest
import torch

import runner.loop
from runner import validate
from runner.budget import MARGIN, Costs, Deadline, choose_length, choose_steps
from runner.errors import ConfigError
from runner.files import read_jsonl
from runner.loop import budget_length, fit, measure
from runner.record import Recorder
from runner.run import build
from tests.conftest import (
    PROJECT,
    SMALL_MODEL,
    SMOKE,
    compose_config,
    invoke,
    run_entrypoint,
    train_in_process,
    without_times,
)

# A linear decay to 0 without warm-up: the rate after each epoch says which length the schedule was built for.
BUDGET = [*SMOKE, *SMALL_MODEL, "trainer.time_budget=1000", "schedule=linear", "schedule.warmup_epochs=0"]
BUDGET += ["schedule.final=0", "diagnostics=off"]


def fake_measure(step_s: float = 60.0):
    """Measured costs without a clock: SMOKE's 4 steps of ``step_s`` an epoch, 100 test images at 0.1 s each and
    1 s a write. With the margin, 14 steps fit in 1000 s, 3.5 epochs (1.1 x (840 + 4 tests of 10 s + 14 writes)
    = 983 s); 15 do not (1049 s)."""

    def measured(run, seconds):
        assert seconds == pytest.approx(min(6.0, 0.02 * run.config.trainer.time_budget))
        costs = Costs(
            step_s=step_s,
            image_s=0.1,
            write_s=1.0,
            steps_per_epoch=run.steps_per_epoch,
            test_images=len(run.splits.test_labels),
        )
        return costs, 0.5

    return measured


def trainer(**settings):
    return compose_config([f"trainer.{key}={value}" for key, value in settings.items()]).trainer


# --- The arithmetic ---------------------------------------------------------------------------------------


def test_a_runs_seconds_are_its_steps_validation_test_evaluations_and_writes():
    costs = Costs(step_s=0.1, image_s=0.01, write_s=0.5, steps_per_epoch=10, test_images=100, validation_images=50)
    # 5 epochs, tested after epochs 2, 4 and 5 (the last always), checkpointed after each:
    # 5 x (10 x 0.1 + 50 x 0.01) + 3 x 100 x 0.01 + (5 rows + 3 logits + 5 checkpoints + 2 summaries) x 0.5
    assert costs.seconds(50, eval_every=2, checkpoint_every=1) == pytest.approx(7.5 + 3 + 7.5)
    # A last epoch cut short costs its steps and everything an epoch has besides: its validation, test, records.
    assert costs.seconds(45, eval_every=2, checkpoint_every=1) == pytest.approx(4.5 + 2.5 + 3 + 7.5)
    # An EMA scores its own network wherever the run scores its own: every evaluation costs twice.
    averaged = Costs(**{**costs.__dict__, "evaluations": 2, "write_s": 0.0})
    assert averaged.test_s == pytest.approx(2.0)
    assert averaged.seconds(50, eval_every=2, checkpoint_every=1) == pytest.approx(5 * (1 + 1) + 3 * 2)


def test_the_steps_chosen_are_the_most_whose_time_with_the_margin_fits():
    costs = Costs(step_s=1.0, image_s=0.0, write_s=0.0, steps_per_epoch=10, test_images=100)
    assert choose_steps(50 * (1 + MARGIN), costs, eval_every=1, checkpoint_every=1) == 50
    # A little less does not cost a whole epoch: the last one ends a step early.
    assert choose_steps(50 * (1 + MARGIN) - 0.01, costs, eval_every=1, checkpoint_every=1) == 49
    assert choose_steps(9.0, costs, eval_every=1, checkpoint_every=1) == 8  # 8 x 1.1 = 8.8 s
    assert choose_steps(1.0, costs, eval_every=1, checkpoint_every=1) == 0
    # Evaluations take their share: a test after every epoch (5 s each) leaves room for fewer steps than one at
    # the end, and the 7th epoch is not begun where its own test would not fit after a step of it.
    tested = Costs(step_s=1.0, image_s=0.05, write_s=0.0, steps_per_epoch=10, test_images=100)
    assert choose_steps(100, tested, eval_every=1, checkpoint_every=1) == 60  # 6 x 15 s = 90 s, x 1.1 = 99
    assert choose_steps(100, tested, eval_every=1000, checkpoint_every=1) == 85  # 85 + 5 = 90 s, x 1.1 = 99


def test_the_choice_records_the_budget_the_steps_it_replaced_and_the_measured_times():
    costs = Costs(step_s=0.5, image_s=0.01, write_s=0.0, steps_per_epoch=10, test_images=100)  # 5 s + 1 s a test
    choice = choose_length(trainer(time_budget=60, epochs=30, eval_every=1000), 10.0, costs)
    assert choice == {
        "time_budget_s": 60.0,
        "budget_steps": 88,  # 10 s + 1.1 x (88 x 0.5 + 1) = 59.5 s; 89 would be 60.05 s
        "budget_epochs": 8.8,
        "trainer_epochs": 30,
        "budget_step_time_s": 0.5,
        "budget_test_time_s": pytest.approx(1.0),
        "budget_predicted_s": pytest.approx(10 + 88 * 0.5 + 1),
    }


def test_a_budget_too_short_for_one_step_is_refused_with_the_budget_one_epoch_needs():
    costs = Costs(step_s=2.0, image_s=0.01, write_s=0.0, steps_per_epoch=10, test_images=100)  # 21 s an epoch
    with pytest.raises(ConfigError) as refused:
        choose_length(trainer(time_budget=13), 12.0, costs)
    message = str(refused.value)
    assert "trainer.time_budget=13 is too short to train at all" in message
    assert "12.0 s went to the start" in message and "10 steps of 2 s" in message
    assert "the test evaluation and records alone take about 1.0 s" in message
    assert "at least 36 s for one" in message  # 12 + 1.1 x 21 = 35.1
    assert choose_length(trainer(time_budget=30), 12.0, costs)["budget_steps"] == 7  # 12 + 1.1 x (14 + 1) = 28.5


def test_a_time_budget_is_a_number_of_seconds_above_0_or_null():
    for value in ("0", "-5", "soon", "true"):
        problems = validate.check(compose_config([f"trainer.time_budget={value}"]))
        assert any("trainer.time_budget" in problem and "seconds > 0" in problem for problem in problems), value
    for value in ("null", "90", "2.5"):
        assert validate.check(compose_config([f"trainer.time_budget={value}"])) == [], value


# --- The measurement --------------------------------------------------------------------------------------


def test_measuring_trains_throwaway_steps_puts_every_state_back_and_counts_the_averages(tmp_path):
    config = compose_config([*SMOKE, *SMALL_MODEL, "trainer.time_budget=60", "averaging=[ema,lookahead]"])
    run = build(config, tmp_path)
    assert run.schedule is None  # built once the length is known
    weights = {name: tensor.clone() for name, tensor in run.model.state_dict().items()}
    generator, global_stream = run.generator.get_state(), torch.get_rng_state()
    costs, seconds = measure(run, seconds=0.0)
    assert all(torch.equal(weights[name], tensor) for name, tensor in run.model.state_dict().items())
    assert torch.equal(run.generator.get_state(), generator) and torch.equal(torch.get_rng_state(), global_stream)
    assert run.optimizer.state_dict()["state"] == {}
    assert sorted(path.name for path in tmp_path.iterdir()) == []  # the write probe is gone
    assert costs.step_s > 0 and costs.image_s > 0 and costs.write_s > 0 and seconds > 0
    assert (costs.steps_per_epoch, costs.test_images, costs.validation_images) == (4, 100, 0)
    assert costs.evaluations == 2  # the run's own network and the EMA's; lookahead evaluates nothing of its own


# --- A run under a budget ---------------------------------------------------------------------------------


def test_the_run_trains_the_chosen_epochs_on_a_schedule_built_for_them(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(runner.loop, "measure", fake_measure())
    caplog.set_level("INFO", logger="runner")
    summary = train_in_process(BUDGET[len(SMOKE) :], tmp_path)  # trainer.epochs=1 of SMOKE gives way
    assert summary["status"] == "completed" and summary["epochs_completed"] == 4
    assert (summary["time_budget_s"], summary["budget_steps"], summary["trainer_epochs"]) == (1000, 14, 1)
    assert summary["budget_epochs"] == 3.5 and summary["budget_step_time_s"] == 60
    assert summary["budget_test_time_s"] == pytest.approx(10) and summary["warmup_time_s"] == 0.5
    assert summary["budget_predicted_s"] > 14 * 60
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    # Three whole epochs of 4 steps, then 2: the last epoch ends where the budget does, with its test.
    assert [row["step"] for row in rows] == [4, 8, 12, 14] and "test_acc" in rows[-1]
    # 14 steps of a linear decay to 0: 10/14, 6/14 and 2/14 of the rate after the whole epochs, 0 at the end.
    rates = [row["lr"] for row in rows]
    assert rates[0] == pytest.approx(5 * rates[2]) and rates[1] == pytest.approx(3 * rates[2]) and rates[2] > 0
    assert rates[3] == pytest.approx(0)
    assert "trainer.time_budget=1000 s: 3.5 epochs (14 steps) in place of trainer.epochs=1" in caplog.text


def test_a_step_is_the_last_where_another_and_the_finish_after_it_would_end_past_the_deadline():
    deadline = Deadline(end=100.0, step_s=1.0, finish_s=5.0)  # 2 steps and the finish: 7 s
    assert not deadline.last_step(now=92.9, observed_step_s=0.5)
    assert deadline.last_step(now=93.1, observed_step_s=0.5)
    # Steps twice as slow as measured: they, and the evaluation after them, take twice as long.
    assert deadline.last_step(now=86.1, observed_step_s=2.0) and not deadline.last_step(85.9, observed_step_s=2.0)


def test_steps_slower_than_measured_end_the_training_at_the_deadline_not_the_run_past_it(tmp_path, caplog):
    class SlowSteps:  # a CPU that slowed down after the budget measured it
        def on_step_end(self, run, state, loss):
            time.sleep(0.05)

    run = build(compose_config(BUDGET), tmp_path)
    run.fix_length(12)  # as the budget chose: 3 epochs of 4 steps
    run.callbacks.append(SlowSteps())
    run.deadline = Deadline(end=time.time() + 0.3, step_s=0.01, finish_s=0.0)
    caplog.set_level("WARNING", logger="runner")
    summary = fit(run, {"choices": {}, "overrides": [], "seed": 0, "started": time.time()})
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    cut = summary["budget_cut_steps"]
    assert summary["status"] == "completed" and 0 < cut < 12
    # The epoch the deadline came in is the last: tested and checkpointed, as a run's last epoch always is.
    assert rows[-1]["step"] == 12 - cut and "test_acc" in rows[-1] and summary["epochs_completed"] == len(rows)
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=False)["epoch"] == len(rows)
    assert f"training ends {cut} steps early, after step {12 - cut}" in caplog.text


def test_a_checkpoint_from_before_steps_were_counted_keeps_its_whole_epochs(tmp_path):
    run = build(compose_config(BUDGET), tmp_path)
    choice = {"time_budget_s": 1000.0, "budget_epochs": 3, "trainer_epochs": 1, "budget_predicted_s": 900.0}
    choice.update(budget_step_time_s=60.0, budget_test_time_s=10.0)
    budget_length(run, {"budget": choice}, started=0.0, base={})
    assert run.total_steps == 3 * run.steps_per_epoch and run.config.trainer.epochs == 3


def records(folder) -> tuple[list[dict], dict]:
    """The metrics rows without their times, and the summary."""
    return without_times(read_jsonl(folder / "metrics.jsonl")), json.loads((folder / "summary.json").read_text())


@pytest.mark.slow
def test_a_resumed_budget_run_keeps_its_epochs_without_measuring_again(tmp_path):
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(runner.loop, "measure", fake_measure())
        assert invoke([*BUDGET, f"hydra.run.dir={tmp_path / 'reference'}"], monkeypatch, tmp_path) == 0
    reference_rows, reference = records(tmp_path / "reference")

    folder = tmp_path / "run"
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(runner.loop, "measure", fake_measure())
        original = Recorder.checkpoint

        def stop_after_the_first(self, state):
            original(self, state)
            signal.raise_signal(signal.SIGTERM)  # the run ends after the epoch it just saved

        monkeypatch.setattr(Recorder, "checkpoint", stop_after_the_first)
        assert invoke([*BUDGET, f"hydra.run.dir={folder}"], monkeypatch, tmp_path) == 128 + signal.SIGTERM
    first = records(folder)[1]
    assert first["status"] == "interrupted" and first["epochs_completed"] == 1 and first["budget_steps"] == 14

    with pytest.MonkeyPatch.context() as monkeypatch:
        # Measured again, the run would have 30 epochs: it must not measure at all.
        monkeypatch.setattr(runner.loop, "measure", lambda run, seconds: pytest.fail("a resumed run measured again"))
        assert invoke([f"resume={folder}"], monkeypatch, tmp_path) == 0
    rows, summary = records(folder)
    assert rows == reference_rows and len(rows) == 4
    assert summary["status"] == "completed" and summary["resumes"] == 1 and summary["epochs_completed"] == 4
    budget = {key: value for key, value in summary.items() if key.startswith("budget_") or key == "time_budget_s"}
    assert budget == {key: first[key] for key in budget} and len(budget) == 6  # the first start's choice
    assert reference["budget_steps"] == 14


def test_the_process_start_counts_what_ran_before_the_runner_was_imported():
    code = "import time; time.sleep(1.5); from runner.budget import process_start; print(time.time() - process_start())"
    result = subprocess.run([sys.executable, "-c", code], cwd=PROJECT, capture_output=True, text=True, check=True)
    assert 1.5 <= float(result.stdout) < 10


def test_a_runs_budget_counts_from_the_commands_start(tmp_path, monkeypatch):
    monkeypatch.setattr(runner.loop, "measure", fake_measure())
    folder = tmp_path / "run"
    code = invoke([*BUDGET, f"hydra.run.dir={folder}"], monkeypatch, tmp_path)
    # The same command, started 500 s before the runner's first line ran (a slow start, long imports).
    late = tmp_path / "late"
    assert code == 0 and invoke([*BUDGET, f"hydra.run.dir={late}"], monkeypatch, tmp_path, time.time() - 500) == 0
    assert records(folder)[1]["budget_steps"] == 14
    # What is left of 1000 s after 500: 7 steps (1.1 x (420 + 2 tests + 8 writes) = 486 s).
    summary = records(late)[1]
    assert summary["budget_steps"] == 7 and summary["budget_predicted_s"] > 500


def test_a_budget_too_short_exits_2_before_training_and_leaves_no_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(runner.loop, "measure", fake_measure(step_s=1000.0))
    steps = []
    monkeypatch.setattr(runner.loop, "train_epoch", lambda *args, **kwargs: steps.append(1))
    folder = tmp_path / "run"
    assert invoke([*BUDGET, f"hydra.run.dir={folder}"], monkeypatch, tmp_path) == 2
    assert "trainer.time_budget=1000 is too short to train at all" in capsys.readouterr().err
    assert not steps and not folder.exists()


@pytest.mark.slow
def test_a_real_run_through_the_entrypoint_fixes_and_records_its_length(tmp_path):
    # Whether the run ends within its budget is a timing, measured by docs/speed.md's runs, not asserted here: a
    # test's machine may be shared. Small enough that one epoch fits the budget even on a loaded machine.
    budget = 30
    arguments = [*SMOKE, *SMALL_MODEL, "data.train_size=500", "diagnostics=off", "trainer.threads=1"]
    folder = tmp_path / "run"
    result = run_entrypoint([*arguments, f"trainer.time_budget={budget}", f"hydra.run.dir={folder}"], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["time_budget_s"] == budget
    assert summary["budget_steps"] >= 1 and summary["budget_step_time_s"] > 0
    rows = read_jsonl(folder / "metrics.jsonl")
    # The deadline may end it early, where the machine slowed down after the measurement.
    trained = summary["budget_steps"] - summary.get("budget_cut_steps", 0)
    assert summary["epochs_completed"] == len(rows) and rows[-1]["step"] == trained
