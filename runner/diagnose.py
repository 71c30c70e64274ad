"""Babysitting the learning process: the lectures' sanity checks and activation statistics.

Two ways in, sharing the measurements below:

- In every run, ``Diagnostics`` (``conf/diagnostics/on.yaml``, a loop callback; ``diagnostics=off`` removes
  it) checks the initial loss against ln(classes), records per-layer activation statistics on a fixed batch
  at initialization and after every epoch (``activations.jsonl``), samples update/weight ratios and gradient
  norms (``updates.jsonl``), adds the train/validation gap to ``metrics.jsonl`` and writes plain-words
  ``warnings`` into ``summary.json``.
- ``python -m runner.diagnose model=mlp model.depth=10 model.width=500 activation=tanh init=small`` builds
  the network from the same config groups without training it, feeds it a batch (unit Gaussian by default,
  as in the lectures' experiment; ``diagnose.input=data`` for real images), prints and saves each layer's
  statistics (``activations.json``) and the lectures' figure (``activations.png``), then runs the
  first-iteration checks on real data: the initial loss, and ``diagnose.overfit=N`` (train on N examples
  with regularization off until they are all classified right).

Which modules are "activation layers": every module whose class, or a base class, is defined in
``torch.nn.modules.activation`` or ``runner.activations`` (ReLU, Tanh, GELU, PReLU, Maxout, ...), except
the attention and softmax modules that live there too; an activation nested inside another one counts once.
This follows the model wherever it places its nonlinearities without each model having to declare them.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import hydra
import torch
import torch.nn.functional as F
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from runner.record import append_jsonl, write_json
from runner.regularize import Objective, parameter_groups

log = logging.getLogger("runner")

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


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
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


def loss_trend(train_losses: list[float], start: float | None, epochs: int, tolerance: float) -> str | None:
    """``rising`` when each of the last ``epochs`` epochs' training loss is above (1 + tolerance) of where it
    started (an exploded loss that the divergence factor let through); ``flat`` when none fell below
    (1 - tolerance) of it: the run has learned nothing yet. A run that plateaus after learning is neither."""
    recent = train_losses[-epochs:]
    if not start or len(recent) < epochs:
        return None
    if min(recent) > (1 + tolerance) * start:
        return "rising"
    if min(recent) >= (1 - tolerance) * start:
        return "flat"
    return None


def identical_weights(model: nn.Module) -> list[str]:
    """Names of weight layers whose output units all have the same weights (a constant or zero init) and stay
    that way: the next weight layer reads them all alike (identical input columns), so every unit gets the same
    gradient. A zero layer read by random weights (Fixup's last layer of each residual branch) breaks its
    symmetry at the first step and is not reported."""
    names = []
    layers = weight_layers(model)
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


# --- In every run: the loop callback ---------------------------------------------------------------------


class Diagnostics:
    """Watches a run as the lectures' babysitting routine does (see the module docstring).

    Cost: one forward pass of a fixed batch at the start and after each epoch; at the sampled steps (the
    first ``first_steps`` and every ``every``-th), a copy of the weights and one read-back. Other steps are
    untouched: no host synchronisation.
    """

    def __init__(
        self,
        batch_size: int = 256,
        every: int = 50,
        first_steps: int = 5,
        loss_tolerance: float = 0.5,
        dead_fraction: float = 0.5,
        saturated_fraction: float = 0.5,
        collapsed_std: float = 1e-3,
        update_ratio_high: float = 0.15,
        update_ratio_low: float = 1e-5,
        flat_epochs: int = 2,
        flat_tolerance: float = 0.05,
    ):
        if every < 1 or batch_size < 1:
            raise ValueError(f"diagnostics.every={every} and diagnostics.batch_size={batch_size} must be >= 1")
        self.batch_size = batch_size
        self.every = every
        self.first_steps = first_steps
        self.loss_tolerance = loss_tolerance
        self.thresholds = {
            "dead_fraction": dead_fraction,
            "saturated_fraction": saturated_fraction,
            "collapsed_std": collapsed_std,
        }
        self.update_ratio_high = update_ratio_high
        self.update_ratio_low = update_ratio_low
        self.flat_epochs = flat_epochs
        self.flat_tolerance = flat_tolerance
        self.warnings: list[str] = []
        self.warned: set[str] = set()
        self.losses: dict = {}
        self.train_losses: list[float] = []
        self.epoch_ratios: list[float] = []
        self.saved: list[torch.Tensor] | None = None
        self.gradient_norms: list[torch.Tensor] = []

    def warn(self, kind: str, message: str) -> None:
        """Record a warning, once per kind: the first time a problem shows is the one worth reading."""
        if kind not in self.warned:
            self.warned.add(kind)
            self.warnings.append(message)
            log.warning("diagnostics: %s", message)

    def measure(self, run, state: dict, when: str) -> torch.Tensor:
        logits, rows, _ = probe(run.model, self.images)
        append_jsonl(
            run.recorder.path("activations.jsonl"), {"epoch": state["epoch"], "step": state["step"], "layers": rows}
        )
        for kind, message in activation_warnings(rows, when, **self.thresholds).items():
            self.warn(kind, message)
        symmetric = identical_weights(run.model)
        if symmetric:
            self.warn(
                "identical",
                f"units identical: all units of {symmetric[0]} have the same weights {when}"
                f"{f' (and {len(symmetric) - 1} more layers)' if len(symmetric) > 1 else ''}: symmetry not "
                "broken, every unit gets the same update",
            )
        return logits

    def on_train_start(self, run, state: dict) -> None:
        count = min(self.batch_size, len(run.splits.train_labels))
        self.images, self.labels = run.splits.train_images[:count], run.splits.train_labels[:count]
        self.layers = weight_layers(run.model)
        logits = self.measure(run, state, "at init")
        self.losses = initial_losses(run, logits, self.labels)
        log.info(
            "diagnostics: initial loss %.4f (ln %d classes = %.4f; with regularization %.4f)",
            self.losses["initial_loss"],
            run.splits.num_classes,
            self.losses["expected_initial_loss"],
            self.losses["initial_loss_regularized"],
        )
        message = initial_loss_warning(self.losses, self.loss_tolerance)
        if message:
            self.warn("initial_loss", message)

    def sampled(self, step: int) -> bool:
        return step < self.first_steps or step % self.every == 0

    def on_before_step(self, run, state: dict) -> None:
        if not self.sampled(state["step"]):
            return
        self.learning_rate = run.optimizer.param_groups[0]["lr"]  # the schedule moves it after the step
        self.saved = [weight.detach().clone() for _, weight in self.layers]
        gradients = [w.grad if w.grad is not None else torch.zeros_like(w) for _, w in self.layers]
        self.gradient_norms = torch._foreach_norm(gradients)

    def on_step_end(self, run, state: dict, loss: torch.Tensor) -> None:
        if self.saved is None:
            return
        after = [weight.detach() for _, weight in self.layers]
        updates = torch._foreach_norm(torch._foreach_sub(after, self.saved))
        weights = torch._foreach_norm(self.saved)
        self.saved = None
        update_norms, weight_norms, gradient_norms = (
            torch.stack([torch.stack(updates), torch.stack(weights), torch.stack(self.gradient_norms)]).float().tolist()
        )
        layers = []
        for index, (name, _) in enumerate(self.layers):
            ratio = update_norms[index] / weight_norms[index] if weight_norms[index] > 0 else None
            layers.append(
                {
                    "layer": index + 1,
                    "name": name,
                    "update_ratio": ratio,
                    "gradient_norm": gradient_norms[index],
                    "weight_norm": weight_norms[index],
                }
            )
        append_jsonl(
            run.recorder.path("updates.jsonl"),
            {"step": state["step"], "epoch": state["epoch"] + 1, "lr": self.learning_rate, "layers": layers},
        )
        self.check_updates(layers, state["step"])

    def check_updates(self, layers: list[dict], step: int) -> None:
        """The lectures' rule of thumb: updates about 1e-3 of the weights; far above, the learning rate is too
        high (a non-finite update counts as the highest); far below, too low (judged in the first epoch, so a
        schedule's decay towards zero at the end is not mistaken for it)."""
        ratios = [(row["layer"], row["name"], row["update_ratio"]) for row in layers if row["update_ratio"] is not None]
        if not ratios:
            return
        worst = max(ratios, key=lambda item: item[2] if math.isfinite(item[2]) else math.inf)
        if not math.isfinite(worst[2]) or worst[2] > self.update_ratio_high:
            self.warn(
                "update_high",
                f"update/weight ratio {worst[2]:.2g} at layer {worst[0]} ({worst[1]}) at step {step}: learning rate "
                f"likely too high (the lectures aim for about 1e-3)",
            )
        finite = sorted(ratio for _, _, ratio in ratios if math.isfinite(ratio))
        if finite:
            self.epoch_ratios.append(finite[len(finite) // 2])

    def on_epoch_end(self, run, state: dict, row: dict) -> None:
        epoch = state["epoch"] + 1
        # train_acc is measured during the epoch (with augmentation and regularization), the others after it.
        if "val_acc" in row:
            row["train_val_gap"] = row["train_acc"] - row["val_acc"]
        elif "test_acc" in row:
            row["train_test_gap"] = row["train_acc"] - row["test_acc"]
        self.measure(run, {**state, "epoch": epoch}, f"at epoch {epoch}")
        if epoch == 1 and self.epoch_ratios:
            typical = sorted(self.epoch_ratios)[len(self.epoch_ratios) // 2]
            if typical < self.update_ratio_low:
                self.warn(
                    "update_low",
                    f"update/weight ratio {typical:.1g} (median layer, median step) in epoch 1: learning rate "
                    "likely too low (the lectures aim for about 1e-3)",
                )
        self.train_losses.append(row["train_loss"])
        trend = loss_trend(
            self.train_losses, self.losses.get("initial_loss_regularized"), self.flat_epochs, self.flat_tolerance
        )
        if trend == "rising":
            self.warn(
                "rising",
                f"loss rose for {self.flat_epochs} epochs ({row['train_loss']:.3g} after epoch {epoch}, "
                f"{self.losses['initial_loss_regularized']:.3g} at init): learning rate likely too high",
            )
        elif trend == "flat":
            cannot_learn = self.warned - {"update_high", "update_low"}
            self.warn(
                "flat",
                f"loss flat for {self.flat_epochs} epochs ({row['train_loss']:.3g} after epoch {epoch}, "
                f"{self.losses['initial_loss_regularized']:.3g} at init): learning rate likely too low"
                + (" (or the network cannot learn: see the warnings before this one)" if cannot_learn else ""),
            )

    def on_train_end(self, run, state: dict, summary: dict) -> None:
        summary.update(self.losses)
        summary["warnings"] = list(self.warnings)


# --- python -m runner.diagnose ---------------------------------------------------------------------------


def overfit(run, examples: int, max_steps: int) -> dict:
    """The lectures' second first-iteration check: with regularization off, a network that can learn at all
    drives its training accuracy on a few examples to 100%. Trains on the first ``examples`` training images,
    in batches of at most ``data.batch_size``, at the optimizer's base learning rate, until a whole pass over
    them is classified right (training mode, as measured during training) or ``max_steps`` steps are spent."""
    from runner.loop import autocast, optimize

    images, labels = run.splits.train_images[:examples], run.splits.train_labels[:examples]
    batch_size = min(run.config.data.batch_size, len(labels))
    for group in run.optimizer.param_groups:
        group["lr"] = group.get("initial_lr", group["lr"])  # the schedule may have scaled it (warm-up)
    run.model.train()
    started = time.perf_counter()
    step, accuracy, loss_value = 0, 0.0, math.nan
    while step < max_steps:
        order = torch.randperm(len(labels), device=run.device, generator=run.generator)
        correct = torch.zeros((), device=run.device)
        for start in range(0, len(labels), batch_size):
            indices = order[start : start + batch_size]
            with autocast(run):
                logits = run.model(images[indices])
            loss = run.objective(logits, labels[indices], run.model)
            optimize(run, loss)
            correct += (logits.argmax(1) == labels[indices]).sum()
            step += 1
        accuracy, loss_value = (correct / len(labels)).item(), loss.item()
        if accuracy == 1.0 or not math.isfinite(loss_value):
            break
    return {
        "examples": len(labels),
        "reached": accuracy == 1.0,
        "steps": step,
        "train_acc": accuracy,
        "loss": loss_value,
        "seconds": time.perf_counter() - started,
    }


def unregularized(config: DictConfig) -> DictConfig:
    """The same config with regularizers and augmentation off, and no callbacks."""
    bare = OmegaConf.create(OmegaConf.to_container(config, resolve=False))
    bare.regularizer = {}
    bare.augmentation = {}
    for group in ("diagnostics", "logger"):
        bare[group] = None
    return bare


def network_inputs(run, options: DictConfig) -> tuple[nn.Module, torch.Tensor]:
    """The module to probe and its batch: the network alone on unit-Gaussian inputs (the lectures'
    experiment), or the whole model (preprocessing included) on the first training images."""
    count = min(int(options.batch_size), len(run.splits.train_labels))
    if options.input == "data":
        return run.model, run.splits.train_images[:count]
    if options.input != "gaussian":
        raise ValueError(f"diagnose.input={options.input!r} must be gaussian or data")
    generator = torch.Generator(device=run.device).manual_seed(int(run.config.seed))
    inputs = torch.randn((count, *run.splits.train_images.shape[1:]), generator=generator, device=run.device)
    return run.model[1:], inputs


def plot(rows: list[dict], values: list[torch.Tensor], title: str, path: Path) -> None:
    """The lectures' figure: mean and std of each activation layer against depth, and each layer's histogram."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    count = len(rows)
    columns = min(count, 10) or 1
    histogram_rows = math.ceil(count / columns)
    figure = plt.figure(figsize=(max(10, 1.8 * columns), 3.2 + 1.9 * histogram_rows))
    grid = figure.add_gridspec(1 + histogram_rows, columns, height_ratios=[1.7] + [1] * histogram_rows)
    depth = [row["layer"] for row in rows]
    half = max(1, columns // 2)
    for position, key in ((slice(0, half), "mean"), (slice(half, columns), "std")):
        axis = figure.add_subplot(grid[0, position])
        axis.plot(depth, [row[key] for row in rows], "o-")
        axis.set_title(f"layer {key}")
        axis.set_xlabel("layer")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    low = min((float(v.min()) for v in values if v.numel()), default=-1.0)
    high = max((float(v.max()) for v in values if v.numel()), default=1.0)
    if high <= low:
        low, high = low - 1, high + 1
    for index, (row, data) in enumerate(zip(rows, values, strict=True)):
        axis = figure.add_subplot(grid[1 + index // columns, index % columns])
        counts = torch.histc(data, bins=50, min=low, max=high)
        axis.stairs(counts.numpy(), torch.linspace(low, high, 51).numpy(), fill=True)
        axis.set_title(f"layer {row['layer']}\nstd {row['std']:.2g}", fontsize=8)
        axis.set_yticks([])
        axis.tick_params(labelsize=7)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def choices_title(config: DictConfig) -> str:
    try:
        chosen = HydraConfig.get().runtime.choices
        picked = [f"{group}={chosen[group]}" for group in ("model", "activation", "init", "norm") if group in chosen]
    except ValueError:  # no Hydra context (called from a test)
        picked = []
    knobs = [f"{key}={value}" for key, value in config.model.items() if key in ("depth", "width")]
    return " ".join(picked + knobs)


def diagnose(config: DictConfig, output_dir: str | Path) -> dict:
    """Build the configured network, measure it without training, run the first-iteration checks; returns
    what it wrote to ``diagnose.json``."""
    from runner.norms import has_norm
    from runner.train import build, group_entries

    options = config.diagnose
    output_dir = Path(output_dir)
    # One build, regularization off (the first-iteration checks want it off; the network is measured as the
    # groups build it, without dropout or stochastic-depth layers); probing leaves it untouched for overfit.
    run = build(unregularized(config), output_dir)
    module, inputs = network_inputs(run, options)
    _, rows, values = probe(module, inputs, keep_values=int(options.histogram_values))
    write_json(output_dir / "activations.json", rows)
    title = f"{choices_title(config)}, {options.input} input"
    print(f"\nActivations on a batch of {len(inputs)} ({options.input} input), {title}:")
    print(
        f"{'layer':>5}  {'name':<28} {'module':<10} {'mean':>10} {'std':>10} {'zeros':>6} {'dead':>6} {'saturated':>9}"
    )
    for row in rows:
        saturated = "-" if row["saturated_fraction"] is None else f"{row['saturated_fraction']:.1%}"
        print(
            f"{row['layer']:>5}  {row['name'][-28:]:<28} {row['module'][:10]:<10} {row['mean']:>10.3g} "
            f"{row['std']:>10.3g} {row['zero_fraction']:>6.1%} {row['dead_fraction']:>6.1%} {saturated:>9}"
        )
    if has_norm(instantiate(config.norm)):
        print(
            f"note: norm={config.norm._target_.rsplit('.', 1)[-1]} normalizes each layer's input, which hides what "
            "the initialization does; the lectures' experiment is without it: add norm=none"
        )
    warnings = list(activation_warnings(rows, "at init").values())
    symmetric = identical_weights(run.model)
    if symmetric:
        warnings.append(f"units identical: all units of {symmetric[0]} have the same weights at init")
    if options.figure and rows:
        plot(rows, values, title, output_dir / "activations.png")

    # The first-iteration checks, on real data.
    count = min(config.data.batch_size, len(run.splits.train_labels))
    images, labels = run.splits.train_images[:count], run.splits.train_labels[:count]
    logits, _, _ = probe(run.model, images)
    losses = initial_losses(run, logits, labels, regularizers=group_entries(config.get("regularizer")))
    print(
        f"\nInitial loss on {count} training images: {losses['initial_loss']:.4f} "
        f"(expected ln {run.splits.num_classes} = {losses['expected_initial_loss']:.4f}); "
        f"with regularization {losses['initial_loss_regularized']:.4f}"
    )
    message = initial_loss_warning(losses, float(options.loss_tolerance))
    if message:
        warnings.append(message)
    report = {**losses, "layers": len(rows), "input": options.input}
    if options.overfit:
        outcome = overfit(run, int(options.overfit), int(options.overfit_steps))
        report["overfit"] = outcome
        verdict = "reached" if outcome["reached"] else "did NOT reach"
        print(
            f"Overfitting {outcome['examples']} examples with regularization off: {verdict} 100% training accuracy "
            f"({outcome['train_acc']:.0%}, loss {outcome['loss']:.3g}) in {outcome['steps']} steps, "
            f"{outcome['seconds']:.1f} s"
        )
        if not outcome["reached"]:
            warnings.append(
                f"could not overfit {outcome['examples']} examples in {outcome['steps']} steps "
                f"(training accuracy {outcome['train_acc']:.0%}): check the model, the loss and the learning rate"
            )
    report["warnings"] = warnings
    for message in warnings:
        print(f"warning: {message}")
    write_json(output_dir / "diagnose.json", report)
    print(f"\nOutputs: {output_dir}")
    return report


@hydra.main(version_base="1.3", config_path="../conf", config_name="diagnose")
def main(config: DictConfig) -> None:
    from runner.data import DataError

    try:
        diagnose(config, HydraConfig.get().runtime.output_dir)
    except DataError as error:
        print(f"\n{error}\n", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
