"""The training entrypoint: config -> build -> loop -> record.

    python -m runner.train activation=gelu init=kaiming
    python -m runner.train -m activation=relu,gelu,selu init=xavier,kaiming

``build`` turns the composed config into the parts of a run (data on the device, network, optimizer,
schedule, augmentation, objective); ``runner.loop.fit`` trains them and records the outcome.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from runner import data as data_module
from runner import finetune, project_path, sweep, validate
from runner.augment import Compose, Predictor, TestTimeAugmentation
from runner.device import loss_scaler, pick_autocast, pick_device, pick_eval_batch_size
from runner.ensemble import averaging_callbacks
from runner.record import Recorder, write_json
from runner.regularize import Objective, parameter_groups
from runner.schedules import scale_learning_rate
from runner.validate import ConfigError

log = logging.getLogger("runner")

# What a sweeper gets for a loss it minimises when the run has none (a finite number: Optuna rejects inf and NaN).
WORST_LOSS = 1e9

# Config groups whose option is a loop callback (see runner.loop); an option without `_target_` is "off".
CALLBACK_GROUPS = ("diagnostics", "logger")


@dataclass
class Run:
    """Everything the loop needs, built from the config."""

    config: DictConfig
    device: torch.device
    splits: data_module.Splits
    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    objective: Objective
    augment: Compose
    generator: torch.Generator
    autocast_dtype: torch.dtype | None
    scaler: torch.amp.GradScaler  # loss scaling, enabled under float16 autocast only (runner.loop.optimize)
    steps_per_epoch: int
    eval_batch_size: int  # trainer.eval_batch_size, with auto resolved for the device
    recorder: Recorder
    callbacks: list = field(default_factory=list)
    predict: Predictor | None = None  # evaluation's forward pass when it is more than model(images)

    def hooks(self, name: str) -> list:
        """The bound ``name`` methods of the callbacks that have one (see ``runner.loop``)."""
        return [getattr(callback, name) for callback in self.callbacks if hasattr(callback, name)]


def group_entries(node) -> list:
    """The options of a group selected as a list (``regularizer=[l2,dropout]``), in config order."""
    if node is None:
        return []
    return [instantiate(node[key]) for key in node if node[key] is not None]


def build_optimizer(
    config: DictConfig, model: nn.Module, regularizers: list, device: torch.device, batch_size: int | None = None
):
    settings = OmegaConf.to_container(config.optimizer, resolve=True)
    # scale_lr is the runner's rule, not a torch argument: applied to lr here, then dropped.
    rule = settings.pop("scale_lr", "none")
    settings["lr"] = scale_learning_rate(settings["lr"], rule, batch_size or config.data.batch_size)
    factory = instantiate(settings)
    options = {}
    if device.type == "cuda" and "fused" in inspect.signature(factory.func).parameters:
        # Fused kernels update every parameter in one launch; CPU keeps PyTorch's default implementation.
        options["fused"] = True
    optimizer = factory(parameter_groups(model, regularizers), **options)
    # Before the schedule is built, so every schedule scales a group's multiplied rate as its base rate. A
    # multiplier speeds up learning, not decay: the shrinkage per step, lr x weight decay, stays the base
    # rate's, as in airbench.
    for group in optimizer.param_groups:
        multiplier = group.get("lr_multiplier", 1.0)
        group["lr"] *= multiplier
        for key in ("weight_decay", "decoupled_weight_decay_rate"):
            if key in group:
                group[key] /= multiplier
    for regularizer in regularizers:
        if hasattr(regularizer, "attach_optimizer"):
            regularizer.attach_optimizer(optimizer)
    return optimizer


def build(config: DictConfig, output_dir: str | Path) -> Run:
    device = pick_device(config.trainer.device)
    torch.manual_seed(config.seed)
    splits = data_module.load(config.data).to(device)

    preprocess = instantiate(config.preprocess).to(device)
    preprocess.fit(splits.train_images)
    activation = instantiate(config.activation)
    network = instantiate(
        config.model,
        num_classes=splits.num_classes,
        input_shape=tuple(splits.train_images.shape[1:]),
        activation=activation,
        norm=instantiate(config.norm),
    )
    model = nn.Sequential(preprocess, network).to(device)

    sample = splits.train_images[: min(len(splits.train_images), config.data.batch_size)]
    instantiate(config.init)(network, activation=activation, sample=preprocess(sample))
    regularizers = group_entries(config.get("regularizer"))
    for regularizer in regularizers:
        if hasattr(regularizer, "attach"):
            model = regularizer.attach(model)
    # Transfer learning: another run's weights (a new head for new classes), a frozen backbone, a faster head.
    head_rate = finetune.prepare(config.get("finetune"), model)
    if config.trainer.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if config.trainer.compile:
        # In place, so parameter names and checkpoints stay those of the plain module.
        model.compile()

    batch_size = min(config.data.batch_size, len(splits.train_labels))
    optimizer = build_optimizer(config, model, regularizers + head_rate, device, batch_size)
    steps_per_epoch = len(splits.train_labels) // batch_size
    schedule = instantiate(config.schedule)(optimizer, steps_per_epoch=steps_per_epoch, epochs=config.trainer.epochs)
    generator = torch.Generator(device=device)
    generator.manual_seed(config.seed)
    augment = Compose(group_entries(config.get("augmentation"))).fit(splits.train_images, splits.num_classes)
    # Test-time views (eval.tta) and random networks (regularizers with test_samples) average predictions.
    evaluation = config.get("eval") or {}
    views = TestTimeAugmentation(
        evaluation.get("tta", "none"), evaluation.get("tta_shift", 2), evaluation.get("tta_padding", "constant")
    )
    draws = max((getattr(regularizer, "test_samples", 1) for regularizer in regularizers), default=1)
    predict = Predictor(model, views, draws) if views.mode != "none" or draws > 1 else None
    autocast_dtype = pick_autocast(config.trainer.precision, device)
    return Run(
        config=config,
        device=device,
        splits=splits,
        model=model,
        optimizer=optimizer,
        schedule=schedule,
        objective=Objective(regularizers, splits.num_classes),
        augment=augment,
        generator=generator,
        autocast_dtype=autocast_dtype,
        scaler=loss_scaler(device, autocast_dtype),
        steps_per_epoch=steps_per_epoch,
        recorder=Recorder(output_dir),
        eval_batch_size=pick_eval_batch_size(config.trainer.eval_batch_size, device),
        # Averages first, so that loggers see the ema_* keys they add to each epoch's metrics.
        callbacks=averaging_callbacks(config, model, steps_per_epoch)
        + [
            instantiate(config[group])
            for group in CALLBACK_GROUPS
            if config.get(group) is not None and "_target_" in config[group]
        ],
        predict=predict,
    )


def resolved_choices(config: DictConfig) -> dict:
    """The option chosen in each config group; list selections are joined with '+'."""
    choices = {}
    for group, choice in HydraConfig.get().runtime.choices.items():
        if group.startswith("hydra/") or group in ("hydra",):
            continue
        if choice is None and isinstance(config.get(group), DictConfig):
            choice = "+".join(config[group].keys()) or "none"
        choices[group] = choice
    for group in ("regularizer", "augmentation"):
        if group not in choices:
            node = config.get(group)
            choices[group] = "+".join(node.keys()) if node else "none"
    return choices


def stored_config(folder: Path) -> DictConfig:
    """The resolved config a run saved in ``config.json``; interpolations in it are never evaluated."""
    path = folder / "config.json"
    try:
        stored = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ConfigError(f"{path} is missing or unreadable ({error}): cannot resume that run.") from None
    if "${" in json.dumps(stored):
        raise ConfigError(f"{path} holds an interpolation ('${{...}}'); a resumed config must be plain values.")
    return OmegaConf.create(stored)


def read_summary(folder: Path) -> dict:
    try:
        return json.loads((folder / "summary.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def load_checkpoint(path: Path) -> dict | None:
    if not path.exists():
        return None
    try:
        # weights_only: a checkpoint is data, and loading it must not run code from the file.
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - a torn or foreign file, whatever the exception
        raise ConfigError(
            f"{path} is not a readable checkpoint ({type(error).__name__}: {error}). Delete it to start that run "
            "again from scratch, or resume from a copy that is intact."
        ) from None


def prepare(config: DictConfig, output_dir: Path, context: dict) -> tuple[DictConfig, dict | None, dict | None]:
    """Decide what this invocation does in ``output_dir``: a fresh run, a resumed one, or nothing.

    Returns the config to run, the checkpoint to continue from, and, for a run already completed (a sweep
    started again over the same folder), its summary, in which case nothing is trained again.
    """
    if config.get("resume"):
        folder = Path(str(config.resume)).expanduser().resolve()
        if folder != output_dir.resolve():
            raise ConfigError(f"resume={config.resume}: the run folder could not be used as the output folder.")
        config = stored_config(folder)
        previous = read_summary(folder)
        context.update(choices=previous.get("choices", context["choices"]))
        context.update(overrides=previous.get("overrides", context["overrides"]))
        return config, load_checkpoint(folder / "checkpoint.pt"), None
    resolved = OmegaConf.to_container(config, resolve=True)
    if config.trainer.auto_resume and (output_dir / "config.json").exists():
        if stored_config(output_dir) != OmegaConf.create(resolved):
            raise ConfigError(f"{output_dir} holds a run with another config; use a new output folder.")
        previous = read_summary(output_dir)
        if previous.get("status") in ("completed", "diverged"):
            return config, None, previous
        return config, load_checkpoint(output_dir / "checkpoint.pt"), None
    write_json(output_dir / "config.json", resolved)
    return config, None, None


def run(config: DictConfig) -> float:
    """Train one configured run in Hydra's output folder; returns its ``optimized_metric`` (for sweepers)."""
    from runner.loop import fit

    started = time.time()
    hydra_config = HydraConfig.get()
    output_dir = Path(hydra_config.runtime.output_dir)
    in_sweep = hydra_config.mode == RunMode.MULTIRUN
    recorder = Recorder(output_dir)
    context = {
        "choices": resolved_choices(config),
        "overrides": list(hydra_config.overrides.task),
        "seed": config.get("seed"),
        "started": started,
    }
    try:
        config, checkpoint, finished = prepare(config, output_dir, context)
        if finished is not None:
            log.info("%s already holds a %s run; nothing to do.", output_dir, finished["status"])
            return optimized_value(config, finished)
        problems = validate.check(config) + metric_problems(config)
        if problems:
            raise ConfigError("\n".join(problems))
        # In a sweep that runs jobs side by side, this job trains on its own device slot (runner.sweep).
        with sweep.job_slot(config) as slot:
            if slot is not None:
                context["slot"] = slot
            summary = fit(build(config, output_dir), context, checkpoint)
    except (data_module.DataError, ConfigError) as error:
        recorder.path("error.txt").write_text(f"{error}\n")
        recorder.summary({"status": "failed", "error": str(error), **context})
        if in_sweep:
            raise  # the job is recorded as failed and Hydra goes on with the rest of the sweep
        # A problem the user can fix gets a paragraph, not a traceback.
        print(f"\n{error}\n", file=sys.stderr)
        sys.exit(2)
    except torch.cuda.OutOfMemoryError as error:
        # Recorded as this job's failure with what to lower; the jobs sharing the GPU go on.
        reason = sweep.out_of_memory_reason(error, context.get("slot"))
        recorder.path("error.txt").write_text(f"{traceback.format_exc()}\n{reason}\n")
        recorder.summary({"status": "failed", "error": reason, **context})
        raise
    except Exception:
        recorder.path("error.txt").write_text(traceback.format_exc())
        recorder.summary({"status": "failed", "error": traceback.format_exc(limit=1), **context})
        raise
    log.info("Outputs: %s", output_dir)
    log.info("Status: %s; final test accuracy: %s", summary["status"], _percent(summary.get("test_acc")))
    if summary["status"] == "interrupted":
        # Stop here, and stop a sweep too: the user (or the scheduler) asked for it.
        log.info("Resume with: python -m runner.train resume=%s", output_dir)
        sys.exit(128 + signal.Signals[summary.get("signal", "SIGINT")].value)
    return optimized_value(config, summary)


def metric_problems(config: DictConfig) -> list[str]:
    """A sweep that optimises a validation metric needs a validation split, or every trial would score 0."""
    metric = str(config.get("optimized_metric") or "test_acc")
    if "val_" in metric and not config.data.get("val_size"):
        return [f"optimized_metric={metric} needs a validation split: set data.val_size (e.g. 5000)."]
    return []


def optimized_value(config: DictConfig, summary: dict) -> float:
    """The summary's ``optimized_metric``, for sweepers; a run without it (diverged in its first epoch, no
    validation split) gets the worst value instead, because Optuna stops a whole search at a NaN."""
    metric = str(config.get("optimized_metric") or "test_acc")
    value = summary.get(metric)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        if summary.get("status") != "diverged":
            return float(value)
    return WORST_LOSS if "loss" in metric else 0.0


def _percent(value) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


@hydra.main(version_base="1.3", config_path=project_path("conf"), config_name="config")
def main(config: DictConfig) -> float:
    return run(config)


if __name__ == "__main__":
    main()
