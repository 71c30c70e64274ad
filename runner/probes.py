"""The lectures' measurements of a network, shared by the diagnostics of every run
(``runner.callbacks.diagnostics``) and the ``python -m runner.diagnose`` command: per-layer activation
statistics on a fixed batch, symmetry of the weights, and the initial loss against ln(classes).

Which modules are "activation layers": every module whose class, or a base class, is defined in
``torch.nn.modules.activation`` or ``runner.activations`` (ReLU, Tanh, GELU, PReLU, Maxout, ...), except
the attention and softmax modules that live there too; an activation nested inside another one counts once.
This follows the model wherever it places its nonlinearities without each model having to declare them.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from runner.optim import parameter_groups
from runner.regularize import Objective

ACTIVATION_HOMES = ("torch.nn.modules.activation", "runner.activations")
NOT_ACTIVATIONS = (nn.MultiheadAttention, nn.Softmax, nn.Softmin, nn.Softmax2d, nn.LogSoftmax)

# Saturated outputs, where the local gradient is nearly zero (the lectures' definitions).
SATURATION = {
    nn.Tanh: lambda y: y.abs() > 0.99,
    nn.Sigmoid: lambda y: (y < 0.01) | (y > 0.99),
}
STATISTICS = ("mean", "std", "zero_fraction", "dead_fraction", "saturated_fraction", "identical_units")


# --- Where the activations and weights are ---------------------------------------------------------------


def is_activation(module: nn.Module) -> bool:
    homes = {base.__module__ for base in type(module).__mro__}
    return bool(homes.intersection(ACTIVATION_HOMES)) and not isinstance(module, NOT_ACTIVATIONS)


def activation_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of every activation layer, in the order ``named_modules`` registers them (depth order
    for the models here); an activation inside another activation module is left to its parent."""
    found: list[tuple[str, nn.Module]] = []
    for name, module in model.named_modules():
        if is_activation(module) and not any(name.startswith(parent + ".") for parent, _ in found):
            found.append((name, module))
    return found


def weight_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """(name, weight) of every layer with a weight matrix or kernel (linear, convolution): the weights whose
    update/weight ratio the lectures watch; biases and norm scales (1-D) are left out."""
    return [(name, p) for name, p in model.named_parameters() if p.requires_grad and p.ndim >= 2]


# --- Activation statistics -------------------------------------------------------------------------------


@torch.no_grad()
def layer_statistics(output: torch.Tensor, module: nn.Module) -> torch.Tensor:
    """mean, std, zero_fraction, dead_fraction, saturated_fraction (NaN where the activation does not
    saturate) and identical_units (1 when every unit gives the same nonzero output on every example), as one tensor
    on the output's device, so a whole pass is read back in one transfer.

    A unit is a channel (dimension 1); it is dead when it is exactly zero on every example and position. This
    runs on every activation layer after every epoch, so each figure is a reduction of the output itself
    (per-unit maxima and minima) rather than of a transposed or float copy: on a CPU, copying a large map
    costs more than the reductions do.
    """
    y = output.detach().float()
    others = tuple(dim for dim in range(y.ndim) if dim != 1)  # all but the units' dimension
    highest, lowest = y.amax(dim=others), y.amin(dim=others)  # per unit
    dead = (highest == 0) & (lowest == 0)
    saturation = next((test for kind, test in SATURATION.items() if isinstance(module, kind)), None)
    saturated = saturation(y).float().mean() if saturation else torch.full((), math.nan, device=y.device)
    if y.ndim > 1 and y.shape[1] > 1:
        # All-zero outputs are dead units (reported as such), not a symmetry that was never broken.
        largest = torch.maximum(highest.amax(), -lowest.amin())
        spread = (y.amax(dim=1) - y.amin(dim=1)).amax()  # across units, at the worst example and position
        identical = ((spread <= 1e-6 * largest) & (largest > 0)).float()
    else:
        identical = torch.zeros((), device=y.device)
    zero_fraction = torch.count_nonzero(y == 0) / y.numel()
    return torch.stack([y.mean(), y.std(), zero_fraction, dead.float().mean(), saturated, identical])


@contextlib.contextmanager
def untouched(model: nn.Module) -> Iterator[None]:
    """Run ``model`` in training mode (batch statistics, as a training step sees it), then restore its mode,
    its buffers (batch-norm running statistics) and the random state, so that measuring changes nothing."""
    buffers = [(buffer, buffer.detach().clone()) for buffer in model.buffers()]
    was_training = model.training
    devices = sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=devices):
        model.train()
        try:
            yield
        finally:
            with torch.no_grad():
                for buffer, saved in buffers:
                    buffer.copy_(saved)
            model.train(was_training)


