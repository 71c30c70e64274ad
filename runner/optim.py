"""The optimizer (the ``optimizer`` group) and what shapes its parameter groups: per-layer learning-rate
multipliers, the regularizers' per-parameter settings (weight decay), and the large-batch rule ``scale_lr``.

Every option names an optimizer class with ``_partial_: true``; the builder supplies the parameter groups.
A layer asks for its own rate by carrying an ``lr_multiplier`` attribute (airbench's batch norms); any part
of a run asks for per-parameter settings through ``parameter_options(name, parameter)`` (weight decay, a
faster head when fine-tuning). ``optimizer=muon`` (``Muon``) is two optimizers behind one: Muon for the hidden
weight matrices, another ``torch.optim`` class for every other parameter.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable

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
    # scale_lr is the runner's rule, not a torch argument: dropped here, applied to every group's rate below
    # (optimizer=muon has two optimizers, each with its own rate).
    rule = settings.pop("scale_lr", "none")
    factory = instantiate(settings)
    accepted = inspect.signature(factory.func).parameters
    options = {}
    if device.type == "cuda" and "fused" in accepted:
        # Fused kernels update every parameter in one launch; CPU keeps PyTorch's default implementation.
        options["fused"] = True
    if "model" in accepted:
        # An optimizer that treats a layer by its place in the network (Muon: hidden layers only) is shown it.
        options["model"] = model
    optimizer = factory(parameter_groups(model, parts), **options)
    # Before the schedule is built, so every schedule scales a group's multiplied rate as its base rate. A
    # multiplier speeds up learning, not decay: the shrinkage per step, lr x weight decay, stays the base
    # rate's, as in airbench.
    for group in optimizer.param_groups:
        multiplier = group.get("lr_multiplier", 1.0)
        group["lr"] = scale_learning_rate(group["lr"], rule, batch_size) * multiplier
        for key in ("weight_decay", "decoupled_weight_decay_rate"):
            if key in group:
                group[key] /= multiplier
    for part in parts:
        if hasattr(part, "attach_optimizer"):
            part.attach_optimizer(optimizer)
    return optimizer


# --- Muon -------------------------------------------------------------------------------------------------------

# The quintic Newton-Schulz coefficients of Jordan et al. 2024, tuned for speed: five steps bring every singular
# value of a normalized matrix into roughly [0.7, 1.2] instead of exactly to 1, which trains as well.
NEWTON_SCHULZ_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
LEARNING_RATE_ADJUSTMENTS = ("original", "match_rms_adamw", "spectral_unclamped")


def orthogonalize(
    matrix: torch.Tensor, coefficients=NEWTON_SCHULZ_COEFFICIENTS, steps: int = 5, eps: float = 1e-7
) -> torch.Tensor:
    """Approximately U V^T for matrix = U S V^T, by the Newton-Schulz iteration X <- a X + (b A + c A^2) X with
    A = X X^T, started from the matrix divided by its Frobenius norm (so every singular value is at most 1).
    In bfloat16, as Muon does: the iteration is insensitive to rounding and twice as fast on a GPU."""
    a, b, c = coefficients
    x = matrix.bfloat16()
    wide = x.size(0) <= x.size(1)
    x = x if wide else x.T  # the Gram matrix of the short side is the smaller one
    x = x / x.norm().clamp(min=eps)
    for _ in range(steps):
        gram = x @ x.T
        polynomial = torch.addmm(gram, gram, gram, beta=b, alpha=c)  # b A + c A^2, rounded once
        x = torch.addmm(x, polynomial, x, beta=a)
    return x if wide else x.T


def adjusted_learning_rate(learning_rate: float, rule: str | None, shape: torch.Size) -> float:
    """The rate for a (rows x columns) matrix: ``original`` (Jordan 2024) x sqrt(max(1, rows / columns));
    ``match_rms_adamw`` (Liu et al. 2025) x 0.2 sqrt(max(rows, columns)), the update size AdamW's rates expect;
    ``spectral_unclamped`` (Bernstein 2025) x sqrt(rows / columns). As ``torch.optim.Muon`` has them."""
    rows, columns = shape[:2]
    if rule in (None, "original"):
        return learning_rate * math.sqrt(max(1.0, rows / columns))
    if rule == "match_rms_adamw":
        return learning_rate * 0.2 * math.sqrt(max(rows, columns))
    if rule == "spectral_unclamped":
        return learning_rate * math.sqrt(rows / columns)
    raise ValueError(f"adjust_lr_fn must be null or one of {', '.join(LEARNING_RATE_ADJUSTMENTS)}, not {rule!r}")


class OrthogonalizedMomentum(torch.optim.Optimizer):
    """Muon for a PyTorch without ``torch.optim.Muon`` (before 2.9), with its arguments and update rule: the
    momentum buffer B <- m B + (1 - m) g, the update O = orthogonalize(g + m (B - g) with Nesterov, else B), then
    decoupled weight decay w <- w (1 - lr x weight_decay) and w <- w - adjusted lr x O. 2-D parameters only."""

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        weight_decay: float = 0.1,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_coefficients: tuple[float, float, float] = NEWTON_SCHULZ_COEFFICIENTS,
        eps: float = 1e-7,
        ns_steps: int = 5,
        adjust_lr_fn: str | None = None,
    ):
        if adjust_lr_fn not in (None, *LEARNING_RATE_ADJUSTMENTS):
            raise ValueError(f"adjust_lr_fn must be null or one of {', '.join(LEARNING_RATE_ADJUSTMENTS)}")
        defaults = {
            "lr": lr,
            "weight_decay": weight_decay,
            "momentum": momentum,
            "nesterov": nesterov,
            "ns_coefficients": tuple(ns_coefficients),
            "eps": eps,
            "ns_steps": ns_steps,
            "adjust_lr_fn": adjust_lr_fn,
        }
        super().__init__(params, defaults)
        for group in self.param_groups:
            for parameter in group["params"]:
                if parameter.ndim != 2:
                    raise ValueError(f"Muon updates matrices only; a parameter has shape {tuple(parameter.shape)}")

    @torch.no_grad()
    def step(self, closure: Callable | None = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            momentum = group["momentum"]
            for parameter in group["params"]:
                if parameter.grad is None:
                    continue
                gradient = parameter.grad
                state = self.state[parameter]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(gradient)
                buffer = state["momentum_buffer"]
                buffer.lerp_(gradient, 1 - momentum)
                direction = gradient.lerp(buffer, momentum) if group["nesterov"] else buffer
                update = orthogonalize(direction, group["ns_coefficients"], group["ns_steps"], group["eps"])
                rate = adjusted_learning_rate(group["lr"], group["adjust_lr_fn"], parameter.shape)
                parameter.mul_(1 - group["lr"] * group["weight_decay"])
                parameter.add_(update.to(parameter.dtype), alpha=-rate)
        return loss


def muon_class() -> type[torch.optim.Optimizer]:
    """PyTorch's own Muon where it has one (2.9 and later), else ``OrthogonalizedMomentum``."""
    return getattr(torch.optim, "Muon", OrthogonalizedMomentum)


