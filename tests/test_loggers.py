"""The logger group (runner.callbacks.loggers), read back with each tool's own reader: with logger=tensorboard,
TensorBoard's event files hold every number of each epoch's metrics row at its epoch, the diagnostics per layer
and the HParams dashboard's settings and final metrics, under a run name that tells the jobs of a sweep apart;
with logger=mlflow, an MLflow tracking store holds the params, the metric history, the tags and the artifacts. A
resumed run goes on in the same TensorBoard run and the same MLflow run."""

import signal
import sys
import time

import pytest

from runner.errors import ConfigError
from runner.files import read_json, read_jsonl
from runner.loop import StopRequest, fit
from runner.resume import load_checkpoint
from runner.run import build
from tests.conftest import SMALL_MODEL, SMOKE, compose_config, run_entrypoint, train_in_process

OPTIONS_TESTED = {"logger": {"none", "tensorboard", "mlflow"}}
# A two-job sweep of two-epoch runs through the real entrypoint.
SWEEP = ["-m", "activation=relu,gelu", *[text for text in SMOKE if text != "trainer.epochs=1"], "trainer.epochs=2"]
SWEEP += SMALL_MODEL


def accumulator(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return events


def hparams_of(events) -> tuple[dict, list[str], str]:
    """The HParams plugin's view of one run: its settings, the experiment's metric names, the session status."""
    from tensorboard.plugins.hparams import api_pb2, metadata

    content = events.PluginTagToContent(metadata.PLUGIN_NAME)
    start = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
    settings = {key: getattr(value, value.WhichOneof("kind")) for key, value in start.hparams.items()}
    experiment = metadata.parse_experiment_plugin_data(content[metadata.EXPERIMENT_TAG])
    end = metadata.parse_session_end_info_plugin_data(content[metadata.SESSION_END_INFO_TAG])
    return settings, [info.name.tag for info in experiment.metric_infos], api_pb2.Status.Name(end.status)


class StopAfter:
    """A callback that asks the run to stop after ``epoch``, as SIGINT does."""

    def __init__(self, stop: StopRequest, epoch: int):
        self.stop, self.epoch = stop, epoch

    def on_epoch_end(self, run, state: dict, row: dict) -> None:
        if row["epoch"] == self.epoch:
            self.stop.signal = signal.SIGINT


def interrupt_and_resume(overrides, folder) -> dict:
    """Four epochs, checkpointed every two, stopped after the third (whose epoch is lost to the resume), then
    resumed from the checkpoint in a new build, as ``resume=FOLDER`` does; returns the final summary."""
    config = compose_config(SMOKE + SMALL_MODEL + ["trainer.epochs=4", "trainer.checkpoint_every=2", *overrides])
    context = {"choices": {"activation": "relu"}, "overrides": list(overrides), "seed": 0}
    run, stop = build(config, folder), StopRequest()
    run.callbacks.append(StopAfter(stop, 3))
    assert fit(run, {**context, "started": time.time()}, stop=stop)["status"] == "interrupted"
    checkpoint = load_checkpoint(folder / "checkpoint.pt")
    assert checkpoint["epoch"] == 2
    return fit(build(config, folder), {**context, "started": time.time()}, checkpoint)


def test_none_has_no_callback():
    assert "_target_" not in (compose_config([]).get("logger") or {})


def test_tensorboard_writes_the_metrics_rows_the_diagnostics_and_the_hparams(tmp_path):
    pytest.importorskip("tensorboard")
    summary = train_in_process(SMALL_MODEL + ["logger=tensorboard", "trainer.epochs=2", "averaging=[ema]"], tmp_path)
    assert summary["status"] == "completed"
    events = accumulator(tmp_path / "tensorboard" / "run")  # outside Hydra there is no sweep to name it by
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    for key in ("train_loss", "test_acc", "lr", "ema_test_acc"):
        scalars = events.Scalars(key)
        assert [scalar.step for scalar in scalars] == [1, 2], key
        assert [scalar.value for scalar in scalars] == pytest.approx([row[key] for row in rows], rel=1e-6), key
    tags = events.Tags()["scalars"]
    assert "step" not in tags and "epoch" not in tags

    # The diagnostics' last measurement of each epoch, per layer.
    activations = read_jsonl(tmp_path / "activations.jsonl")
    std = events.Scalars("activations/std/layer_1")
    assert [scalar.step for scalar in std] == [1, 2]
    assert std[-1].value == pytest.approx(activations[-1]["layers"][0]["std"], rel=1e-6)
    last_update = [row for row in read_jsonl(tmp_path / "updates.jsonl") if row["epoch"] == 2][-1]
    ratio = events.Scalars("update_ratio/layer_1")
    assert [scalar.step for scalar in ratio] == [1, 2]
    assert ratio[-1].value == pytest.approx(last_update["layers"][0]["update_ratio"], rel=1e-6)
    assert "gradient_norm/layer_1" in tags and "activations/dead_fraction/layer_1" in tags

    settings, metrics, status = hparams_of(events)
    assert settings["optimizer.lr"] == pytest.approx(0.1)
    assert settings["model.widths"] == "[8, 16]" and settings["trainer.channels_last"] == "true"
    assert not any(key.endswith("_target_") for key in settings)
    assert status == "STATUS_SUCCESS"
    for key in ("test_acc", "best_test_acc", "train_loss", "ema_test_acc"):
        assert f"final/{key}" in metrics, key
        assert events.Scalars(f"final/{key}")[-1].value == pytest.approx(summary[key], rel=1e-6), key


def test_tensorboard_resumed_run_shows_each_epoch_once_and_its_hparams_once(tmp_path):
    pytest.importorskip("tensorboard")
    summary = interrupt_and_resume(["logger=tensorboard", "diagnostics=off"], tmp_path)
    assert summary["status"] == "completed" and summary["resumes"] == 1
    (folder,) = (tmp_path / "tensorboard").iterdir()  # both attempts wrote into the one run
    assert len(list(folder.glob("events.out.tfevents.*"))) == 2
    events = accumulator(folder)
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    losses = events.Scalars("train_loss")
    assert [scalar.step for scalar in losses] == [1, 2, 3, 4]  # the lost epoch 3 once, as trained again
    assert [scalar.value for scalar in losses] == pytest.approx([row["train_loss"] for row in rows], rel=1e-6)
    # The final metrics come once, from the attempt that finished the run.
    assert [scalar.step for scalar in events.Scalars("final/test_acc")] == [4]
    settings, metrics, status = hparams_of(events)
    assert settings["activation"] == "relu" and settings["optimizer.lr"] == pytest.approx(0.1)
    assert "final/test_acc" in metrics
    assert status == "STATUS_SUCCESS"  # the interrupted attempt ended no session, so the finished one's stands


@pytest.mark.slow
def test_tensorboard_sweep_names_each_run_by_its_swept_settings(tmp_path):
    pytest.importorskip("tensorboard")
    sweep = tmp_path / "sweep"
    result = run_entrypoint([*SWEEP, "logger=tensorboard", f"hydra.sweep.dir={sweep}"], tmp_path / "outputs")
    assert result.returncode == 0, result.stderr[-3000:]
    runs = sorted(path.relative_to(sweep).as_posix() for path in sweep.glob("*/tensorboard/*"))
    assert runs == ["0/tensorboard/activation=relu", "1/tensorboard/activation=gelu"]
    for run in runs:
        summary = read_json(sweep / run.split("/")[0] / "summary.json")
        events = accumulator(sweep / run)
        settings, metrics, status = hparams_of(events)
        assert settings["activation"] == run.rsplit("=", 1)[1] and settings["optimizer.lr"] == pytest.approx(0.1)
        assert status == "STATUS_SUCCESS" and "final/best_test_acc" in metrics
        assert events.Scalars("final/best_test_acc")[-1].value == pytest.approx(summary["best_test_acc"], rel=1e-6)
        assert [scalar.step for scalar in events.Scalars("test_acc")] == [1, 2]


@pytest.fixture
def mlflow_client(monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.setenv("DO_NOT_TRACK", "true")  # no usage telemetry from tests
    from mlflow.tracking import MlflowClient

    return MlflowClient


def test_mlflow_is_refused_with_the_install_command_when_it_is_missing(monkeypatch):
    from runner.callbacks.loggers import MLflow

    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow raises ImportError
    with pytest.raises(ConfigError, match=r'pip install -e "\.\[mlflow\]"'):
        MLflow()


@pytest.mark.slow
def test_mlflow_resumed_run_goes_on_in_its_mlflow_run(tmp_path, monkeypatch, mlflow_client):
    monkeypatch.setenv("RUNNER_OUTPUTS", str(tmp_path / "outputs"))  # the default store: <outputs>/mlflow.db
    long_root = "x" * 7000
    summary = interrupt_and_resume(["logger=mlflow", "diagnostics=off", f"+note={long_root}"], tmp_path / "run")
    assert summary["status"] == "completed"
    client = mlflow_client(f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}")
    (found,) = client.search_runs([client.get_experiment_by_name("runner").experiment_id])
    assert found.info.status == "FINISHED" and found.data.tags["status"] == "completed"
    assert found.data.tags["activation"] == "relu"
    assert found.data.params["note"] == long_root[:6000]  # MLflow's limit, cut rather than refused
    assert found.data.params["optimizer.lr"] == "0.1" and found.data.params["model.widths"] == "[8, 16]"
    # Epoch 3 was trained twice (the checkpoint held 2): MLflow cannot forget a point, so the step has two, the
    # last being the resumed run's, and every epoch is there.
    rows = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    history = client.get_metric_history(found.info.run_id, "train_loss")
    assert sorted({point.step for point in history}) == [1, 2, 3, 4]
    last = {point.step: point.value for point in sorted(history, key=lambda point: point.timestamp)}
    assert [last[step] for step in (1, 2, 3, 4)] == pytest.approx([row["train_loss"] for row in rows], rel=1e-6)
    assert found.data.metrics["final/best_test_acc"] == pytest.approx(summary["best_test_acc"])
    artifacts = {entry.path for entry in client.list_artifacts(found.info.run_id)}
    assert {"summary.json", "metrics.jsonl"} <= artifacts and "checkpoint.pt" not in artifacts
    assert (tmp_path / "outputs" / "mlflow-artifacts").is_dir()


@pytest.mark.slow
def test_mlflow_sweep_logs_each_run_with_its_params_history_and_artifacts(tmp_path, mlflow_client):
    sweep, outputs = tmp_path / "sweep", tmp_path / "outputs"
    store = f"sqlite:///{tmp_path / 'store' / 'tracking.db'}"
    arguments = [*SWEEP, "logger=mlflow", f"logger.tracking_uri={store}", "logger.log_checkpoint=true"]
    result = run_entrypoint([*arguments, f"hydra.sweep.dir={sweep}"], outputs, env_extra={"DO_NOT_TRACK": "true"})
    assert result.returncode == 0, result.stderr[-3000:]
    client = mlflow_client(store)
    experiment = client.get_experiment_by_name("sweep")  # the sweep folder's name: it is outside the outputs
    runs = {run.info.run_name: run for run in client.search_runs([experiment.experiment_id])}
    assert sorted(runs) == ["activation=gelu", "activation=relu"]
    for name, found in runs.items():
        job = sweep / found.data.tags["runner.output_dir"].rsplit("/", 1)[1]
        summary, rows = read_json(job / "summary.json"), read_jsonl(job / "metrics.jsonl")
        assert found.data.tags["activation"] == name.split("=")[1] == summary["choices"]["activation"]
        assert found.data.params["optimizer.lr"] == "0.1" and found.info.status == "FINISHED"
        history = client.get_metric_history(found.info.run_id, "test_acc")
        assert [(point.step, point.value) for point in history] == [
            (row["epoch"], pytest.approx(row["test_acc"])) for row in rows
        ]
        assert found.data.metrics["final/test_acc"] == pytest.approx(summary["test_acc"])
        artifacts = {entry.path for entry in client.list_artifacts(found.info.run_id)}
        assert {"summary.json", "metrics.jsonl", "config.json", "checkpoint.pt"} <= artifacts
    assert (tmp_path / "store" / "mlflow-artifacts").is_dir() and not (outputs / "mlflow.db").exists()
