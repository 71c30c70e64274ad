"""The training loop (runner.loop): the same seed repeats exactly, divergence stops a run with its records,
test evaluation every N epochs, the epoch-end callbacks' seconds, the device warm-up leaves every state as it
was, and float16 loss scaling."""

import json
import time
from types import SimpleNamespace

import torch

from runner.callbacks.diagnostics import Diagnostics
from runner.files import read_jsonl
from runner.loop import evaluation_time, optimize
from tests.conftest import SMALL_MODEL, train_in_process, without_times


def test_same_seed_repeats_exactly_and_another_seed_differs(tmp_path):
    def metrics(folder, seed):
        train_in_process(SMALL_MODEL + ["trainer.epochs=2", f"seed={seed}"], folder)
        return without_times(read_jsonl(folder / "metrics.jsonl"))

    first = metrics(tmp_path / "a", 3)
    assert first == metrics(tmp_path / "b", 3)
    assert first != metrics(tmp_path / "c", 4)


def test_divergence_stops_the_run_with_its_records(tmp_path):
    overrides = [
        "model=mlp",
        "norm=none",
        "optimizer=sgd",
        "optimizer.lr=50",
        "trainer.epochs=3",
        "trainer.log_every=1",
    ]
    summary = train_in_process(overrides, tmp_path)
    assert summary["status"] == "diverged"
    assert summary["epochs_completed"] < 3
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "diverged"


def test_eval_every_tests_every_nth_epoch_and_always_the_last(tmp_path):
    summary = train_in_process([*SMALL_MODEL, "trainer.epochs=5", "trainer.eval_every=2"], tmp_path)
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    assert [("test_acc" in row) for row in rows] == [False, True, False, True, True]
    assert all("train_loss" in row for row in rows)
    assert summary["test_acc"] == rows[-1]["test_acc"]
    assert summary["best_test_acc"] == max(rows[1]["test_acc"], rows[3]["test_acc"], rows[4]["test_acc"])


def test_each_epoch_records_its_callbacks_seconds_and_the_time_left_counts_them(tmp_path, monkeypatch):
    measure = Diagnostics.on_epoch_end

    def slow(self, run, state, row):
        time.sleep(0.3)
        measure(self, run, state, row)

    monkeypatch.setattr(Diagnostics, "on_epoch_end", slow)
    train_in_process([*SMALL_MODEL, "trainer.epochs=2"], tmp_path / "on")
    rows = read_jsonl(tmp_path / "on" / "metrics.jsonl")
    assert all(row["callbacks_time_s"] >= 0.3 and "train_eval_acc" in row for row in rows)
    assert evaluation_time(rows[0]) == rows[0]["eval_time_s"] + rows[0]["callbacks_time_s"]
    # No callback, no column; an epoch without its test evaluation has no evaluation time yet.
    train_in_process([*SMALL_MODEL, "trainer.epochs=2", "trainer.eval_every=2", "diagnostics=off"], tmp_path / "off")
    rows = read_jsonl(tmp_path / "off" / "metrics.jsonl")
    assert not any("callbacks_time_s" in row for row in rows)
    assert evaluation_time(rows[0]) is None and evaluation_time(rows[1]) == rows[1]["eval_time_s"]


def test_a_loss_that_explodes_between_two_reads_is_caught_by_the_running_mean(tmp_path):
    # Read only at each epoch's last step: the loss explodes, the ReLUs die and the last batch's loss is back
    # near ln(10). The epoch's running mean still shows the explosion.
    overrides = [
        "model=convnet",
        "model.widths=[8,16]",
        "norm=none",
        "init=kaiming",
        "regularizer=none",
        "data.train_size=1000",
        "optimizer.lr=3.0",
        "trainer.epochs=3",
        "trainer.log_every=1000",
    ]
    summary = train_in_process(overrides, tmp_path)
    assert summary["status"] == "diverged" and summary["epochs_completed"] == 0


def test_device_warmup_trains_throwaway_steps_and_puts_every_state_back(tmp_path, monkeypatch):
    # Dropout draws from the global stream, the flips and crops from the run's generator, momentum keeps
    # optimizer state and batch norm keeps running statistics: the warm-up must leave all of them as they were.
    overrides = SMALL_MODEL + ["trainer.epochs=2", "regularizer=[l2,dropout]", "optimizer=momentum"]
    steps = []
    original_step = torch.optim.SGD.step
    monkeypatch.setattr(torch.optim.SGD, "step", lambda self, *a, **k: steps.append(1) or original_step(self, *a, **k))

    def metrics(folder, warmup):
        steps.clear()
        summary = train_in_process(overrides + [f"trainer.device_warmup={warmup}"], folder)
        rows = without_times(read_jsonl(folder / "metrics.jsonl"))
        return rows, summary, len(steps)

    plain, plain_summary, plain_steps = metrics(tmp_path / "plain", "false")
    warmed, warmed_summary, warmed_steps = metrics(tmp_path / "warmed", "true")
    assert warmed == plain
    assert warmed_steps == plain_steps + 3
    assert warmed_summary["warmup_time_s"] > 0 and "warmup_time_s" not in plain_summary
    # auto warms up on CUDA only: on this CPU it is the plain run.
    assert metrics(tmp_path / "auto", "auto")[2] == plain_steps


