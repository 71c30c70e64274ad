"""The lectures' activation-statistics experiment and first-iteration checks, without training:

    python -m runner.diagnose model=mlp model.depth=10 model.width=500 activation=tanh norm=none init=small
    python -m runner.diagnose diagnose.overfit=50

builds the network from the same config groups as ``runner.train``, feeds it a batch (unit Gaussian by
default, as in the lectures' experiment; ``diagnose.input=data`` for real images), prints and saves each
layer's statistics (``activations.json``) and the lectures' figure (``activations.png``), then runs the
first-iteration checks on real data: the initial loss, and ``diagnose.overfit=N`` (train on N examples with
regularization off until they are all classified right). The measurements are ``runner.probes``'.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from runner import exempt_from_collection
from runner.catalogue import refuse_mistyped
from runner.device import autocast
from runner.errors import USER_ERROR_EXIT, RunnerError
from runner.files import write_json
from runner.loop import optimize
from runner.norms import has_norm
from runner.probes import activation_warnings, identical_weights, initial_loss_warning, initial_losses, probe
from runner.run import build, group_entries


def overfit(run, examples: int, max_steps: int) -> dict:
    """The lectures' second first-iteration check: with regularization off, a network that can learn at all
    drives its training accuracy on a few examples to 100%. Trains on the first ``examples`` training images,
    in batches of at most ``data.batch_size``, at the optimizer's base learning rate, until a whole pass over
    them is classified right (training mode, as measured during training) or ``max_steps`` steps are spent."""
    images, labels = run.splits.train_images[:examples], run.splits.train_labels[:examples]
    batch_size = min(run.batch_size, len(labels))
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
            with autocast(run.device, run.autocast_dtype):
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
    for group in ("averaging", "diagnostics", "logger"):
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
    images, labels = run.splits.train_images[: run.batch_size], run.splits.train_labels[: run.batch_size]
    logits, _, _ = probe(run.model, images)
    losses = initial_losses(run, logits, labels, regularizers=group_entries(config.get("regularizer")))
    print(
        f"\nInitial loss on {len(labels)} training images: {losses['initial_loss']:.4f} "
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
def run(config: DictConfig) -> None:
    try:
        diagnose(config, HydraConfig.get().runtime.output_dir)
    except RunnerError as error:
        print(f"\n{error}\n", file=sys.stderr)
        sys.exit(USER_ERROR_EXIT)


def main() -> None:
    """``python -m runner.diagnose``: mistyped keys and options are named first, as for runner.train."""
    refuse_mistyped(sys.argv[1:])
    run()


if __name__ == "__main__":
    exempt_from_collection()
    main()
