"""Optional loggers (``logger=tensorboard``, ``logger=mlflow``), as loop callbacks (``runner.callbacks``).

The run's own records (``metrics.jsonl``, ``summary.json``) are always written; a logger copies them to a tool
with a viewer that compares runs: each epoch's metrics row, the run's settings and its final metrics.
``tensorboard --logdir outputs`` shows every run and sweep job; MLflow keeps them in a tracking store.

A run is named by what tells it from the other jobs of its sweep: its values of the swept settings
(``activation=gelu,seed=1``), else its job number; a single run by its command line's overrides.
"""

from __future__ import annotations

import contextlib
import json
import logging
import numbers
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf

from runner import outputs_dir
from runner.errors import ConfigError
from runner.files import plain, read_json_or_none

log = logging.getLogger("runner")

# Keys of a metrics row that are not metrics: the epoch is the x axis, and the global step count says nothing
# an epoch's number does not.
NOT_METRICS = ("epoch", "step")
# The summary's numbers that say how a run ended, besides its accuracies and losses (*_acc, *_loss).
FINAL_EXTRAS = ("epochs_completed", "train_time_s", "wall_time_s", "images_per_s")
# The diagnostics' files (runner.callbacks.diagnostics), by the prefix of their tags.
DIAGNOSTICS = {"activations/": "activations.jsonl", "": "updates.jsonl"}
# A finished run's status as the HParams dashboard's session status.
SESSION_STATUS = {"completed": "STATUS_SUCCESS", "diverged": "STATUS_FAILURE"}


def is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def final_metrics(summary: dict) -> dict[str, float]:
    """The summary's outcome (test_acc, best_test_acc, val_acc, train_loss, ema_test_acc, initial_loss, ...,
    the epochs and times) as ``final/<key>``, so that it stands apart from the per-epoch curves of the same names."""
    return {
        f"final/{key}": float(value)
        for key, value in summary.items()
        if is_number(value) and (key.endswith(("_acc", "_loss")) or key in FINAL_EXTRAS)
    }


def flat_settings(config: DictConfig) -> dict:
    """The resolved config as dotted keys (``optimizer.lr``) to plain values."""

    def flatten(node: dict, prefix: str) -> Iterator[tuple[str, object]]:
        for key, value in node.items():
            if isinstance(value, dict):
                yield from flatten(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}", value

    return dict(flatten(OmegaConf.to_container(config, resolve=True), ""))


def setting(override: str) -> str:
    """The key an override sets: ``optimizer.lr`` for ``optimizer.lr=0.1`` (and for ``+optimizer.lr=0.1``)."""
    return override.split("=", 1)[0].lstrip("+~")


