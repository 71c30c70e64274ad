"""Averages taken during training (the averaging group, runner.callbacks.averaging): the EMA of the weights
follows its formula and is what gets evaluated, it survives a resume, lookahead follows airbench's rule, and
snapshot ensembles take their snapshots where the cosine-restarts schedule ends its cycles and score them as
an ensemble computed by hand."""

import json
import os
import signal
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from runner.callbacks.averaging import ExponentialMovingAverage, Lookahead, SnapshotEnsemble
from runner.errors import ConfigError
from runner.evaluate import evaluate
from runner.files import read_jsonl
from runner.loop import fit
from runner.run import build
from runner.schedules import cosine_restarts, cycle_ends
from tests.conftest import SMALL_MODEL, SMOKE, compose_config, without_times

OPTIONS_TESTED = {"schedule": {"cosine_restarts"}, "averaging": {"none", "ema", "lookahead", "snapshots", "precise_bn"}}

QUICK = SMOKE + SMALL_MODEL + ["diagnostics=off"]


def context():
    return {"choices": {}, "overrides": [], "seed": 0, "started": time.time()}


def test_ema_after_k_steps_is_the_hand_computed_average():
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    average = ExponentialMovingAverage(decay=0.9)
    run = SimpleNamespace(model=model)
    average.on_train_start(run, {"step": 0})
    history = []
    generator = torch.Generator().manual_seed(0)
    for _ in range(5):
        with torch.no_grad():
            for tensor in [*model.parameters(), model[1].running_mean]:
                tensor.copy_(torch.randn(tensor.shape, generator=generator))
        history.append({key: value.clone() for key, value in model.state_dict().items()})
        average.on_step_end(run, {"step": 0}, None)
    for key in ("0.weight", "0.bias", "1.weight", "1.running_mean"):
        expected = history[0][key]  # the first step's weights, then average = 0.9 average + 0.1 weights
        for later in history[1:]:
            expected = 0.9 * expected + 0.1 * later[key]
        assert torch.allclose(average.averaged.module.state_dict()[key], expected, atol=1e-6), key


def test_evaluation_uses_the_averaged_weights(tmp_path):
    overrides = ["averaging=[ema]", "averaging.ema.decay=0.8", "trainer.epochs=2", "data.val_size=50"]
    run = build(compose_config(QUICK + overrides), tmp_path)
    summary = fit(run, context())
    average = next(callback for callback in run.callbacks if isinstance(callback, ExponentialMovingAverage))
    live, averaged = run.model.state_dict(), average.averaged.module.state_dict()
    assert any(not torch.equal(live[key], averaged[key]) for key in live)
    run.model.load_state_dict(averaged)  # the averaged weights in the run's own model, scored the plain way
    scored = evaluate(run, run.splits.test_images, run.splits.test_labels)
    assert summary["ema_test_acc"] == pytest.approx(scored["acc"])
    assert summary["ema_test_loss"] == pytest.approx(scored["loss"], rel=1e-5)
    assert "ema_val_acc" in read_jsonl(tmp_path / "metrics.jsonl")[-1]
    saved = np.load(tmp_path / "ema_test_logits.npy")
    assert np.allclose(saved, scored["logits"].numpy(), atol=1e-2)


def test_the_average_is_checkpointed_and_a_resumed_run_matches_an_uninterrupted_one(tmp_path):
    overrides = QUICK + ["averaging=[ema]", "averaging.ema.decay=0.8", "trainer.epochs=3"]
    reference = fit(build(compose_config(overrides), tmp_path / "reference"), context())

    class InterruptAfterFirstEpoch:
        def on_epoch_end(self, run, state, row):
            if row["epoch"] == 1:
                os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C does: the loop stops after this epoch

    folder = tmp_path / "interrupted"
    run = build(compose_config(overrides), folder)
    run.callbacks.append(InterruptAfterFirstEpoch())
    assert fit(run, context())["status"] == "interrupted"
    checkpoint = torch.load(folder / "checkpoint.pt", weights_only=True)
    assert any(name.endswith("ExponentialMovingAverage") for name in checkpoint["callbacks"])
    resumed = fit(build(compose_config(overrides), folder), context(), checkpoint)
    assert resumed["ema_test_acc"] == reference["ema_test_acc"]

    assert without_times(read_jsonl(folder / "metrics.jsonl")) == without_times(
        read_jsonl(tmp_path / "reference" / "metrics.jsonl")
    )


