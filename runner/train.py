"""The training entrypoint: config -> build -> loop -> record.

    python -m runner.train activation=gelu init=kaiming
    python -m runner.train -m activation=relu,gelu,selu init=xavier,kaiming

``build`` turns the composed config into the parts of a run (data on the device, network, optimizer,
schedule, augmentation, objective); ``runner.loop.fit`` trains them and records the outcome.
"""

from __future__ import annotations

import inspect
import logging
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn

from runner import data as data_module
from runner.augment import Compose
from runner.record import Recorder
from runner.regularize import Objective, parameter_groups

log = logging.getLogger("runner")

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
    steps_per_epoch: int
    recorder: Recorder
    callbacks: list = field(default_factory=list)

    def hooks(self, name: str) -> list:
        """The bound ``name`` methods of the callbacks that have one (see ``runner.loop``)."""
        return [getattr(callback, name) for callback in self.callbacks if hasattr(callback, name)]


def pick_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def pick_autocast(precision: str, device: torch.device) -> torch.dtype | None:
    """bfloat16 autocast on CUDA by default; fp32 on CPU, where bfloat16 matmuls are slower without AMX."""
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def group_entries(node) -> list:
    """The options of a group selected as a list (``regularizer=[l2,dropout]``), in config order."""
    if node is None:
        return []
    return [instantiate(node[key]) for key in node if node[key] is not None]


def build_optimizer(config: DictConfig, model: nn.Module, regularizers: list, device: torch.device):
    factory = instantiate(config.optimizer)
    options = {}
    if device.type == "cuda" and "fused" in inspect.signature(factory.func).parameters:
        # Fused kernels update every parameter in one launch; CPU keeps PyTorch's default implementation.
        options["fused"] = True
    return factory(parameter_groups(model, regularizers), **options)


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
    if config.trainer.channels_last:
        model = model.to(memory_format=torch.channels_last)

    optimizer = build_optimizer(config, model, regularizers, device)
    batch_size = min(config.data.batch_size, len(splits.train_labels))
    steps_per_epoch = len(splits.train_labels) // batch_size
    schedule = instantiate(config.schedule)(optimizer, steps_per_epoch=steps_per_epoch, epochs=config.trainer.epochs)
    generator = torch.Generator(device=device)
    generator.manual_seed(config.seed)
    return Run(
        config=config,
        device=device,
        splits=splits,
        model=model,
        optimizer=optimizer,
        schedule=schedule,
        objective=Objective(regularizers, splits.num_classes),
        augment=Compose(group_entries(config.get("augmentation"))),
        generator=generator,
        autocast_dtype=pick_autocast(config.trainer.precision, device),
        steps_per_epoch=steps_per_epoch,
        recorder=Recorder(output_dir),
        callbacks=[
            instantiate(config[group])
            for group in CALLBACK_GROUPS
            if config.get(group) is not None and "_target_" in config[group]
        ],
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


def run(config: DictConfig) -> float:
    from runner.loop import fit

    started = time.time()
    hydra_config = HydraConfig.get()
    output_dir = Path(hydra_config.runtime.output_dir)
    context = {
        "choices": resolved_choices(config),
        "overrides": list(hydra_config.overrides.task),
        "seed": config.seed,
        "started": started,
    }
    try:
        built = build(config, output_dir)
        summary = fit(built, context)
    except data_module.DataError as error:
        # A problem the user can fix gets a paragraph, not a traceback.
        Recorder(output_dir).summary({"status": "failed", "error": str(error), **context})
        print(f"\n{error}\n", file=sys.stderr)
        sys.exit(2)
    except Exception:
        recorder = Recorder(output_dir)
        recorder.path("error.txt").write_text(traceback.format_exc())
        recorder.summary({"status": "failed", "error": traceback.format_exc(limit=1), **context})
        raise
    log.info("Outputs: %s", output_dir)
    log.info("Status: %s; final test accuracy: %s", summary["status"], _percent(summary.get("test_acc")))
    return float(summary.get("test_acc") or 0.0)


def _percent(value) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(config: DictConfig) -> float:
    return run(config)


if __name__ == "__main__":
    main()
