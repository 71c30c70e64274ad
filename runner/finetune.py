"""Transfer learning: start a run from another run's weights, with a new head, a frozen backbone, a faster head.

    python -m runner.train finetune.checkpoint=outputs/runs/2025-01-31/12-00-00-000000 finetune.freeze=backbone

The lectures' recipe (Yosinski et al., "How transferable are features in deep neural networks?", 2014): keep
the features a network learned on one task, replace its classifier for the new task's classes, and train
the new head alone (small data set: ``freeze=backbone``) or everything, the head faster than the rest
(``head_lr_multiplier``). Every model in ``runner.models`` names its classifier ``head`` (an ``nn.Linear``).
"""

from __future__ import annotations

import logging
import types
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import nn

from runner.errors import ConfigError

log = logging.getLogger("runner")

FREEZE_CHOICES = ("none", "backbone")


def head_prefix(model: nn.Module) -> str:
    """The state-dict prefix of the network's ``head`` inside ``model`` (``1.head`` for preprocess + network)."""
    for name, _ in model.named_modules():
        if name.rsplit(".", 1)[-1] == "head":
            return name
    raise ConfigError("finetune: this model has no `head` module, so its classifier cannot be told apart.")


def in_head(key: str, prefix: str) -> bool:
    return key.startswith(prefix + ".")


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The model weights of a run folder's ``checkpoint.pt`` (or of that file itself)."""
    path = Path(str(path)).expanduser()
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise ConfigError(
            f"finetune.checkpoint={path}: no such checkpoint. Give a run folder (it holds checkpoint.pt once its "
            "first epoch has ended) or the checkpoint.pt file itself."
        )
    try:
        # weights_only: a checkpoint is data, and loading it must not run code from the file.
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - a torn or foreign file, whatever the exception
        raise ConfigError(f"finetune.checkpoint={path} is not a readable checkpoint ({error}).") from None
    weights = checkpoint.get("model") if isinstance(checkpoint, dict) else None
    if not isinstance(weights, dict):
        raise ConfigError(f"finetune.checkpoint={path} holds no model weights (no 'model' entry).")
    return weights


def load_pretrained(model: nn.Module, weights: dict[str, torch.Tensor], new_head: bool | str = "auto") -> bool:
    """Copy ``weights`` into ``model``; the head too, unless a new one is wanted (``new_head=true``) or needed
    (``auto`` and another number of classes), in which case the head keeps this run's fresh initialisation.
    Returns whether the head is new. Every other layer must match exactly."""
    prefix = head_prefix(model)
    own = model.state_dict()
    head_shapes_differ = any(
        key in weights and weights[key].shape != tensor.shape for key, tensor in own.items() if in_head(key, prefix)
    )
    if new_head == "auto":
        new_head = head_shapes_differ
    elif not new_head and head_shapes_differ:
        raise ConfigError(
            "finetune.new_head=false, but the checkpoint's head has another number of classes than this run's data: "
            "use finetune.new_head=auto."
        )
    wanted = {key: value for key, value in weights.items() if not (new_head and in_head(key, prefix))}
    expected = {key for key in own if not (new_head and in_head(key, prefix))}
    missing = sorted(expected - set(wanted))
    unexpected = sorted(set(wanted) - expected)
    mismatched = sorted(key for key in expected & set(wanted) if wanted[key].shape != own[key].shape)
    if missing or unexpected or mismatched:
        details = "; ".join(
            f"{what}: {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}"
            for what, keys in (("missing", missing), ("unexpected", unexpected), ("other shapes", mismatched))
            if keys
        )
        raise ConfigError(
            f"finetune.checkpoint: its layers do not match this model ({details}). Fine-tune with the model, its "
            "knobs and the regularizers that change layers (dropout, dropconnect, stochastic_depth) of the run "
            "that wrote the checkpoint."
        )
    model.load_state_dict(wanted, strict=False)
    return bool(new_head)


def _stay_in_eval_mode(module: nn.Module, mode: bool = True) -> nn.Module:
    return nn.Module.train(module, False)


def freeze_backbone(model: nn.Module) -> list[str]:
    """Train the head only: every other parameter stops receiving gradients (and so is left out of the
    optimizer), and every normalisation layer with running statistics stays in eval mode, so a frozen layer
    computes the same function at train and test time and its statistics never move. Returns the frozen names."""
    prefix = head_prefix(model)
    frozen = []
    for name, parameter in model.named_parameters():
        if not in_head(name, prefix):
            parameter.requires_grad_(False)
            frozen.append(name)
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not in_head(name, prefix):
            # The loop calls model.train() every epoch; this layer answers it by staying in eval mode.
            module.train = types.MethodType(_stay_in_eval_mode, module)
            module.eval()
    return frozen


class HeadLearningRate:
    """Gives the head's parameters their own optimizer group with ``multiplier`` times the learning rate.

    It speaks the regularizers' protocol (``parameter_options``) that ``runner.optim`` already asks, and
    the optimizer builder applies the group's ``lr_multiplier``, so it needs no hook of its own."""

    def __init__(self, model: nn.Module, multiplier: float):
        self.prefix = head_prefix(model)
        self.multiplier = multiplier

    def parameter_options(self, name: str, parameter: nn.Parameter) -> dict:
        return {"lr_multiplier": self.multiplier} if in_head(name, self.prefix) else {}


def prepare(settings: DictConfig | dict | None, model: nn.Module) -> list:
    """Apply ``finetune.*`` to the built model; returns the optimizer-side parts (the head's learning rate)."""
    if not settings:
        return []
    # Their values are checked with every other setting, before any work (runner.validate).
    freeze = settings.get("freeze", "none") or "none"
    new_head = settings.get("new_head", "auto")
    multiplier = settings.get("head_lr_multiplier", 1.0)
    if settings.get("checkpoint"):
        replaced = load_pretrained(model, read_weights(settings.get("checkpoint")), new_head)
        log.info("Loaded %s (%s head).", settings.get("checkpoint"), "new" if replaced else "pretrained")
    if freeze == "backbone":
        frozen = freeze_backbone(model)
        log.info("Frozen: %d parameter tensors outside the head.", len(frozen))
    return [HeadLearningRate(model, float(multiplier))] if multiplier != 1 else []
