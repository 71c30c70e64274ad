"""The logger group (runner.callbacks.loggers): with logger=tensorboard, every number of each epoch's metrics row
reaches TensorBoard's event files, at its epoch."""

import pytest

from runner.files import read_jsonl
from tests.conftest import SMALL_MODEL, compose_config, train_in_process

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

OPTIONS_TESTED = {"logger": {"none", "tensorboard"}}


def test_none_has_no_callback():
    assert "_target_" not in (compose_config([]).get("logger") or {})


def test_tensorboard_writes_the_metrics_rows_as_scalars(tmp_path):
    overrides = SMALL_MODEL + ["logger=tensorboard", "trainer.epochs=2", "averaging=[ema]", "diagnostics=off"]
    summary = train_in_process(overrides, tmp_path)
    assert summary["status"] == "completed"
    events = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert events, "no event file"
    accumulator = EventAccumulator(str(tmp_path / "tensorboard"))
    accumulator.Reload()
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    for key in ("train_loss", "test_acc", "lr", "ema_test_acc"):
        scalars = accumulator.Scalars(key)
        assert [scalar.step for scalar in scalars] == [1, 2], key
        assert [scalar.value for scalar in scalars] == pytest.approx([row[key] for row in rows], rel=1e-6), key