def swept_settings(hydra) -> set[str]:
    """The keys a multirun sweeps: its sweeper's ``params`` (an experiment's sweep, an Optuna search space) and
    the command line's sweep overrides (``activation=relu,gelu``), which Hydra's basic sweeper keeps in the sweep
    folder's ``multirun.yaml``."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    keys = {setting(str(key)) for key in (hydra.sweeper.get("params") or {})}
    try:
        record = yaml.safe_load((Path(hydra.sweep.dir) / "multirun.yaml").read_text())
        command = [str(text) for text in record["hydra"]["overrides"]["task"]]
        keys.update(
            override.key_or_group.lstrip("+~")
            for override in OverridesParser.create().parse_overrides(command)
            if override.is_sweep_override()
        )
    except Exception:  # noqa: BLE001 - another sweeper, or a record it cannot read: the params and job number do
        pass
    return keys


def run_name(overrides: list[str] | None = None) -> str | None:
    """What tells this job from the others of its sweep: its values of the swept settings
    (``activation=gelu,seed=1``), or its job number where no swept setting is known; for a single run, the
    ``overrides`` of the command that started it. ``overrides``: those of this job (Hydra's when not given).
    None outside Hydra, or for a single run with no override."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hydra = HydraConfig.get()
    if overrides is None:
        overrides = list(hydra.overrides.task)
    if hydra.mode == RunMode.MULTIRUN:
        swept = swept_settings(hydra)
        return ",".join(text for text in overrides if setting(text) in swept) or str(hydra.job.num)
    return ",".join(text for text in overrides if setting(text) != "resume") or None


def file_name(name: str) -> str:
    """``name`` as one folder name: what a file system or a shell would trip on becomes ``_``."""
    return re.sub(r"[^\w.,=+-]", "_", name)[:200]


class NewRows:
    """The rows appended to a JSON-lines file since the last read: a file that grows by a row per sampled step
    is read once, not once per epoch."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = 0

    def read(self) -> list[dict]:
        if not self.path.exists():
            return []
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            data = handle.read()
        whole = data[: data.rfind(b"\n") + 1]  # a line still being written is read next time
        self.offset += len(whole)
        return [json.loads(line) for line in whole.splitlines() if line.strip()]


class TensorBoard:
    """Each epoch's metrics row as scalars (tag = the metrics.jsonl key, step = the epoch), the diagnostics' per
    layer measurements, and the run's hyperparameters with its final metrics for the HParams dashboard, written
    with ``torch.utils.tensorboard.SummaryWriter`` into ``<run folder>/<folder>/<run name>``."""

    def __init__(self, folder: str = "tensorboard"):
        try:
            import tensorboard  # noqa: F401 - SummaryWriter needs it, and a missing one should say so now
        except ImportError:
            raise ConfigError(
                'logger=tensorboard needs the tensorboard package: pip install -e ".[tensorboard]"'
            ) from None
        self.folder = folder
        self.writer = None
        self.hparams: dict = {}
        self.diagnostics: dict[str, NewRows] = {}

    def open(self, run, first_epoch: int, record: dict) -> None:
        """The writer, and the HParams session's start. ``record``: the run's summary so far, whose choices and
        overrides are those of the command that started the run, also when it is resumed."""
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        base = Path(run.recorder.folder) / self.folder
        earlier = [path for path in base.iterdir() if path.is_dir()] if base.is_dir() else []
        # A resumed run goes on where its earlier attempts wrote: one run for TensorBoard, whatever its name.
        name = earlier[0].name if len(earlier) == 1 else file_name(run_name(record.get("overrides")) or "run")
        # purge_step hides events a killed attempt wrote at this epoch or later, so a resumed run's curves
        # show each epoch once.
        self.writer = SummaryWriter(log_dir=str(base / name), purge_step=first_epoch)
        self.hparams = hyperparameters(run.config, record.get("choices") or {})
        # Every attempt starts its session. TensorBoard keeps the first metadata of a tag in a run, so the
        # first attempt's start stands, and the same settings are there again in each event file.
        _, session_start, _ = hparams(self.hparams, {})
        self.writer.file_writer.add_summary(session_start)
        self.diagnostics = {prefix: NewRows(run.recorder.path(file)) for prefix, file in DIAGNOSTICS.items()}

    def on_epoch_end(self, run, state: dict, row: dict) -> None:
        if self.writer is None:
            self.open(run, row["epoch"], read_json_or_none(run.recorder.path("summary.json")) or {})
        for key, value in row.items():
            if key not in NOT_METRICS and is_number(value):
                self.writer.add_scalar(key, float(value), global_step=row["epoch"])
        self.write_diagnostics(row["epoch"])
        self.writer.flush()  # a live TensorBoard sees each epoch as it ends

    def write_diagnostics(self, epoch: int) -> None:
        """The diagnostics callback's last measurement of this epoch (it runs before the loggers), one scalar
        per layer, named so the dashboard groups them by measurement: activations/std/layer_3,
        update_ratio/layer_3, gradient_norm/layer_3."""
        for prefix, rows in self.diagnostics.items():
            measured = [row for row in rows.read() if row.get("epoch") == epoch]
            for layer in measured[-1]["layers"] if measured else []:
                for key, value in layer.items():
                    if key != "layer" and is_number(value):
                        self.writer.add_scalar(f"{prefix}{key}/layer_{layer['layer']}", float(value), epoch)

    def on_train_end(self, run, state: dict, summary: dict) -> None:
        from torch.utils.tensorboard.summary import hparams

        if self.writer is None:  # no epoch ended in this attempt (diverged in its first epoch, or stopped)
            self.open(run, state["epoch"] + 1, summary)
        # An interrupted run will be resumed: its session ends, with its final metrics, in the attempt that
        # finishes it. TensorBoard shows the first session end written, and the final metrics of an interrupted
        # attempt would stay beside the finished one's (TensorBoard's fast loader only replaces points at or after
        # a new one's step).
        if summary["status"] != "interrupted":
            metrics = final_metrics(summary)
            for tag, value in metrics.items():
                self.writer.add_scalar(tag, value, global_step=summary["epochs_completed"])
            experiment, _, _ = hparams(self.hparams, metrics)
            self.writer.file_writer.add_summary(experiment)
            self.writer.file_writer.add_summary(session_end(SESSION_STATUS.get(summary["status"], "STATUS_UNKNOWN")))
        self.writer.close()
        self.writer = None


def hyperparameters(config: DictConfig, choices: dict) -> dict:
    """What the HParams dashboard compares: each group's choice (``activation: gelu``) and every resolved setting
    that is a number, a string, a bool or a list (as text), but the ``_target_`` (the choice says it better)."""
    values = {}
    for key, value in flat_settings(config).items():
        if value is None or key.rsplit(".", 1)[-1].startswith("_"):
            continue
        if isinstance(value, (bool, list)):
            value = json.dumps(value)  # torch's hparams() would take a bool for a number: true, as in the YAML
        if isinstance(value, (numbers.Real, str)):
            values[key] = value
    values.update({group: str(choice) for group, choice in choices.items() if choice is not None})
    return values


def session_end(status: str):
    """The HParams plugin's session end with its status (``torch.utils.tensorboard.summary.hparams`` only writes
    success, and a diverged run is the failure a comparison looks for)."""
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    info = plugin_data_pb2.SessionEndInfo(status=api_pb2.Status.Value(status), end_time_secs=time.time())
    content = metadata.create_summary_metadata(plugin_data_pb2.HParamsPluginData(session_end_info=info))
    return Summary(value=[Summary.Value(tag=metadata.SESSION_END_INFO_TAG, metadata=content)])


# MLflow's limits on a param (mlflow.utils.validation): longer keys and values are refused, so they are cut.
PARAM_KEY_LENGTH, PARAM_VALUE_LENGTH, PARAMS_PER_BATCH = 250, 6000, 100
# A finished run's status as MLflow's: an interrupted run is KILLED until its resume reopens it.
RUN_STATUS = {"completed": "FINISHED", "diverged": "FAILED", "interrupted": "KILLED"}


def tracking_store(tracking_uri: str | None) -> tuple[str, str | None]:
    """The tracking URI and where a new experiment keeps its artifacts: by default a SQLite database in the
    outputs folder with the artifacts beside it; any ``sqlite:///PATH`` with its artifacts beside it; another
    store (a tracking server) with its own artifact root."""
    if tracking_uri is None:
        folder = Path(outputs_dir()).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{folder / 'mlflow.db'}", (folder / "mlflow-artifacts").as_uri()
    if tracking_uri.startswith("sqlite:///"):
        database = Path(tracking_uri.removeprefix("sqlite:///")).resolve()
        database.parent.mkdir(parents=True, exist_ok=True)  # SQLite creates the file, not its folder
        return tracking_uri, (database.parent / "mlflow-artifacts").as_uri()
    return tracking_uri, None


@contextlib.contextmanager
def store_lock(tracking_uri: str) -> Iterator[None]:
    """One process at a time opens a SQLite store, which creates its tables when it is new: the jobs of a
    parallel sweep start together, and a second one migrating the same new database fails."""
    if not tracking_uri.startswith("sqlite:///"):
        yield
        return
    import fcntl  # POSIX only; imported here so that the rest of this module loads everywhere

    with open(f"{tracking_uri.removeprefix('sqlite:///')}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def default_experiment() -> str:
    """``runner``, or in a multirun its sweep folder (``multirun/2024-05-01/10-00-00-000000`` under the
    outputs folder), so that each sweep is one experiment to compare."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return "runner"
    sweep = Path(HydraConfig.get().sweep.dir).resolve()
    outputs = Path(outputs_dir()).resolve()
    return str(sweep.relative_to(outputs)) if sweep.is_relative_to(outputs) else sweep.name


