"""The parts of a run, built from the composed config: data on the device, network, optimizer, schedule,
augmentation, objective, evaluation and callbacks.

``build`` reads each config group through its option's ``_target_`` and knows no option by name; the loop
(``runner.loop``) then asks these parts for everything it does.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn

from runner import data as data_module
from runner import finetune
from runner.augment import Compose
from runner.budget import Deadline
from runner.device import loss_scaler, pick_autocast, pick_device, pick_eval_batch_size, set_threads
from runner.errors import RunnerError
from runner.evaluate import Predictor, predictor
from runner.optim import build_optimizer
from runner.record import Recorder
from runner.regularize import Objective

# Groups whose options are lists of entries, each under its own name (regularizer=[l2,dropout]).
LIST_GROUPS = ("regularizer", "augmentation", "averaging")
# Single-choice groups whose option is a loop callback; an option without `_target_` ("off", "none") is none.
CALLBACK_GROUPS = ("diagnostics", "logger")


@dataclass
class Run:
    """Everything the loop needs, built from the config."""

    config: DictConfig
    device: torch.device
    splits: data_module.Splits
    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler | None  # None until the run's length is fixed (fix_length)
    objective: Objective
    augment: Compose
    generator: torch.Generator
    autocast_dtype: torch.dtype | None
    scaler: torch.amp.GradScaler  # loss scaling, enabled under float16 autocast only (runner.loop.optimize)
    batch_size: int  # data.batch_size, or all the training images where there are fewer
    steps_per_epoch: int
    eval_batch_size: int  # trainer.eval_batch_size, with auto resolved for the device
    recorder: Recorder
    callbacks: list = field(default_factory=list)
    predict: Predictor | None = None  # evaluation's forward pass when it is more than model(images)
    progress: bool = False  # progress bars (trainer.progress, when the output is a terminal)
    total_steps: int = 0  # the run's length (fix_length)
    deadline: Deadline | None = None  # when a time budget's training must end (runner.budget)

    def fix_length(self, steps: int) -> None:
        """Set the run's length in steps and build the learning-rate schedule for it, once, before the first step.
        A time budget's length may end inside an epoch (``runner.budget``): that last epoch is shorter, and the
        schedule ends with it. ``trainer.epochs`` takes the epochs it begins, because what follows the run's
        length in epochs reads it there: the loop, the evaluations' and checkpoints' rhythm, the loggers' settings."""
        self.total_steps = steps
        whole, part = divmod(steps, self.steps_per_epoch)
        self.config.trainer.epochs = whole + bool(part)
        epochs = whole if part == 0 else steps / self.steps_per_epoch
        self.schedule = make(self.config.schedule)(self.optimizer, steps_per_epoch=self.steps_per_epoch, epochs=epochs)

    def hooks(self, name: str) -> list:
        """The bound ``name`` methods of the callbacks that have one (see ``runner.callbacks``)."""
        return [getattr(callback, name) for callback in self.callbacks if hasattr(callback, name)]


def make(node, *args, **kwargs):
    """``hydra.utils.instantiate``, except that a component's own refusal of a setting (a ``RunnerError``)
    comes out as it is, not inside Hydra's ``InstantiationException``, so the user reads one paragraph."""
    try:
        return instantiate(node, *args, **kwargs)
    except InstantiationException as error:
        if isinstance(error.__cause__, RunnerError):
            raise error.__cause__ from None
        raise


def group_entries(node) -> list:
    """The options of a group selected as a list (``regularizer=[l2,dropout]``), in config order."""
    if node is None:
        return []
    return [make(node[key]) for key in node if node[key] is not None]


def chosen(node):
    """What a single-choice group's option builds, or None for an option that builds nothing (off, none)."""
    return make(node) if node is not None and "_target_" in node else None


def build_callbacks(config: DictConfig) -> list:
    """Averages first, so that loggers see the ema_* keys they add to each epoch's metrics; among them, those
    that change training (lookahead) before those that watch it (see ``runner.callbacks``)."""
    averages = group_entries(config.get("averaging"))
    averages.sort(key=lambda callback: not getattr(callback, "changes_training", False))
    others = [chosen(config.get(group)) for group in CALLBACK_GROUPS]
    return averages + [callback for callback in others if callback is not None]


def build(config: DictConfig, output_dir: str | Path) -> Run:
    device = pick_device(config.trainer.device)
    set_threads(config.trainer.get("threads", "auto"))
    torch.manual_seed(config.seed)
    # The parts that need no data come first, so that a value they refuse stops the run before the data loads.
    regularizers = group_entries(config.get("regularizer"))
    augmentations = group_entries(config.get("augmentation"))
    views = chosen(config.get("tta"))
    callbacks = build_callbacks(config)
    splits = data_module.load(config.data).to(device)

    preprocess = make(config.preprocess).to(device)
    preprocess.fit(splits.train_images)
    activation = make(config.activation)
    network = make(
        config.model,
        num_classes=splits.num_classes,
        input_shape=tuple(splits.train_images.shape[1:]),
        activation=activation,
        norm=make(config.norm),
    )
    model = nn.Sequential(preprocess, network).to(device)

    batch_size = min(config.data.batch_size, len(splits.train_labels))
    make(config.init)(network, activation=activation, sample=preprocess(splits.train_images[:batch_size]))
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

    optimizer = build_optimizer(config.optimizer, model, regularizers + head_rate, device, batch_size)
    steps_per_epoch = len(splits.train_labels) // batch_size
    generator = torch.Generator(device=device)
    generator.manual_seed(config.seed)
    autocast_dtype = pick_autocast(config.trainer.precision, device)
    run = Run(
        config=config,
        device=device,
        splits=splits,
        model=model,
        optimizer=optimizer,
        schedule=None,
        objective=Objective(regularizers, splits.num_classes),
        augment=Compose(augmentations).fit(splits.train_images, splits.num_classes),
        generator=generator,
        autocast_dtype=autocast_dtype,
        scaler=loss_scaler(device, autocast_dtype),
        batch_size=batch_size,
        steps_per_epoch=steps_per_epoch,
        eval_batch_size=pick_eval_batch_size(config.trainer.eval_batch_size, device),
        recorder=Recorder(output_dir),
        callbacks=callbacks,
        # Test-time views (the tta group) and random networks (regularizers with test_samples) average predictions.
        predict=predictor(model, views, regularizers),
        progress=bool(config.trainer.progress) and sys.stderr.isatty(),
    )
    # Under a time budget the loop fixes the length once it has measured the steps (runner.budget).
    if config.trainer.get("time_budget") is None:
        run.fix_length(config.trainer.epochs * steps_per_epoch)
    return run
