"""What a run says about its own pace (runner.pace), on a clock the test moves: the whole run's estimate after
the first window with the CPU recipe when it is long, the time left after the first epoch, and one notice when
the speed halves or the load is above the cores."""

import logging

import pytest

from runner.pace import WINDOW_S, Pace, duration


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def steps(pace: Pace, clock: Clock, count: int, images: int, seconds: float) -> None:
    for _ in range(count):
        clock.now += seconds
        pace.step(images)


def test_durations_read_as_a_person_says_them():
    assert [duration(s) for s in (12.4, 250, 3600 * 2 + 5 * 60)] == ["12 s", "4 min 10 s", "2 h 05 min"]


def test_the_first_window_gives_the_whole_run_and_a_long_cpu_run_points_at_the_cpu_recipe(caplog):
    clock = Clock()
    # 30 epochs of 50,000 images at 100 images per 0.25 s (400 images/s): about 62 minutes.
    pace = Pace(total_images=30 * 50000, epochs=30, on_cpu=True, clock=clock, load=lambda: 1.0, cores=2)
    with caplog.at_level(logging.INFO, logger="runner"):
        steps(pace, clock, count=int(WINDOW_S / 0.25), images=100, seconds=0.25)
    (message,) = [record.getMessage() for record in caplog.records]
    assert message.startswith("Training at 400 images/s: the 30 epochs take about 1 h 02 min, plus evaluation.")
    assert "experiment=cpu_quick" in message
    caplog.clear()
    short = Pace(total_images=4000, epochs=1, on_cpu=True, clock=clock, load=lambda: 1.0, cores=2)
    with caplog.at_level(logging.INFO, logger="runner"):
        steps(short, clock, count=int(WINDOW_S / 0.25), images=100, seconds=0.25)
    assert "cpu_quick" not in caplog.text  # a short run needs no advice
    assert "Training at 400 images/s: the epoch takes about" in caplog.text  # one epoch, said as one


@pytest.mark.parametrize(("seconds", "load", "warned"), [(0.25, 1.0, False), (0.6, 1.0, True), (0.25, 3.5, True)])
def test_a_shared_cpu_is_named_once_when_the_speed_halves_or_the_load_is_above_the_cores(seconds, load, warned, caplog):
    clock = Clock()
    pace = Pace(total_images=10**6, epochs=10, on_cpu=True, clock=clock, load=lambda: load, cores=2)
    steps(pace, clock, count=40, images=100, seconds=0.25)  # two windows at full speed
    with caplog.at_level(logging.WARNING, logger="runner"):
        steps(pace, clock, count=60, images=100, seconds=seconds)  # then slower, or with a busy machine
    notices = [record.getMessage() for record in caplog.records if "sharing the CPU" in record.getMessage()]
    assert len(notices) == (1 if warned else 0)
    if warned:
        assert "trainer.threads=1" in notices[0] and "OMP_NUM_THREADS=1" in notices[0]
        assert f"load average {load:.1f} on 2 cores" in notices[0]
        assert ("its speed fell from 400 to" in notices[0]) == (seconds > 0.25)
    # A GPU run is not told about the CPU.
    gpu = Pace(total_images=10**6, epochs=10, on_cpu=False, clock=clock, load=lambda: 9.0, cores=2)
    steps(gpu, clock, count=100, images=100, seconds=0.6)
    assert not gpu.warned


def test_after_the_first_epoch_the_time_left_is_said_once(caplog):
    pace = Pace(total_images=1000, epochs=5, on_cpu=True, clock=Clock(), load=lambda: None, cores=2)
    with caplog.at_level(logging.INFO, logger="runner"):
        pace.epoch_end(1, 4, epoch_time=48.0, eval_time=2.0)
        pace.epoch_end(2, 3, epoch_time=48.0, eval_time=2.0)
        # A run resumed after epoch 30 of 50: the numbers count from the run's start, the time left from now.
        resumed = Pace(total_images=1000, epochs=20, on_cpu=True, clock=Clock(), load=lambda: None, cores=2)
        resumed.epoch_end(31, 19, epoch_time=1.0, eval_time=None)
        # A time budget's 3.46 epochs: the last is part of one.
        budget = Pace(total_images=1000, epochs=3.46, on_cpu=True, clock=Clock(), load=lambda: None, cores=2)
        budget.epoch_end(1, 2.46, epoch_time=100.0, eval_time=None)
    assert [record.getMessage() for record in caplog.records] == [
        "Epoch 1 took 48 s (evaluation 2 s): about 3 min 20 s left for the other 4 epochs.",
        "Epoch 31 took 1 s: about 19 s left for the other 19 epochs, plus their evaluations.",
        "Epoch 1 took 1 min 40 s: about 4 min 06 s left for the other 2.46 epochs, plus their evaluations.",
    ]
