"""The optimizer (the ``optimizer`` group) and what shapes its parameter groups: per-layer learning-rate
multipliers, the regularizers' per-parameter settings (weight decay), and the large-batch rule ``scale_lr``.

Every option names a ``torch.optim`` class with ``_partial_: true``; the builder supplies the parameter groups.
A layer asks for its own rate by carrying an ``lr_multiplier`` attribute (airbench's batch norms); any part
of a run asks for per-parameter settings through ``parameter_options(name, parameter)`` (weight decay, a
faster head when fine-tuning).
"""

from __future__ import annotations

import inspect

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

SCALING_RULES = ("none", "linear")


def scale_learning_rate(learning_rate: float, rule: str, batch_size: int) -> float:
    """``linear``: lr * batch_size / 256, the linear scaling rule for large batches (Goyal et al. 2017),
    meant to be used with warm-up; ``none``: unchanged."""
    return learning_rate * batch_size / 256 if rule == "linear" else learning_rate


def learning_rate_multipliers(model: nn.Module) -> dict[str, float]:
    """The parameters (by name) whose layer asks for its own learning-rate multiplier."""
    return {
        f"{module_name}.{name}" if module_name else name: module.lr_multiplier
        for module_name, module in model.named_modules()
        if getattr(module, "lr_multiplier", 1.0) != 1.0
        for name, _ in module.named_parameters(recurse=False)
    }


def parameter_groups(model: nn.Module, parts: list) -> list[dict]:
    """Group the trainable parameters by the optimizer options their layers (``lr_multiplier``) and the
    ``parts`` (regularizers, fine-tuning) ask for, in a stable order."""
    multipliers = learning_rate_multipliers(model)
    groups: dict[tuple, list] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        options: dict = {"lr_multiplier": multipliers[name]} if name in multipliers else {}
        for part in parts:
            if hasattr(part, "parameter_options"):
                options.update(part.parameter_options(name, parameter))
        groups.setdefault(tuple(sorted(options.items())), []).append(parameter)
    return [{"params": params, **dict(options)} for options, params in groups.items()]


def build_optimizer(
    settings: DictConfig, model: nn.Module, parts: list, device: torch.device, batch_size: int
) -> torch.optim.Optimizer:
    """The configured optimizer over ``parameter_groups(model, parts)``, its rate scaled by ``scale_lr`` for
    ``batch_size`` and multiplied per group; parts with ``attach_optimizer`` hook into it."""
    settings = OmegaConf.to_container(settings, resolve=True)
    # scale_lr is the runner's rule, not a torch argument: applied to lr here, then dropped.
    rule = settings.pop("scale_lr", "none")
    settings["lr"] = scale_learning_rate(settings["lr"], rule, batch_size)
    factory = instantiate(settings)
    options = {}
    if device.type == "cuda" and "fused" in inspect.signature(factory.func).parameters:
        # Fused kernels update every parameter in one launch; CPU keeps PyTorch's default implementation.
        options["fused"] = True
    optimizer = factory(parameter_groups(model, parts), **options)
    # Before the schedule is built, so every schedule scales a group's multiplied rate as its base rate. A
    # multiplier speeds up learning, not decay: the shrinkage per step, lr x weight decay, stays the base
    # rate's, as in airbench.
    for group in optimizer.param_groups:
        multiplier = group.get("lr_multiplier", 1.0)
        group["lr"] *= multiplier
        for key in ("weight_decay", "decoupled_weight_decay_rate"):
            if key in group:
                group[key] /= multiplier
    for part in parts:
        if hasattr(part, "attach_optimizer"):
            part.attach_optimizer(optimizer)
    return optimizer
