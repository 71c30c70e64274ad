"""A run held to a time budget (runner.budget, and runner.loop's measure and budget_length): the epochs that fit
from measured costs, the schedule built for them, the choice recorded and kept across a resume, a budget too
short refused before training, and one real run through ``python -m runner.train`` that ends within its budget."""

import json
import signal

import pytest
import torch

import runner.loop
from runner import validate
from runner.budget import MARGIN, Costs, choose_epochs, choose_length
from runner.errors import ConfigError
from runner.files import read_jsonl
from runner.loop import measure
from runner.record import Recorder
from runner.run import build
from tests.conftest import SMALL_MODEL, SMOKE, compose_config, invoke, run_entrypoint, train_in_process

# A linear decay to 0 without warm-up: the rate after each epoch says which length the schedule was built for.
BUDGET = [*SMOKE, *SMALL_MODEL, "trainer.time_budget=1000", "schedule=linear", "schedule.warmup_epochs=0"]
BUDGET += ["schedule.final=0", "diagnostics=off"]
TIMES = {"epoch_time_s", "eval_time_s", "images_per_s"}


def fake_measure(step_s: float = 60.0):
    """Measured costs without a clock: SMOKE's 4 steps of ``step_s`` an epoch, 100 test images at 0.1 s each and
    1 s a write. With the margin, 3 epochs fit in 1000 s (799 s), 4 do not (1065 s)."""

    def measured(run):
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


def test_an_epochs_seconds_are_its_steps_validation_test_evaluations_and_writes():
    costs = Costs(step_s=0.1, image_s=0.01, write_s=0.5, steps_per_epoch=10, test_images=100, validation_images=50)
    # 5 epochs, tested after epochs 2, 4 and 5 (the last always), checkpointed after each:
    # 5 x (10 x 0.1 + 50 x 0.01) + 3 x 100 x 0.01 + (5 rows + 3 logits + 5 checkpoints + 2 summaries) x 0.5
    assert costs.seconds(5, eval_every=2, checkpoint_every=1) == pytest.approx(7.5 + 3 + 7.5)
    # An EMA scores its own network wherever the run scores its own: every evaluation costs twice.
    averaged = Costs(**{**costs.__dict__, "evaluations": 2, "write_s": 0.0})
    assert averaged.test_s == pytest.approx(2.0)
    assert averaged.seconds(5, eval_every=2, checkpoint_every=1) == pytest.approx(5 * (1 + 1) + 3 * 2)


def test_the_epochs_chosen_are_the_most_whose_time_with_the_margin_fits():
    costs = Costs(step_s=1.0, image_s=0.0, write_s=0.0, steps_per_epoch=10, test_images=100)
    assert choose_epochs(50 * (1 + MARGIN), costs, eval_every=1, checkpoint_every=1) == 5
    assert choose_epochs(50 * (1 + MARGIN) - 0.01, costs, eval_every=1, checkpoint_every=1) == 4
    assert choose_epochs(9.0, costs, eval_every=1, checkpoint_every=1) == 0
    # Evaluations take their share: one test evaluation at the end leaves room for more epochs than one each.
    tested = Costs(step_s=1.0, image_s=0.05, write_s=0.0, steps_per_epoch=10, test_images=100)  # 5 s a test
    assert choose_epochs(100, tested, eval_every=1, checkpoint_every=1) == 6  # 6 x 15 s = 90 s, x 1.1 = 99
    assert choose_epochs(100, tested, eval_every=1000, checkpoint_every=1) == 8  # 8 x 10 + 5 = 85 s, x 1.1 = 93.5