def probe(
    model: nn.Module, inputs: torch.Tensor, keep_values: int = 0
) -> tuple[torch.Tensor, list[dict], list[torch.Tensor]]:
    """One forward pass of ``inputs`` in training mode, leaving the model as it was; returns the logits,
    each activation layer's statistics (dicts in depth order, numbered from 1) and, when ``keep_values`` > 0,
    up to that many of each layer's output values (on the CPU, for histograms)."""
    layers = activation_layers(model)
    measured: list[torch.Tensor] = [torch.empty(0)] * len(layers)
    values: list[torch.Tensor] = [torch.empty(0)] * len(layers)

    def hook_for(index: int):
        def hook(module, args, output):
            measured[index] = layer_statistics(output, module)
            if keep_values:
                flat = output.detach().float().flatten()
                step = max(1, flat.numel() // keep_values)
                values[index] = flat[::step][:keep_values].cpu()

        return hook

    handles = [module.register_forward_hook(hook_for(index)) for index, (_, module) in enumerate(layers)]
    try:
        with untouched(model), torch.no_grad():
            logits = model(inputs).float()
    finally:
        for handle in handles:
            handle.remove()
    table = torch.stack(measured).cpu().tolist() if layers else []
    rows = []
    for index, ((name, module), numbers) in enumerate(zip(layers, table, strict=True)):
        row = {"layer": index + 1, "name": name, "module": type(module).__name__}
        row.update(dict(zip(STATISTICS, numbers, strict=True)))
        row["saturated_fraction"] = None if math.isnan(row["saturated_fraction"]) else row["saturated_fraction"]
        row["identical_units"] = bool(row["identical_units"])
        rows.append(row)
    return logits, rows, values


def activation_warnings(
    rows: list[dict],
    when: str,
    dead_fraction: float = 0.5,
    saturated_fraction: float = 0.5,
    collapsed_std: float = 1e-3,
) -> dict[str, str]:
    """Plain-words problems in one pass's statistics, one per kind (the worst layer), keyed by kind."""
    found: dict[str, str] = {}

    def more(count: int) -> str:
        return f" (and {count} more layers)" if count else ""

    identical = [row for row in rows if row["identical_units"]]
    if identical:
        row = identical[0]
        found["identical"] = (
            f"units identical: every unit of layer {row['layer']} ({row['name']}) gives the same output on every "
            f"example {when}{more(len(identical) - 1)}: symmetry not broken, the units will learn the same thing"
        )
    dead = [row for row in rows if row["dead_fraction"] > dead_fraction]
    if dead:
        row = max(dead, key=lambda row: row["dead_fraction"])
        found["dead"] = (
            f"layer {row['layer']} ({row['name']}): {row['dead_fraction']:.0%} of units dead {when}"
            f"{more(len(dead) - 1)}"
        )
    # Dead or identical units have no spread either; they are reported as what they are.
    collapsed = [
        row
        for row in rows
        if row["std"] < collapsed_std and not row["identical_units"] and row["dead_fraction"] <= dead_fraction
    ]
    if collapsed:
        row = min(collapsed, key=lambda row: row["std"])
        found["collapse"] = (
            f"activations collapse: std {row['std']:.1g} at layer {row['layer']} ({row['name']}) {when}"
            f"{more(len(collapsed) - 1)}: the signal vanishes with depth, initial weights likely too small"
        )
    saturated = [row for row in rows if (row["saturated_fraction"] or 0) > saturated_fraction]
    if saturated:
        row = max(saturated, key=lambda row: row["saturated_fraction"])
        found["saturated"] = (
            f"layer {row['layer']} ({row['name']}): {row['saturated_fraction']:.0%} of outputs saturated {when}"
            f"{more(len(saturated) - 1)}: gradients vanish there, initial weights likely too large"
        )
    return found


def identical_weights(model: nn.Module) -> list[str]:
    """Names of weight layers whose output units all have the same weights (a constant or zero init) and stay
    that way: the next weight layer reads them all alike (identical input columns), so every unit gets the same
    gradient. A zero layer read by random weights (Fixup's last layer of each residual branch) breaks its
    symmetry at the first step and is not reported."""
    names = []
    layers = weight_parameters(model)
    with torch.no_grad():
        for (name, weight), (_, reader) in zip(layers, layers[1:], strict=False):
            same_units = len(weight) > 1 and bool((weight - weight[:1]).abs().amax() == 0)
            read_alike = reader.shape[1] == len(weight) and bool((reader - reader[:, :1]).abs().amax() == 0)
            if same_units and read_alike:
                names.append(name)
    return names


# --- The first-iteration checks ---------------------------------------------------------------------------


def weight_decay_penalty(model: nn.Module, groups: list[dict]) -> torch.Tensor:
    """The L2 penalty weight decay is the gradient of: sum over parameter groups of wd / 2 * ||w||^2."""
    total = torch.zeros((), device=next(model.parameters()).device)
    for group in groups:
        rate = group.get("weight_decay", 0.0) + group.get("decoupled_weight_decay_rate", 0.0)
        if rate and group["params"]:
            total = total + rate / 2 * torch.stack(torch._foreach_norm(list(group["params"]))).square().sum()
    return total


def initial_losses(run, logits: torch.Tensor, labels: torch.Tensor, regularizers: list | None = None) -> dict:
    """The lectures' first check: with small random weights the network guesses uniformly, so the loss
    without regularization should be ln(classes) (2.30 for CIFAR-10); with regularization it is higher.

    The regularized loss adds the objective's penalties and the L2 penalty of the weight decay: the run's
    own, or, for a run built without regularization, that of ``regularizers`` as the optimizer would apply it.
    """
    objective, groups = run.objective, run.optimizer.param_groups
    if regularizers is not None:
        objective = Objective(regularizers, run.splits.num_classes)
        groups = [{**run.optimizer.defaults, **group} for group in parameter_groups(run.model, regularizers)]
    with torch.no_grad():
        plain = F.cross_entropy(logits.float(), labels)
        regularized = objective(logits, labels, run.model) + weight_decay_penalty(run.model, groups)
    plain, regularized = torch.stack([plain, regularized.float()]).tolist()
    return {
        "initial_loss": plain,
        "expected_initial_loss": math.log(run.splits.num_classes),
        "initial_loss_regularized": regularized,
    }


def initial_loss_warning(losses: dict, tolerance: float) -> str | None:
    loss, expected = losses["initial_loss"], losses["expected_initial_loss"]
    if math.isfinite(loss) and abs(loss - expected) <= tolerance:
        return None
    return (
        f"initial loss {loss:.3g} is not near ln(classes) = {expected:.3g}: the network does not start by "
        "guessing uniformly (initial weights or the output layer's scale are likely too large)"
    )
