"""Regularizers, and the objective that combines them with the data loss.

A regularizer is any object with some of these methods; the build stage, the objective and the optimizer
builder ask for them, so the training loop never needs to know which regularizers are on:

- ``attach(model) -> model``: change the network (dropout layers, stochastic depth, ...);
- ``attach_optimizer(optimizer)``: hook into the built optimizer (decoupled weight decay);
- ``penalty(model) -> Tensor``: a term added to the loss (L1, elastic net);
- ``targets(targets, num_classes) -> Tensor``: soft targets (label smoothing);
- ``parameter_options(name, parameter) -> dict``: per-parameter optimizer settings (weight decay), which
  ``runner.optim`` gathers into parameter groups;
- ``test_samples``: how many random forward passes to average at evaluation (fractional max-pooling).

Several are used at once (``regularizer=[l2,dropout]``). Batch normalisation also regularizes (each
example's output depends on its random batch-mates), which is why it lives in ``norm``, not here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from runner.errors import ConfigError
from runner.models.layers import Residual


def is_decayed(name: str, parameter: nn.Parameter) -> bool:
    """Weights of convolutions and linear layers; biases and norm scales (1-D tensors) are left alone."""
    return parameter.ndim > 1


class WeightDecay:
    """L2 regularization as weight decay: each step shrinks decayed weights by lr * weight_decay * w.

    With SGD this is the gradient of (weight_decay / 2) * ||w||^2 added to the loss. ``decay_all=true`` also
    decays biases and norm parameters. ``decoupled=true`` shrinks the weights outside the optimizer's update
    (AdamW, Loshchilov and Hutter 2019), so with Adam or momentum the decay is not rescaled or accumulated by
    the optimizer's statistics. ``optimizer=adamw`` decouples whatever weight decay it is given by itself.
    """

    def __init__(self, weight_decay: float = 5e-4, decay_all: bool = False, decoupled: bool = False):
        self.weight_decay = weight_decay
        self.decay_all = decay_all
        self.decoupled = decoupled

    def parameter_options(self, name: str, parameter: nn.Parameter) -> dict:
        decay = self.weight_decay if self.decay_all or is_decayed(name, parameter) else 0.0
        if self.decoupled:
            # The optimizer sees no decay; ``attach_optimizer`` applies it before each step.
            return {"weight_decay": 0.0, "decoupled_weight_decay_rate": decay}
        return {"weight_decay": decay}

    def attach_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        if self.decoupled:
            optimizer.register_step_pre_hook(_decoupled_decay)


@torch.no_grad()
def _decoupled_decay(optimizer: torch.optim.Optimizer, args, kwargs) -> None:
    """w <- w * (1 - lr * weight_decay) before the optimizer's own update, as AdamW does."""
    for group in optimizer.param_groups:
        rate = group.get("decoupled_weight_decay_rate", 0.0)
        parameters = [parameter for parameter in group["params"] if parameter.grad is not None]
        if rate and parameters:
            torch._foreach_mul_(parameters, 1 - group["lr"] * rate)


def _penalized(model: nn.Module, include_all: bool) -> list[nn.Parameter]:
    return [p for name, p in model.named_parameters() if p.requires_grad and (include_all or is_decayed(name, p))]


class L1:
    """strength * sum |w| added to the loss, which drives small weights to exactly zero (lasso)."""

    def __init__(self, strength: float = 1e-5, include_all: bool = False):
        self.strength = strength
        self.include_all = include_all

    def penalty(self, model: nn.Module) -> torch.Tensor:
        parameters = _penalized(model, self.include_all)
        return self.strength * torch.stack(torch._foreach_norm(parameters, 1)).sum()


class ElasticNet:
    """l1 * sum |w| + (l2 / 2) * sum w^2 added to the loss (Zou and Hastie 2005): sparsity and shrinkage."""

    def __init__(self, l1: float = 1e-5, l2: float = 5e-4, include_all: bool = False):
        self.l1 = l1
        self.l2 = l2
        self.include_all = include_all

    def penalty(self, model: nn.Module) -> torch.Tensor:
        parameters = _penalized(model, self.include_all)
        absolute = torch.stack(torch._foreach_norm(parameters, 1)).sum()
        squares = torch.stack(torch._foreach_norm(parameters, 2)).square().sum()
        return self.l1 * absolute + 0.5 * self.l2 * squares