class MLflow:
    """The resolved config as params, each epoch's metrics row as metrics (step = the epoch), and at the end the
    final metrics, the status and the choices (as tags) and the run folder's files as artifacts, into an MLflow
    tracking store (``runner.callbacks.loggers.tracking_store``). A resumed run goes on in its MLflow run: its id
    travels in the checkpoint."""

    def __init__(self, tracking_uri: str | None = None, experiment: str | None = None, log_checkpoint: bool = False):
        # A run sends nothing off the machine that it was not asked to: MLflow's usage telemetry stays off
        # unless the user turns it on (MLFLOW_DISABLE_TELEMETRY=false).
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        try:
            import mlflow  # noqa: F401 - a missing one should say so before the run starts
        except ImportError:
            raise ConfigError('logger=mlflow needs the mlflow package: pip install -e ".[mlflow]"') from None
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.log_checkpoint = log_checkpoint
        self.client = None
        self.artifacts: str | None = None
        self.run_id: str | None = None
        self.started = False

    def on_train_start(self, run, state: dict) -> None:
        # The client and not mlflow's fluent API: no process-wide active run, which jobs in one process share.
        from mlflow.tracking import MlflowClient

        uri, self.artifacts = tracking_store(self.tracking_uri)
        with store_lock(uri):
            self.client = MlflowClient(uri)
            self.client.search_experiments(max_results=1)  # creates a new store's tables, under the lock
        if state["step"] == 0:  # a resumed run reopens its MLflow run once load_state_dict has given its id
            self.start(run)

    def start(self, run) -> None:
        from mlflow.entities import Param
        from mlflow.exceptions import MlflowException

        self.started = True
        if self.run_id is not None:
            try:
                self.client.update_run(self.run_id, status="RUNNING")
                return
            except MlflowException as error:
                log.warning("mlflow: cannot reopen run %s (%s); logging to a new run.", self.run_id, error)
        created = self.client.create_run(
            self.experiment_id(), run_name=run_name(), tags={"runner.output_dir": str(run.recorder.folder)}
        )
        self.run_id = created.info.run_id
        params = [
            Param(key[:PARAM_KEY_LENGTH], (value if isinstance(value, str) else json.dumps(value))[:PARAM_VALUE_LENGTH])
            for key, value in flat_settings(run.config).items()
        ]
        for first in range(0, len(params), PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=params[first : first + PARAMS_PER_BATCH])

    def experiment_id(self) -> str:
        from mlflow.exceptions import MlflowException

        name = self.experiment or default_experiment()
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        try:
            return self.client.create_experiment(name, artifact_location=self.artifacts)
        except MlflowException:  # another job of the sweep created it first
            return self.client.get_experiment_by_name(name).experiment_id

    def log_metrics(self, metrics: dict, step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(key, value, now, step) for key, value in metrics.items()])

    def on_epoch_end(self, run, state: dict, row: dict) -> None:
        if not self.started:
            self.start(run)
        metrics = {key: float(value) for key, value in row.items() if key not in NOT_METRICS and is_number(value)}
        self.log_metrics(metrics, row["epoch"])

    def on_train_end(self, run, state: dict, summary: dict) -> None:
        from mlflow.entities import RunTag

        if not self.started:
            self.start(run)
        self.log_metrics(final_metrics(summary), summary["epochs_completed"])
        choices = summary.get("choices") or {}
        tags = {"status": summary["status"], **{group: str(choice) for group, choice in choices.items()}}
        self.client.log_batch(self.run_id, tags=[RunTag(key, value) for key, value in tags.items()])
        for path in sorted(Path(run.recorder.folder).iterdir()):
            # summary.json on disk is still the running one: the summary goes up as it will be written.
            skipped = path.name.startswith(".") or path.name == "summary.json"
            if path.is_file() and not skipped and (self.log_checkpoint or path.name != "checkpoint.pt"):
                self.client.log_artifact(self.run_id, str(path))
        self.client.log_text(self.run_id, json.dumps(plain(summary), indent=2) + "\n", "summary.json")
        self.client.set_terminated(self.run_id, RUN_STATUS.get(summary["status"], "FINISHED"))

    def state_dict(self) -> dict:
        return {"run_id": self.run_id}

    def load_state_dict(self, state: dict) -> None:
        self.run_id = state.get("run_id")
