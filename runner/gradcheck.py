"""Gradient checking, the lectures' one-time check of one's own code: the analytic gradient of every parameter
tensor against a centred difference of the loss, in float64, on a few images.

    python -m runner.gradcheck                                        # the default network and loss
    python -m runner.gradcheck model=mlp activation=tanh regularizer=[l2,dropout]
    python -m runner.gradcheck activation._target_=my_layers.MyReLU   # a layer of one's own, from this folder

Any configured model, activation, norm, regularizer and loss: the network is built as a run builds it
(preprocessing, regularizers attached), switched to float64, and scored by the run's objective (cross-entropy,
label smoothing, the penalties) plus the weight decay's L2 term. Random layers (dropout) draw the same masks
for every evaluation. For each parameter tensor, a sample of its entries is checked; the relative error
|analytic - numerical| / max(|analytic|, |numerical|) reads as the lectures read it: below 1e-7 the code is
right; 1e-4 and above it is wrong, for smooth functions. ReLU and max-pooling have kinks, where a centred
difference that crosses one is wrong whatever the code: an entry whose left and right differences disagree
sits on a kink, and is counted apart, not as a failure. Exit code 0 when every tensor passes, 1 (naming the
offending tensors) when one does not.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import hydra
import torch
import torch.nn.functional as F
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from torch import nn
from tqdm import tqdm

from runner import exempt_from_collection, project_path
from runner.activations import Maxout
from runner.catalogue import refuse_mistyped
from runner.errors import USER_ERROR_EXIT, RunnerError
from runner.files import write_json
from runner.probes import weight_decay_penalty
from runner.run import build

FINE = 1e-7  # the lectures: below this, the gradient is right
WRONG = 1e-4  # and at or above this, wrong (for a smooth function)


@dataclass
class Checked:
    name: str
    shape: tuple[int, ...]
    entries: int  # entries checked
    kinks: int  # entries whose step crossed a kink, left out of the error
    error: float  # the largest relative error of the others

    @property
    def verdict(self) -> str:
        if self.entries == self.kinks:
            return "only kinks"
        return "fine" if self.error < FINE else ("WRONG" if self.error >= WRONG else "suspect")


def relative_error(analytic: float, numerical: float) -> float:
    """|a - n| / max(|a|, |n|), with gradients below 1e-6 measured against 1e-6: the centred difference's own
    rounding, float64's 2e-16 of the loss over the step, is about 5e-11, as large as such a gradient's digits."""
    return abs(analytic - numerical) / max(abs(analytic), abs(numerical), 1e-6)


def side(module: nn.Module, inputs: torch.Tensor) -> torch.Tensor | None:
    """Which linear piece each unit of a piecewise-linear module is on (its kinks lie between the pieces), or
    None for a smooth module."""
    if isinstance(module, (nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.SELU)) or (
        isinstance(module, nn.ELU) and module.alpha != 1.0
    ):
        return inputs > 0
    if isinstance(module, nn.Hardtanh):  # ReLU6 too
        return torch.stack([inputs > module.min_val, inputs < module.max_val])
    if isinstance(module, nn.MaxPool2d):
        options = (module.kernel_size, module.stride, module.padding, module.dilation, module.ceil_mode)
        return F.max_pool2d(inputs, *options, return_indices=True)[1]
    if isinstance(module, nn.AdaptiveMaxPool2d):
        return F.adaptive_max_pool2d(inputs, module.output_size, return_indices=True)[1]
    if isinstance(module, Maxout):
        return inputs.unflatten(1, (module.units, module.pieces)).argmax(2)
    return None


# The modules with kinks that ``side`` can tell the pieces of.
PIECEWISE = (nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.SELU, nn.ELU, nn.Hardtanh, nn.MaxPool2d, nn.AdaptiveMaxPool2d, Maxout)


class KinkWatch:
    """The pieces every piecewise-linear unit of the network was on in the last evaluation: a step that moves
    any unit to another piece crossed a kink, where the centred difference is wrong whatever the code."""

    def __init__(self, model: nn.Module):
        self.pattern: list[torch.Tensor] = []
        watched = [module for module in model.modules() if isinstance(module, PIECEWISE)]
        self.kinked = sorted({type(module).__name__ for module in watched})
        self.handles = [module.register_forward_hook(self.hook) for module in watched]

    def hook(self, module, inputs, output) -> None:
        pieces = side(module, inputs[0])
        if pieces is not None:
            self.pattern.append(pieces)

    def evaluate(self, loss) -> tuple[float, list[torch.Tensor]]:
        self.pattern = []
        return loss().item(), self.pattern


def loss_function(run, images: torch.Tensor, labels: torch.Tensor, seed: int):
    """The run's whole loss as a function of its parameters' current values, with the same random draws
    (dropout masks) at every call."""
    groups = run.optimizer.param_groups

    def loss() -> torch.Tensor:
        torch.manual_seed(seed)
        logits = run.model(images)
        return run.objective(logits, labels, run.model) + weight_decay_penalty(run.model, groups)

    return loss


def check_tensor(name: str, parameter: nn.Parameter, loss, watch: KinkWatch, entries: int, step: float, generator):
    """Compare the analytic gradient of ``entries`` sampled entries of ``parameter`` with centred
    differences of ``loss``; entries whose step crossed a kink are counted apart."""
    (analytic,) = torch.autograd.grad(loss(), [parameter])
    flat, gradient = parameter.data.view(-1), analytic.reshape(-1)
    chosen = torch.randperm(flat.numel(), generator=generator)[:entries].tolist()
    worst, kinks = 0.0, 0
    with torch.no_grad():
        for index in chosen:
            kept = flat[index].item()
            flat[index] = kept + step
            above, pieces_above = watch.evaluate(loss)
            flat[index] = kept - step
            below, pieces_below = watch.evaluate(loss)
            flat[index] = kept
            if any(not torch.equal(first, second) for first, second in zip(pieces_above, pieces_below, strict=True)):
                kinks += 1
                continue
            worst = max(worst, relative_error(gradient[index].item(), (above - below) / (2 * step)))
    return Checked(name, tuple(parameter.shape), len(chosen), kinks, worst)


def gradcheck(config: DictConfig, output_dir: str | Path) -> list[Checked]:
    """Build the configured network, check every trainable parameter tensor, print the table and write
    ``gradcheck.json``; returns the checks."""
    options = config.gradcheck
    run = build(config, output_dir)
    model = run.model.double()
    model.train()
    count = min(int(options.images), len(run.splits.train_labels))
    images = run.splits.train_images[:count].double() / 255
    labels = run.splits.train_labels[:count]
    loss = loss_function(run, images, labels, int(config.seed))
    generator = torch.Generator().manual_seed(int(config.seed))
    watch = KinkWatch(model)
    parameters = [(name, parameter) for name, parameter in model.named_parameters() if parameter.requires_grad]
    # Two float64 forward passes per entry: seconds for a small network, minutes for a ResNet on a CPU.
    bar = tqdm(parameters, desc="checking", unit="tensor", leave=False, disable=not sys.stderr.isatty())
    checks = [
        check_tensor(name, parameter, loss, watch, int(options.entries), float(options.step), generator)
        for name, parameter in bar
    ]
    kinked = watch.kinked
    width = max(len(check.name) for check in checks)
    print(f"\nGradient check, float64, {count} images, {options.entries} entries per tensor, step {options.step}:")
    print(f"{'parameter'.ljust(width)}  {'shape':<18} {'checked':>7} {'kinks':>5} {'max rel. error':>14}  verdict")
    for check in checks:
        shape = "x".join(map(str, check.shape))
        print(
            f"{check.name.ljust(width)}  {shape:<18} {check.entries:>7} {check.kinks:>5} {check.error:>14.2e}  "
            f"{check.verdict}"
        )
    wrong = [check for check in checks if check.verdict == "WRONG"]
    print(
        "\nThe lectures' reading: below 1e-7 the gradient is right; 1e-4 and above it is wrong, for a smooth "
        "function; in between, look closer (deep networks compound errors)."
    )
    if kinked:
        print(
            f"This network has kinks ({', '.join(kinked)}): a centred difference across one is wrong whatever the "
            "code, so entries whose step moved a unit to another linear piece are counted under 'kinks' and left "
            "out. With fewer images fewer kinks are crossed; a smooth activation (gelu, softplus) has none."
        )
    if wrong:
        names = ", ".join(check.name for check in wrong)
        print(f"\nFAILED: the analytic gradient of {names} disagrees with the numerical one (>= 1e-4).")
    else:
        print("\nPassed: every parameter tensor's analytic gradient agrees with the numerical one.")
    write_json(Path(output_dir) / "gradcheck.json", {"checks": [vars(check) for check in checks], "kinks": kinked})
    return checks


@hydra.main(version_base="1.3", config_path=project_path("conf"), config_name="gradcheck")
def run(config: DictConfig) -> None:
    try:
        checks = gradcheck(config, HydraConfig.get().runtime.output_dir)
    except RunnerError as error:
        print(f"\n{error}\n", file=sys.stderr)
        sys.exit(USER_ERROR_EXIT)
    sys.exit(1 if any(check.verdict == "WRONG" for check in checks) else 0)


def main() -> None:
    refuse_mistyped(sys.argv[1:])
    run()


if __name__ == "__main__":
    exempt_from_collection()
    main()