def _replace(model: nn.Module, select, make) -> nn.Module:
    """Replace every submodule ``m`` with ``select(m)`` true by ``make(m)``, in module order."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if select(child):
                setattr(parent, name, make(child))
    return model


def _input_layer(model: nn.Module) -> nn.Module | None:
    """The first convolution or linear layer in module order: it sees the pixels, not learned features."""
    return next((m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))), None)


class Dropout:
    """Inverted dropout (Srivastava et al. 2014): zero each input unit with probability p at train time and
    scale the survivors by 1 / (1 - p), so evaluation uses the network untouched.

    Placed where the lectures place it, on the input of every fully connected layer (the head, a VGG
    classifier, an MLP's hidden layers), never on the pixels. ``spatial=true`` is spatial dropout (Tompson et
    al. 2015): ``torch.nn.Dropout2d`` drops whole channels before every convolution but the first.
    """

    def __init__(self, p: float = 0.5, spatial: bool = False):
        self.p = p
        self.spatial = spatial

    def attach(self, model: nn.Module) -> nn.Module:
        kind, layer = (nn.Conv2d, nn.Dropout2d) if self.spatial else (nn.Linear, nn.Dropout)
        first = _input_layer(model)
        return _replace(model, lambda m: type(m) is kind and m is not first, lambda m: nn.Sequential(layer(self.p), m))


class DropConnectLinear(nn.Linear):
    """DropConnect (Wan et al. 2013): a linear layer whose weights are zeroed at random with probability p
    at train time (survivors scaled by 1 / (1 - p)); evaluation uses all the weights.

    One mask per batch rather than Wan et al.'s one per example, which would need a weight matrix per image.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, p: float = 0.5, **kwargs):
        super().__init__(in_features, out_features, bias=bias, **kwargs)
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = F.dropout(self.weight, self.p, self.training) if self.p > 0 else self.weight
        return F.linear(x, weight, self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, p={self.p}"


class DropConnect:
    """Turn every fully connected layer of the model into a ``DropConnectLinear`` with the same weights."""

    def __init__(self, p: float = 0.5):
        self.p = p

    def _convert(self, linear: nn.Linear) -> DropConnectLinear:
        layer = DropConnectLinear(
            linear.in_features,
            linear.out_features,
            bias=linear.bias is not None,
            p=self.p,
            device=linear.weight.device,
            dtype=linear.weight.dtype,
        )
        layer.load_state_dict(linear.state_dict())
        return layer

    def attach(self, model: nn.Module) -> nn.Module:
        return _replace(model, lambda m: type(m) is nn.Linear, self._convert)


class StochasticDepth:
    """Stochastic depth (Huang et al. 2016): skip each residual branch at train time, keeping block l of L
    with probability 1 - (l / L) (1 - survival_last); evaluation runs every block.

    ``layer`` is ``torchvision.ops.StochasticDepth`` (from the config), which scales kept branches by
    1 / survival so that evaluation needs no rescaling; mode ``row`` drops per image, ``batch`` per batch.
    """

    def __init__(self, survival_last: float = 0.5, layer=None):
        self.survival_last = survival_last
        if layer is None:
            from functools import partial

            from torchvision.ops import StochasticDepth as layer_class

            layer = partial(layer_class, mode="row")
        self.layer = layer

    def drop_probabilities(self, blocks: int) -> list[float]:
        return [index / blocks * (1 - self.survival_last) for index in range(1, blocks + 1)]

    def attach(self, model: nn.Module) -> nn.Module:
        blocks = [module for module in model.modules() if isinstance(module, Residual)]
        if not blocks:
            raise ConfigError("regularizer=stochastic_depth needs a model with residual blocks (model=resnet)")
        for block, drop in zip(blocks, self.drop_probabilities(len(blocks)), strict=True):
            block.branch = nn.Sequential(block.branch, self.layer(p=drop))
        return model


class FractionalMaxPool2d(nn.FractionalMaxPool2d):
    """``torch.nn.FractionalMaxPool2d`` whose window shrinks where the input is too small for it (the last
    2 -> 1 pooling of a deep network), so it can stand in for any ``MaxPool2d``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        out_height, out_width = max(1, int(height * self.output_ratio[0])), max(1, int(width * self.output_ratio[1]))
        kernel = (min(self.kernel_size[0], height - out_height + 1), min(self.kernel_size[1], width - out_width + 1))
        return F.fractional_max_pool2d(x, kernel, output_size=(out_height, out_width))


class FractionalMaxPool:
    """Fractional max-pooling (Graham 2014): every 2x2 max-pooling becomes pooling over random, overlapping
    regions (a new draw for each batch); evaluation averages the predictions of ``test_samples`` draws.

    ``output_ratio=0.5`` keeps every layer's size, so it fits any model; the randomness comes from the
    3x3 overlapping windows. Graham's 1 / sqrt(2) also works with models that end in adaptive pooling.
    """

    def __init__(self, output_ratio: float = 0.5, kernel_size: int = 3, test_samples: int = 4):
        self.output_ratio = output_ratio
        self.kernel_size = kernel_size
        self.test_samples = test_samples

    def attach(self, model: nn.Module) -> nn.Module:
        def is_max_pool(module: nn.Module) -> bool:
            return isinstance(module, nn.MaxPool2d) and module.kernel_size in (2, (2, 2))

        if not any(is_max_pool(module) for module in model.modules()):
            raise ConfigError("regularizer=fractional_max_pool needs a model with 2x2 max-pooling (convnet, fastnet)")
        return _replace(
            model, is_max_pool, lambda m: FractionalMaxPool2d(self.kernel_size, output_ratio=self.output_ratio)
        )


class LabelSmoothing:
    """Label smoothing (Szegedy et al. 2016): targets (1 - smoothing) * one_hot + smoothing / classes."""

    def __init__(self, smoothing: float = 0.1):
        self.smoothing = smoothing

    def targets(self, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
        if targets.ndim == 1:
            targets = F.one_hot(targets, num_classes).float()
        return targets * (1 - self.smoothing) + self.smoothing / num_classes


class Objective:
    """Cross-entropy on the (possibly soft) targets plus every regularizer's penalty."""

    def __init__(self, regularizers: list, num_classes: int):
        self.num_classes = num_classes
        self.target_transforms = [r for r in regularizers if hasattr(r, "targets")]
        self.penalties = [r for r in regularizers if hasattr(r, "penalty")]

    def data_loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        for regularizer in self.target_transforms:
            targets = regularizer.targets(targets, self.num_classes)
        # At least float32 (autocast's bfloat16 logits), float64 kept (gradient checking).
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
        return F.cross_entropy(logits, targets.to(logits.dtype) if targets.is_floating_point() else targets)

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor, model: nn.Module) -> torch.Tensor:
        loss = self.data_loss(logits, targets)
        for regularizer in self.penalties:
            loss = loss + regularizer.penalty(model)
        return loss
