"""Every schedule's learning rate at chosen steps equals its formula, warm-up included; and a 2x2 multirun
over two options of two groups runs through the real entrypoint."""

import json
import math

import pytest
import torch
from hydra.utils import instantiate

from runner.schedules import warmup_multiplier
from tests.conftest import SMALL_MODEL, SMOKE, compose_config, run_entrypoint

OPTIONS_TESTED = {
    "schedule": {
        "constant",
        "step",
        "multistep",
        "exponential",
        "cosine",
        "linear",
        "inverse_sqrt",
        "onecycle",
        "reduce_on_plateau",
        "cosine_restarts",
    }
}

BASE = 0.1
STEPS_PER_EPOCH = 10
EPOCHS = 20
TOTAL = STEPS_PER_EPOCH * EPOCHS


def rates(option: str, knobs=()) -> list[float]:
    """The learning rate used at each optimizer step 0 .. TOTAL - 1 of the configured schedule."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=BASE, momentum=0.9)
    config = compose_config([f"schedule={option}", *knobs])
    schedule = instantiate(config.schedule)(optimizer, steps_per_epoch=STEPS_PER_EPOCH, epochs=EPOCHS)
    used = []
    for _ in range(TOTAL):
        used.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    return used


def cosine_between(start: float, end: float, progress: float) -> float:
    return end + (start - end) * 0.5 * (1 + math.cos(math.pi * progress))


WARMUP = 2  # epochs: 20 steps
FORMULAS = {
    "constant": ([], lambda k: 1.0),
    "step": (["schedule.step_epochs=5", "schedule.factor=0.5"], lambda k: 0.5 ** (k // 50)),
    "multistep": (["schedule.milestone_fractions=[0.5,0.75]"], lambda k: 0.1 ** ((k >= 100) + (k >= 150))),
    "exponential": (["schedule.factor=0.8"], lambda k: 0.8 ** (k / STEPS_PER_EPOCH)),
    "cosine": (["schedule.final=0.1"], lambda k: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * k / TOTAL))),
    "linear": (["schedule.final=0.0"], lambda k: 1 - k / TOTAL),
    "cosine_restarts": (
        ["schedule.cycle_epochs=4", "schedule.cycle_multiplier=2"],
        # Cycles of 40, 80, 160 steps starting at steps 0, 40, 120.
        lambda k: (
            0.5 * (1 + math.cos(math.pi * ((k / 40) if k < 40 else (k - 40) / 80 if k < 120 else (k - 120) / 160)))
        ),
    ),
}


@pytest.mark.parametrize("option", sorted(FORMULAS))
@pytest.mark.parametrize("warmup", [0, WARMUP])
def test_schedule_follows_its_formula_times_the_warmup(option, warmup):
    knobs, formula = FORMULAS[option]
    used = rates(option, [*knobs, f"schedule.warmup_epochs={warmup}"])
    warmup_steps = warmup * STEPS_PER_EPOCH
    for k in (0, 1, 9, 19, 20, 39, 40, 49, 50, 99, 100, 119, 120, 149, 150, 199):
        expected = BASE * formula(k) * (min(1, (k + 1) / warmup_steps) if warmup_steps else 1)
        assert used[k] == pytest.approx(expected, rel=1e-9, abs=1e-12), (option, k)
    if warmup:
        assert used[0] == pytest.approx(BASE * formula(0) / warmup_steps)


@pytest.mark.parametrize("option", ["cosine", "linear", "onecycle"])
def test_a_length_that_ends_inside_an_epoch_ends_the_decay_with_it(option):
    # A time budget's 36 steps of 10 an epoch: the schedule is built for 3.6 epochs, and ends with them.
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=BASE, momentum=0.9)
    config = compose_config([f"schedule={option}", *(["schedule.final=0.0"] if option != "onecycle" else [])])
    schedule = instantiate(config.schedule)(optimizer, steps_per_epoch=STEPS_PER_EPOCH, epochs=36 / STEPS_PER_EPOCH)
    used = []
    for _ in range(36):
        used.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert used[-1] < 0.05 * BASE and max(used) > 0.5 * BASE  # the whole decay within the 36 steps
    if option == "linear":
        assert used[18] == pytest.approx(BASE * (1 - 18 / 36))


def test_inverse_sqrt_meets_its_warmup_at_the_peak():
    used = rates("inverse_sqrt", ["schedule.warmup_epochs=2"])
    for k in (0, 10, 19, 20, 50, 199):
        expected = (k + 1) / 20 if k < 20 else math.sqrt(20 / (k + 1))
        assert used[k] == pytest.approx(BASE * expected)
    without = rates("inverse_sqrt", ["schedule.timescale_epochs=1"])
    assert without[5] == pytest.approx(BASE) and without[99] == pytest.approx(BASE * math.sqrt(10 / 100))


@pytest.mark.parametrize("knobs", [[], ["schedule.warmup_epochs=5"]])
def test_onecycle_rises_to_the_base_rate_then_falls_far_below(knobs):
    used = rates("onecycle", knobs)
    rise = 0.3 * TOTAL - 1 if not knobs else 5 / EPOCHS * TOTAL - 1
    initial, final = BASE / 25, BASE / 25 / 1e4
    for k in (0, 10, int(rise), 120, TOTAL - 1):
        if k <= rise:
            expected = cosine_between(initial, BASE, k / rise)
        else:
            expected = cosine_between(BASE, final, (k - rise) / (TOTAL - 1 - rise))
        assert used[k] == pytest.approx(expected, rel=1e-6), k


def test_onecycle_with_linear_anneal_is_a_triangle():
    # airbench's schedule: from 0.2 of the base rate up to it at 23% of the run, then down to 0.07 of it.
    used = rates(
        "onecycle",
        [
            "schedule.anneal=linear",
            "schedule.peak_fraction=0.23",
            "schedule.initial_division=5",
            "schedule.final_division=2.857142857142857",
            "schedule.cycle_momentum=false",
        ],
    )
    peak = 0.23 * TOTAL - 1
    for k in (0, 20, int(peak), 100, TOTAL - 1):
        if k <= peak:
            expected = BASE * (0.2 + 0.8 * k / peak)
        else:
            expected = BASE * (1 - 0.93 * (k - peak) / (TOTAL - 1 - peak))
        assert used[k] == pytest.approx(expected, rel=1e-6), k


@pytest.mark.parametrize("steps", [1, 2, 3])
def test_onecycle_builds_for_runs_of_a_few_steps(steps):
    # A smoke run or a tiny subset can be one or two steps long; OneCycleLR needs two for its rise.
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=BASE, momentum=0.9)
    schedule = instantiate(compose_config(["schedule=onecycle"]).schedule)(optimizer, steps_per_epoch=steps, epochs=1)
    used = []
    for _ in range(steps):
        used.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert used[0] == pytest.approx(BASE / 25) and max(used) <= BASE


def test_reduce_on_plateau_warms_up_then_divides_after_patience_epochs_without_improvement():
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=BASE)
    config = compose_config(["schedule=reduce_on_plateau", "schedule.warmup_epochs=1", "schedule.patience=1"])
    schedule = instantiate(config.schedule)(optimizer, steps_per_epoch=STEPS_PER_EPOCH, epochs=EPOCHS)

    def lr() -> float:
        return optimizer.param_groups[0]["lr"]

    losses = [1.0, 0.5, 0.6, 0.7, 0.4, 0.45, 0.5]
    expected_after = [BASE, BASE, BASE, BASE / 10, BASE / 10, BASE / 10, BASE / 100]
    for epoch, (loss, expected) in enumerate(zip(losses, expected_after, strict=True)):
        for k in range(STEPS_PER_EPOCH):
            if epoch == 0:
                assert lr() == pytest.approx(BASE * warmup_multiplier(k, STEPS_PER_EPOCH))
            optimizer.step()
            schedule.step()
        # The validation loss is monitored when there is one, else the training loss.
        schedule.epoch_end({"train_loss": 99.0, "val_loss": loss} if epoch % 2 else {"train_loss": loss})
        assert lr() == pytest.approx(expected), epoch
    state = schedule.state_dict()
    schedule.load_state_dict(state)
    assert schedule.state_dict()["steps"] == len(losses) * STEPS_PER_EPOCH


@pytest.mark.slow
def test_a_two_by_two_multirun_over_optimizers_and_schedules(tmp_path):
    overrides = [*SMOKE, *SMALL_MODEL]
    result = run_entrypoint(
        [
            "-m",
            *overrides,
            "optimizer=adam,rmsprop",
            "schedule=onecycle,cosine_restarts",
            f"hydra.sweep.dir={tmp_path}",
        ],
        tmp_path / "outputs",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summaries = [json.loads((tmp_path / str(job) / "summary.json").read_text()) for job in range(4)]
    assert all(summary["status"] == "completed" for summary in summaries)
    pairs = {(summary["choices"]["optimizer"], summary["choices"]["schedule"]) for summary in summaries}
    assert pairs == {(o, s) for o in ("adam", "rmsprop") for s in ("onecycle", "cosine_restarts")}