def test_lookahead_pulls_the_weights_to_the_slow_average_by_airbenchs_rule():
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    total, every = 40, 5
    lookahead = Lookahead(decay=0.9, every=every, power=3.0, start=0.25)
    run = SimpleNamespace(model=model, steps_per_epoch=20, total_steps=total)
    lookahead.on_train_start(run, {"step": 0})
    generator = torch.Generator().manual_seed(0)
    slow = None
    for step in range(1, total + 1):
        with torch.no_grad():  # an optimizer step: new weights and statistics
            for tensor in [*model.parameters(), model[1].running_mean]:
                tensor.add_(torch.randn(tensor.shape, generator=generator))
        trained = {key: value.clone() for key, value in model.state_dict().items()}
        lookahead.on_step_end(run, {"step": step - 1}, None)
        after = model.state_dict()
        if step < 10 or (slow is None and step % every):  # before start, the weights are left alone
            assert all(torch.equal(after[key], trained[key]) for key in trained), step
            continue
        if slow is None:  # the first average is the weights at the start
            slow = {key: value.clone() for key, value in trained.items() if value.is_floating_point()}
        elif step % every == 0:
            rho = 0.9**every * (step / total) ** 3
            slow = {key: rho * slow[key] + (1 - rho) * trained[key] for key in slow}
        if step % every == 0 or step % 20 == 0:  # the network continues from the slow weights
            for key in slow:
                assert torch.allclose(after[key], slow[key], atol=1e-6), (step, key)
        else:
            assert all(torch.equal(after[key], trained[key]) for key in trained), step


def test_lookahead_hands_the_slow_weights_over_at_the_end_of_a_last_epoch_cut_short():
    # A time budget's 37 steps of 20 an epoch: the run ends 3 steps after an average, inside its second epoch.
    model = nn.Linear(3, 2)
    lookahead = Lookahead(decay=0.9, every=5, power=3.0, start=0.0)
    run = SimpleNamespace(model=model, steps_per_epoch=20, total_steps=37)
    lookahead.on_train_start(run, {"step": 0})
    for step in range(37):
        with torch.no_grad():
            model.weight.add_(1.0)
        lookahead.on_step_end(run, {"step": step}, None)
    # The last evaluation sees the slow weights, as at the end of every whole epoch.
    assert torch.equal(model.weight, lookahead.slow[0])


def test_lookahead_is_checkpointed_and_a_resumed_run_matches_an_uninterrupted_one(tmp_path):
    overrides = QUICK + ["averaging=[lookahead]", "averaging.lookahead.decay=0.9", "trainer.epochs=3"]
    overrides += ["data.batch_size=20"]
    reference = fit(build(compose_config(overrides), tmp_path / "reference"), context())

    class InterruptAfterSecondEpoch:
        def on_epoch_end(self, run, state, row):
            if row["epoch"] == 2:
                os.kill(os.getpid(), signal.SIGINT)

    folder = tmp_path / "interrupted"
    run = build(compose_config(overrides), folder)
    run.callbacks.append(InterruptAfterSecondEpoch())
    assert fit(run, context())["status"] == "interrupted"
    checkpoint = torch.load(folder / "checkpoint.pt", weights_only=True)
    assert checkpoint["callbacks"]["0.Lookahead"]["slow"] is not None
    resumed = fit(build(compose_config(overrides), folder), context(), checkpoint)
    assert resumed["test_acc"] == reference["test_acc"] and resumed["test_loss"] == reference["test_loss"]


@pytest.mark.parametrize(("cycle_epochs", "multiplier"), [(1, 1.0), (1.5, 2.0), (0.5, 1.5)])
def test_cycle_ends_are_where_the_schedule_restarts(cycle_epochs, multiplier):
    steps_per_epoch, epochs = 4, 10
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = cosine_restarts(
        optimizer, steps_per_epoch, epochs, cycle_epochs=cycle_epochs, cycle_multiplier=multiplier
    )
    rates = []
    for _ in range(steps_per_epoch * epochs + 1):
        rates.append(optimizer.param_groups[0]["lr"])  # the rate of step `index`
        optimizer.step()
        schedule.step()
    restarts = [index for index in range(1, len(rates)) if rates[index] > rates[index - 1]]
    ends = [index for index in restarts if index <= steps_per_epoch * epochs]
    assert cycle_ends(steps_per_epoch, epochs, cycle_epochs, multiplier) == ends
    assert schedule.cycle_ends == ends  # what the snapshot ensemble asks the schedule for