def hidden_matrices(model: nn.Module) -> list[nn.Parameter]:
    """The weights of the hidden layers: every parameter with two or more dimensions but the network's first
    (the input layer, airbench's whitening convolution) and its last (the classifier head), in the order the
    network registers them. Muon is for hidden layers (Jordan 2024); frozen weights count for the order too."""
    weights = [parameter for parameter in model.parameters() if parameter.ndim >= 2]
    return weights[1:-1]


def matrix_order(weight: torch.Tensor) -> list[int]:
    """The dimensions of ``weight`` with the output dimension first and the rest in memory order, so that
    permuting by them and flattening the rest is a view of the same storage whatever the layout (channels_last
    filters too). The order of a matrix's columns changes neither its orthogonalization nor its norm."""
    rest = sorted(range(1, weight.ndim), key=lambda dimension: -weight.stride(dimension))
    return [0, *rest]


class Muon(torch.optim.Optimizer):
    """Muon (Jordan et al. 2024, "Muon: MomentUm Orthogonalized by Newton-Schulz") on the hidden weight
    matrices (``hidden_matrices``: convolution filters and linear weights between the first layer and the
    head), and ``other``, a ``torch.optim`` class given by the config, on every other parameter: biases, norm
    parameters, the first layer and the head, as airbench94_muon splits them.

    One optimizer over the network's own parameters, so that schedules, loss scaling, decoupled weight decay,
    diagnostics and checkpoints treat it as any other: its ``param_groups`` hold the real parameters, Muon's
    groups first, and their settings (the rate a schedule moves) are copied into the two optimizers before each
    step. A filter (out, in, k, k) reaches Muon as an out x (in k k) matrix that shares its storage, so Muon's
    in-place update is the filter's; its gradient is the filter's, flattened the same way, at each step.
    ``normalize_weights`` rescales each matrix to Frobenius norm sqrt(rows) before its step, as airbench94_muon
    does: with a norm after every layer, the function does not depend on the weights' scale, and a fixed scale
    keeps the update's relative size, and so the effective rate, what the schedule says.
    """

    def __init__(
        self,
        params: Iterable,
        model: nn.Module,
        other: Callable[..., torch.optim.Optimizer],
        lr: float = 0.02,
        momentum: float = 0.95,
        nesterov: bool = True,
        weight_decay: float = 0.0,
        ns_steps: int = 5,
        adjust_lr_fn: str | None = None,
        normalize_weights: bool = False,
        fused: bool = False,
    ):
        groups = list(params)
        if groups and not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        hidden = {id(weight) for weight in hidden_matrices(model)}
        matrix_groups, other_groups = [], []
        for group in groups:
            options = {key: value for key, value in group.items() if key != "params"}
            parameters = list(group["params"])
            matrices = [parameter for parameter in parameters if id(parameter) in hidden]
            rest = [parameter for parameter in parameters if id(parameter) not in hidden]
            matrix_groups += [{**options, "params": matrices}] if matrices else []
            other_groups += [{**options, "params": rest}] if rest else []
        # (matrix, weight, order) for each weight of more than two dimensions, whose gradient step() flattens.
        self.flattened: list[tuple[torch.Tensor, torch.Tensor, list[int]]] = []
        self.muon = None
        if matrix_groups:
            views = [{**group, "params": [self.as_matrix(w) for w in group["params"]]} for group in matrix_groups]
            self.muon = muon_class()(
                views,
                lr=lr,
                momentum=momentum,
                nesterov=nesterov,
                weight_decay=weight_decay,
                ns_steps=ns_steps,
                adjust_lr_fn=adjust_lr_fn,
            )
        accepted = inspect.signature(getattr(other, "func", other)).parameters
        fused_option = {"fused": True} if fused and "fused" in accepted else {}
        self.other = other(other_groups, **fused_option) if other_groups else None
        self.optimizers = [optimizer for optimizer in (self.muon, self.other) if optimizer is not None]
        self.normalize_weights = normalize_weights
        inner = self.inner_groups()
        real = [group["params"] for group in matrix_groups + other_groups]
        outer = [{**self.settings_of(group), "params": params} for group, params in zip(inner, real, strict=True)]
        defaults = {key: value for optimizer in reversed(self.optimizers) for key, value in optimizer.defaults.items()}
        super().__init__(outer, defaults)

    def as_matrix(self, weight: torch.Tensor) -> torch.Tensor:
        """The weight itself when it is a matrix, else a 2-D parameter over its storage (``matrix_order``)."""
        if weight.ndim == 2:
            return weight
        order = matrix_order(weight)
        matrix = nn.Parameter(weight.detach().permute(order).view(weight.shape[0], -1), requires_grad=False)
        self.flattened.append((matrix, weight, order))
        return matrix

    @staticmethod
    def settings_of(group: dict) -> dict:
        return {key: value for key, value in group.items() if key != "params"}

    def inner_groups(self) -> list[dict]:
        return [group for optimizer in self.optimizers for group in optimizer.param_groups]

    def share_settings(self) -> None:
        """This optimizer's group settings (what schedules and callbacks change) into the two optimizers."""
        for outer, inner in zip(self.param_groups, self.inner_groups(), strict=True):
            inner.update(self.settings_of(outer))

    @torch.no_grad()
    def step(self, closure: Callable | None = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.share_settings()
        for matrix, weight, order in self.flattened:
            matrix.grad = None if weight.grad is None else weight.grad.permute(order).reshape(matrix.shape)
        if self.normalize_weights and self.muon is not None:
            for group in self.muon.param_groups:
                for matrix in group["params"]:
                    if matrix.grad is not None:
                        matrix.mul_(matrix.shape[0] ** 0.5 / matrix.norm().clamp(min=1e-12))
        for optimizer in self.optimizers:
            optimizer.step()
        for matrix, _, _ in self.flattened:
            matrix.grad = None  # zero_grad clears the filter's own gradient; no second reference outlives the step
        return loss

    def state_dict(self) -> dict:
        self.share_settings()  # so that the saved groups hold the rates the schedule last set
        return {"optimizers": [optimizer.state_dict() for optimizer in self.optimizers]}

    def load_state_dict(self, state_dict: dict) -> None:
        for optimizer, state in zip(self.optimizers, state_dict["optimizers"], strict=True):
            optimizer.load_state_dict(state)
        for outer, inner in zip(self.param_groups, self.inner_groups(), strict=True):
            outer.update(self.settings_of(inner))