def _float16_step(loss_factor: float, scaled: bool):
    """One step of a tiny linear model under float16 autocast on the CPU; returns the gradient the hooks saw,
    the weight before and after, and the scaler."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    run = SimpleNamespace(
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        scaler=torch.amp.GradScaler("cpu", enabled=scaled),
    )
    inputs = torch.randn(8, 4)
    with torch.autocast("cpu", dtype=torch.float16):
        outputs = model(inputs)
    seen = []
    before = model.weight.detach().clone()
    optimize(run, outputs.float().sum() * loss_factor, [lambda run, state: seen.append(model.weight.grad.clone())])
    return seen[0], inputs, before, model.weight.detach(), run.scaler


def test_float16_loss_scaling_keeps_the_gradients_that_float16_flushes_to_zero():
    # d(loss)/d(output) = 1e-8 is below float16's smallest number (6e-8): unscaled, every gradient is 0.
    gradient, inputs, _, _, _ = _float16_step(1e-8, scaled=False)
    assert torch.count_nonzero(gradient) == 0
    # Scaled by 65536 the backward pass keeps it, and the hooks see the true gradient, scaled back.
    gradient, inputs, before, after, scaler = _float16_step(1e-8, scaled=True)
    expected = (inputs.sum(0) * 1e-8).expand(2, 4)
    torch.testing.assert_close(gradient, expected, rtol=2e-2, atol=0)
    torch.testing.assert_close(after, before - 0.1 * gradient)
    assert scaler.get_scale() == 65536.0


def test_float16_loss_scaling_skips_a_step_whose_gradients_overflow_and_lowers_the_scale():
    # 1e6 x 65536 is past float16's largest number (65504): the step is skipped and the scale halved.
    _, _, before, after, scaler = _float16_step(1e6, scaled=True)
    assert torch.equal(after, before)
    assert scaler.get_scale() == 32768.0


def test_a_float16_run_checkpoints_its_loss_scale(tmp_path):
    summary = train_in_process(SMALL_MODEL + ["trainer.precision=fp16"], tmp_path)
    assert summary["status"] == "completed"
    checkpoint = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert checkpoint["scaler"]["scale"] > 0


class RecordingBar:
    """A stand-in for tqdm that records what the loop tells it."""

    made: list = []

    def __init__(self, iterable=None, **options):
        self.iterable, self.options, self.updates, self.n = iterable, options, [], 0
        RecordingBar.made.append(self)

    def __iter__(self):
        return iter(self.iterable)

    def update(self, count=1):
        self.updates.append(count)
        self.n += count

    def set_postfix(self, **values):
        self.postfix = values

    def close(self):
        pass


def test_the_bar_moves_at_every_step_and_reads_the_loss_every_log_every_steps(tmp_path, monkeypatch):
    import runner.evaluate
    import runner.loop

    RecordingBar.made = []
    monkeypatch.setattr(runner.loop, "tqdm", RecordingBar)
    monkeypatch.setattr(runner.evaluate, "tqdm", RecordingBar)
    train_in_process(SMALL_MODEL + ["trainer.log_every=50", "data.train_size=1000"], tmp_path)
    epoch_bar = next(bar for bar in RecordingBar.made if bar.options.get("unit") == "step")
    assert epoch_bar.updates == [1] * 20  # 20 steps, each one moves the bar, though the loss is read once
    assert set(epoch_bar.postfix) == {"loss", "acc", "lr"}
    evaluation_bar = next(bar for bar in RecordingBar.made if bar.options.get("desc") == "evaluating")
    assert evaluation_bar.options["delay"] == 2  # shown only when the evaluation lasts


def test_a_scheduler_signal_stops_the_run_and_then_reaches_the_handler_it_displaced():
    """SLURM (through submitit) sends SIGUSR2 before a job's time limit; submitit's own handler requeues the
    job. The run must stop cleanly first, then hand the signal on; SIGINT must not become KeyboardInterrupt."""
    import os
    import signal

    from runner.loop import StopRequest

    received = []
    displaced = signal.signal(signal.SIGUSR2, lambda number, frame: received.append(number))
    try:
        with StopRequest() as stop:
            os.kill(os.getpid(), signal.SIGUSR2)
            assert stop and stop.signal == signal.SIGUSR2 and received == []  # the run's flag, not the handler
        assert received == [signal.SIGUSR2]
    finally:
        signal.signal(signal.SIGUSR2, displaced)
    with StopRequest() as stop:  # Python's default SIGINT handler would raise KeyboardInterrupt: not called
        os.kill(os.getpid(), signal.SIGINT)
    assert stop.signal == signal.SIGINT