def test_snapshot_ensemble_scores_the_cycle_ends_by_hand(tmp_path):
    overrides = QUICK + ["schedule=cosine_restarts", "schedule.cycle_epochs=1", "averaging=[snapshots]"]
    run = build(compose_config(overrides + ["trainer.epochs=3"]), tmp_path)
    summary = fit(run, context())
    labels = np.load(tmp_path / "test_labels.npy")
    snapshots = [np.load(tmp_path / SnapshotEnsemble.file_name(cycle)).astype(np.float64) for cycle in (1, 2, 3)]
    probabilities = [np.exp(s - s.max(1, keepdims=True)) for s in snapshots]
    probabilities = [p / p.sum(1, keepdims=True) for p in probabilities]
    by_hand = float((np.mean(probabilities, axis=0).argmax(1) == labels).mean())
    assert summary["snapshot_ensemble_acc"] == pytest.approx(by_hand)
    assert [snapshot["epoch"] for snapshot in summary["snapshots"]] == [1, 2, 3]
    assert [snapshot["test_acc"] for snapshot in summary["snapshots"]] == pytest.approx(
        [float((s.argmax(1) == labels).mean()) for s in snapshots]
    )
    # The last cycle ends with the run: its snapshot is the final model.
    assert np.array_equal(snapshots[-1], np.load(tmp_path / "test_logits.npy").astype(np.float64))
    assert json.loads((tmp_path / "summary.json").read_text())["snapshot_ensemble_acc"] == pytest.approx(by_hand)


def test_snapshots_need_a_schedule_with_at_least_two_cycles(tmp_path):
    with pytest.raises(ConfigError, match="cosine_restarts"):
        fit(build(compose_config(QUICK + ["averaging=[snapshots]"]), tmp_path / "cosine"), context())
    with pytest.raises(ConfigError, match="at least 2"):
        fit(build(compose_config(QUICK + ["averaging=[snapshots]", "schedule=cosine_restarts"]), tmp_path), context())


def test_none_averages_nothing_and_what_changes_training_runs_before_what_watches_it(tmp_path):
    assert build(compose_config(QUICK + ["averaging=[none]"]), tmp_path / "none").callbacks == []
    # Listed EMA first, the EMA still averages the weights lookahead leaves, which training goes on from.
    run = build(compose_config(QUICK + ["averaging=[ema,lookahead]"]), tmp_path / "both")
    assert [type(callback) for callback in run.callbacks] == [Lookahead, ExponentialMovingAverage]


def test_precise_norms_average_the_batch_statistics_of_training_batches(tmp_path):
    from runner.callbacks.averaging import PreciseNorms

    run = build(compose_config(QUICK + ["averaging=[precise_bn]", "averaging.precise_bn.batches=2"]), tmp_path)
    summary = fit(run, context())
    callback = next(callback for callback in run.callbacks if isinstance(callback, PreciseNorms))
    network = callback.recalibrated(run)
    first_norm = next(m for m in network.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm))
    # By hand: the mean, over the first two training batches, of each batch's per-channel mean at that layer.
    inputs = []
    handle = next(
        m for m in run.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
    ).register_forward_hook(lambda module, args, output: inputs.append(args[0].detach()))
    run.model.train()
    with torch.no_grad():
        for start in (0, run.batch_size):
            run.model(run.splits.train_images[start : start + run.batch_size])
    handle.remove()
    expected = torch.stack([batch.mean(dim=(0, 2, 3)) for batch in inputs]).mean(0)
    assert torch.allclose(first_norm.running_mean, expected, atol=1e-5)
    assert summary["precise_bn_test_acc"] == read_jsonl(tmp_path / "metrics.jsonl")[-1]["precise_bn_test_acc"]
    # The run's own network is left as it was: the copy was recalibrated.
    assert not torch.allclose(
        first_norm.running_mean,
        next(m for m in run.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)).running_mean,
    )