def test_the_choice_records_the_budget_the_epochs_it_replaced_and_the_measured_times():
    costs = Costs(step_s=0.5, image_s=0.01, write_s=0.0, steps_per_epoch=10, test_images=100)  # 5 s + 1 s a test
    choice = choose_length(trainer(time_budget=60, epochs=30, eval_every=1000), 10.0, costs)
    assert choice == {
        "time_budget_s": 60.0,
        "budget_epochs": 8,  # 10 s + 1.1 x (8 x 5 + 1) = 55.1 s; 9 would be 60.6 s
        "trainer_epochs": 30,
        "budget_step_time_s": 0.5,
        "budget_test_time_s": pytest.approx(1.0),
        "budget_predicted_s": pytest.approx(10 + 8 * 5 + 1),
    }


def test_a_budget_too_short_for_one_epoch_is_refused_with_the_budget_that_would_do():
    costs = Costs(step_s=2.0, image_s=0.01, write_s=0.0, steps_per_epoch=10, test_images=100)  # 21 s an epoch
    with pytest.raises(ConfigError) as refused:
        choose_length(trainer(time_budget=30), 12.0, costs)
    message = str(refused.value)
    assert "trainer.time_budget=30 is too short for one epoch" in message
    assert "12.0 s went to the start" in message and "10 steps of 2 s" in message
    assert "at least 36 s" in message  # 12 + 1.1 x 21 = 35.1


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
    assert summary["status"] == "completed" and summary["epochs_completed"] == 3
    assert (summary["time_budget_s"], summary["budget_epochs"], summary["trainer_epochs"]) == (1000, 3, 1)
    assert summary["budget_step_time_s"] == 60 and summary["budget_test_time_s"] == pytest.approx(10)
    assert summary["budget_predicted_s"] > 3 * 4 * 60 and summary["warmup_time_s"] == 0.5
    rates = [row["lr"] for row in read_jsonl(tmp_path / "metrics.jsonl")]
    # 12 steps of a linear decay to 0: 2/3 and 1/3 of the rate after the first two epochs, 0 after the last.
    assert rates[0] == pytest.approx(2 * rates[1]) and rates[1] > 0 and rates[2] == pytest.approx(0)
    assert "trainer.time_budget=1000 s: 3 epochs in place of trainer.epochs=1" in caplog.text


def records(folder) -> tuple[list[dict], dict]:
    """The metrics rows without their times, and the summary."""
    rows = [
        {key: value for key, value in row.items() if key not in TIMES} for row in read_jsonl(folder / "metrics.jsonl")
    ]
    return rows, json.loads((folder / "summary.json").read_text())


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
    assert first["status"] == "interrupted" and first["epochs_completed"] == 1 and first["budget_epochs"] == 3

    with pytest.MonkeyPatch.context() as monkeypatch:
        # Measured again, the run would have 30 epochs: it must not measure at all.
        monkeypatch.setattr(runner.loop, "measure", lambda run: pytest.fail("a resumed run measured again"))
        assert invoke([f"resume={folder}"], monkeypatch, tmp_path) == 0
    rows, summary = records(folder)
    assert rows == reference_rows and len(rows) == 3
    assert summary["status"] == "completed" and summary["resumes"] == 1 and summary["epochs_completed"] == 3
    budget = {key: value for key, value in summary.items() if key.startswith("budget_") or key == "time_budget_s"}
    assert budget == {key: first[key] for key in budget} and len(budget) == 5  # the first start's choice
    assert reference["budget_epochs"] == 3


def test_a_budget_too_short_exits_2_before_training_and_leaves_no_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(runner.loop, "measure", fake_measure(step_s=1000.0))
    steps = []
    monkeypatch.setattr(runner.loop, "train_epoch", lambda *args, **kwargs: steps.append(1))
    folder = tmp_path / "run"
    assert invoke([*BUDGET, f"hydra.run.dir={folder}"], monkeypatch, tmp_path) == 2
    assert "trainer.time_budget=1000 is too short for one epoch" in capsys.readouterr().err
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
    assert summary["epochs_completed"] == summary["budget_epochs"] >= 1 and summary["budget_step_time_s"] > 0
    assert len(read_jsonl(folder / "metrics.jsonl")) == summary["budget_epochs"]
