"""Weight initialization, applied to the built network before training.

An initializer is called as ``initializer(model, activation=..., sample=...)``: the activation factory
the model was built with (for the gain) and a batch of real, preprocessed training inputs (for LSUV). The
configs in ``conf/init/`` bind the knobs with ``_partial_: true``.

Every scheme sets the weights of convolutions and linear layers ("weight layers"); normalisation layers keep
their scale 1 and shift 0. Knobs shared by the schemes:

- ``bias``: the value every weight layer's bias is set to (0.01 is the lectures' slightly positive bias for
  ReLU units); ``null`` keeps what the layer had.
- ``zero_residual``: zero the last layer of every residual branch, so each residual block starts as the
  identity (Goyal et al. 2017, "Accurate, Large Minibatch SGD"; the core of Fixup).

fan_in is in_channels x kernel_height x kernel_width for a convolution, in_features for a linear layer.
"""

from __future__ import annotations

import logging
import math

import torch
from torch import nn

from runner.activations import gain as activation_gain
from runner.errors import ConfigError
from runner.models.layers import Residual

log = logging.getLogger("runner")

WEIGHT_LAYERS = (nn.modules.conv._ConvNd, nn.Linear)
NORM_LAYERS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def weight_layers(model: nn.Module) -> list[nn.Module]:
    """Convolutions and linear layers, in the order they were built."""
    return [module for module in model.modules() if isinstance(module, WEIGHT_LAYERS)]


def fans(weight: torch.Tensor) -> tuple[int, int]:
    """(fan_in, fan_out): in_channels x kernel area and out_channels x kernel area (features for a linear)."""
    receptive_field = weight[0][0].numel()
    return weight.shape[1] * receptive_field, weight.shape[0] * receptive_field


def scaled_std(weight: torch.Tensor, gain: float, mode: str) -> float:
    """gain / sqrt(fan), where fan is fan_in, fan_out, or their average (fan_avg, Glorot's choice)."""
    fan_in, fan_out = fans(weight)
    fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}.get(mode)
    if fan is None:
        raise ValueError(f"init.mode={mode!r} must be fan_in, fan_out or fan_avg")
    return gain / math.sqrt(fan)


@torch.no_grad()
def fill(weight: torch.Tensor, std: float, distribution: str) -> None:
    """Zero-mean weights with standard deviation ``std``: normal, or uniform on +-sqrt(3) std."""
    if distribution == "normal":
        weight.normal_(0.0, std)
    elif distribution == "uniform":
        bound = math.sqrt(3.0) * std
        weight.uniform_(-bound, bound)
    else:
        raise ValueError(f"init.distribution={distribution!r} must be normal or uniform")


@torch.no_grad()
def set_biases(model: nn.Module, bias: float | None) -> None:
    if bias is None:
        return
    for layer in weight_layers(model):
        if layer.bias is not None:
            layer.bias.fill_(bias)


def last_layer(branch: nn.Module) -> nn.Module | None:
    """The layer whose zeroing makes the branch output zero: its last weight layer, or the norm after it.

    Zeroing a norm's scale rather than the convolution before it keeps the norm's input variance nonzero,
    so its gradient stays finite.
    """
    candidates = [m for m in branch.modules() if isinstance(m, WEIGHT_LAYERS + NORM_LAYERS)]
    candidates = [m for m in candidates if getattr(m, "weight", None) is not None]
    return candidates[-1] if candidates else None


@torch.no_grad()
def zero_residual_branches(model: nn.Module) -> int:
    """Start every residual block as the identity: zero the last layer of each branch (Goyal et al. 2017)."""
    blocks = [module for module in model.modules() if isinstance(module, Residual)]
    for block in blocks:
        layer = last_layer(block.branch)
        if layer is None:
            continue
        layer.weight.zero_()
        if layer.bias is not None:
            layer.bias.zero_()
    return len(blocks)


def finish(model: nn.Module, bias: float | None, zero_residual: bool) -> nn.Module:
    set_biases(model, bias)
    if zero_residual and not zero_residual_branches(model):
        log.warning("init.zero_residual=true, but %s has no residual blocks: nothing to zero.", type(model).__name__)
    return model


def default(model: nn.Module, activation=None, sample=None, bias=None, zero_residual: bool = False) -> nn.Module:
    """PyTorch's own initialization, as each layer set it when it was built (Kaiming-uniform, a = sqrt(5))."""
    return finish(model, bias, zero_residual)


@torch.no_grad()
def zeros(model: nn.Module, activation=None, sample=None, zero_residual: bool = False) -> nn.Module:
    """All weights and biases zero: every unit of a layer computes the same thing and gets the same
    gradient, so training never breaks the symmetry (the lectures' first failure)."""
    for layer in weight_layers(model):
        layer.weight.zero_()
    return finish(model, 0.0, zero_residual)


@torch.no_grad()
def constant(
    model: nn.Module, activation=None, sample=None, value: float = 0.01, bias=0.0, zero_residual: bool = False
) -> nn.Module:
    """Every weight equal to ``value``: nonzero, but as symmetric as ``zeros``."""
    for layer in weight_layers(model):
        layer.weight.fill_(value)
    return finish(model, bias, zero_residual)


def normal(
    model: nn.Module,
    activation=None,
    sample=None,
    std: float = 0.01,
    bias=0.0,
    zero_residual: bool = False,
) -> nn.Module:
    """Small random numbers, N(0, std^2) whatever the layer's size (cs231n's W = 0.01 * randn): activations
    shrink layer after layer for small std, and saturate tanh units for large std."""
    for layer in weight_layers(model):
        fill(layer.weight, std, "normal")
    return finish(model, bias, zero_residual)


def xavier(
    model: nn.Module,
    activation=None,
    sample=None,
    gain: float = 1.0,
    mode: str = "fan_in",
    distribution: str = "normal",
    bias=0.0,
    zero_residual: bool = False,
) -> nn.Module:
    """Xavier/Glorot (Glorot and Bengio 2010): std = gain / sqrt(fan_in) as the lectures teach it;
    ``mode=fan_avg`` is the paper's sqrt(2 / (fan_in + fan_out))."""
    for layer in weight_layers(model):
        fill(layer.weight, scaled_std(layer.weight, gain, mode), distribution)
    return finish(model, bias, zero_residual)


def kaiming(
    model: nn.Module,
    activation=None,
    sample=None,
    gain: float | None = None,
    mode: str = "fan_in",
    distribution: str = "normal",
    bias=0.0,
    zero_residual: bool = False,
) -> nn.Module:
    """Kaiming/MSRA (He et al. 2015, "Delving Deep into Rectifiers"): std = gain / sqrt(fan_in), the gain
    taken from the activation unless given: sqrt(2) for ReLU, sqrt(2 / (1 + a^2)) for leaky ReLU, 1 for
    SELU (LeCun normal); see ``runner.activations.gain``."""
    gain = activation_gain(activation) if gain is None else gain
    return xavier(model, gain=gain, mode=mode, distribution=distribution, bias=bias, zero_residual=zero_residual)


@torch.no_grad()
def orthogonal(
    model: nn.Module, activation=None, sample=None, gain: float | None = None, bias=0.0, zero_residual: bool = False
) -> nn.Module:
    """Random orthogonal weights times the activation's gain (Saxe et al. 2013, "Exact solutions to the
    nonlinear dynamics of learning in deep linear neural networks"); a convolution's weight is flattened to
    out_channels x fan_in, whose rows (or columns, if there are more rows) are orthonormal."""
    gain = activation_gain(activation) if gain is None else gain
    for layer in weight_layers(model):
        nn.init.orthogonal_(layer.weight, gain=gain)
    return finish(model, bias, zero_residual)


class _Captured(Exception):
    """Stops a forward pass once the layer being measured has produced its output."""


def _layer_output(model: nn.Module, layer: nn.Module, sample: torch.Tensor) -> torch.Tensor:
    captured = []

    def hook(module, inputs, output):
        captured.append(output)
        raise _Captured

    handle = layer.register_forward_hook(hook)
    try:
        model(sample)
    except _Captured:
        pass
    finally:
        handle.remove()
    if not captured:
        raise RuntimeError(f"LSUV: the forward pass never reached {layer}")
    return captured[0]


def execution_order(model: nn.Module, sample: torch.Tensor) -> list[nn.Module]:
    """The weight layers in the order one forward pass runs them (layers it never runs are left out)."""
    order: list[nn.Module] = []

    def record(module, inputs, output):
        if module not in order:
            order.append(module)

    handles = [layer.register_forward_hook(record) for layer in weight_layers(model)]
    try:
        model(sample)
    finally:
        for handle in handles:
            handle.remove()
    return order


@torch.no_grad()
def lsuv(
    model: nn.Module,
    activation=None,
    sample=None,
    tolerance: float = 0.1,
    max_iterations: int = 10,
    bias=0.0,
    zero_residual: bool = False,
) -> nn.Module:
    """Layer-sequential unit variance (Mishkin and Matas 2015, "All you need is a good init"): orthogonal
    weights, then, layer by layer in forward order, divide each layer's weights by the standard deviation
    of its output on a real batch until that output's variance is within ``tolerance`` of 1.

    The batch runs in training mode (norm layers use its statistics, as in training); buffers such as
    batch-norm running statistics are restored afterwards, so the measuring passes leave no trace.
    """
    if sample is None:
        raise ValueError("init=lsuv needs a batch of training inputs (sample=...)")
    orthogonal(model, gain=1.0, bias=0.0)
    saved = {name: buffer.clone() for name, buffer in model.named_buffers()}
    was_training = model.training
    model.train()
    try:
        for layer in execution_order(model, sample):
            for _ in range(max_iterations):
                variance = _layer_output(model, layer, sample).float().var().item()
                if abs(variance - 1.0) < tolerance or variance == 0.0:
                    break
                layer.weight.div_(math.sqrt(variance))
    finally:
        for name, buffer in model.named_buffers():
            buffer.copy_(saved[name])
        model.train(was_training)
    return finish(model, bias, zero_residual)


def output_layer(model: nn.Module) -> nn.Module:
    """The classifier: the last linear layer the model built."""
    linears = [module for module in model.modules() if isinstance(module, nn.Linear)]
    if not linears:
        raise ValueError("the model has no linear output layer")
    return linears[-1]


@torch.no_grad()
def fixup(model: nn.Module, activation=None, sample=None, mode: str = "fan_in", bias=0.0) -> nn.Module:
    """Fixup (Zhang et al. 2019, "Fixup Initialization: Residual Learning Without Normalization").

    He initialization everywhere; inside each of the L residual branches with m weight layers, the layers
    before the last are scaled by L^(-1/(2m-2)) and the last is zeroed (its norm's scale, if a norm follows
    it), so every block starts as the identity and Var(x + F(x)) = Var(x); the classifier starts at zero.
    The paper's scalar biases and multiplier are architecture, not initialization, and are not added here.
    """
    kaiming(model, activation, mode=mode, bias=bias)
    blocks = [module for module in model.modules() if isinstance(module, Residual)]
    if not blocks:
        # With no residual branches Fixup's recipe reduces to He initialization and a zero classifier.
        log.warning("init=fixup: %s has no residual blocks; only the classifier is zeroed.", type(model).__name__)
    for block in blocks:
        layers = weight_layers(block.branch)
        if len(layers) > 1:
            scale = len(blocks) ** (-1.0 / (2 * len(layers) - 2))
            for layer in layers[:-1]:
                layer.weight.mul_(scale)
    zero_residual_branches(model)
    classifier = output_layer(model)
    classifier.weight.zero_()
    if classifier.bias is not None:
        classifier.bias.zero_()
    return model


def whitening(
    model: nn.Module,
    activation=None,
    sample=None,
    epsilon: float = 5e-4,
    freeze: bool = True,
    freeze_bias: bool = False,
    identity: bool = False,
    bias=None,
    zero_residual: bool = False,
) -> nn.Module:
    """PCA whitening of the first convolution's input patches (airbench, Jordan 2024).

    The lectures' PCA whitening, applied to k x k patches instead of whole images: the first convolution's
    filters become the eigenvectors v of the training patches' covariance scaled by 1/sqrt(lambda + epsilon),
    followed by their negatives (so a ReLU-like unit after them passes both signs). Its output channels are
    then decorrelated with unit variance. ``freeze`` keeps them fixed during training, ``freeze_bias`` the
    convolution's bias too (at zero); then backpropagation stops at the second layer, which saves computing
    the gradient of the widest activation. Every other layer keeps PyTorch's initialization, except that
    ``identity`` makes each later convolution's first ``in_channels`` filters identities (airbench's Dirac
    initialization): every block starts close to passing its input on, an implicit residual connection.
    A stem of ``2 x in_channels x k x k`` output channels (24 for a 2x2 RGB stem) whitens every component; a
    narrower one, of 2m channels, keeps the m leading components, the lectures' PCA that drops the directions of
    least variance first: a 16-channel stem keeps 8 of 12 and makes the widest layer after it a third cheaper.
    """
    if sample is None:
        raise ValueError("init=whitening needs a batch of training images to measure patch statistics")
    stem = next((layer for layer in model.modules() if isinstance(layer, nn.Conv2d)), None)
    if stem is None:
        raise ConfigError("init=whitening needs a model whose first layer is a convolution (model=fastnet, convnet)")
    height, width = stem.kernel_size
    dimension = stem.in_channels * height * width
    kept, odd = divmod(stem.out_channels, 2)
    if odd or kept > dimension:
        raise ConfigError(
            f"init=whitening needs a first convolution with an even number of output channels, at most 2 x "
            f"{dimension} = {2 * dimension} for its {height}x{width} patches (each kept component and its "
            f"negative); it has {stem.out_channels} (fastnet: model.stem_width)"
        )
    patches = torch.nn.functional.unfold(sample.detach().double(), (height, width), stride=stem.stride)
    patches = patches.transpose(1, 2).reshape(-1, dimension)
    patches = patches - patches.mean(0)
    covariance = patches.T @ patches / len(patches)
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)  # in ascending order: the leading ones last
    filters = (eigenvectors[:, -kept:] / (eigenvalues[-kept:] + epsilon).sqrt()).T
    with torch.no_grad():
        stem.weight.copy_(torch.cat([filters, -filters]).view_as(stem.weight).to(stem.weight.dtype))
        if stem.bias is not None:
            stem.bias.zero_()
    stem.weight.requires_grad_(not freeze)
    if identity:
        for layer in model.modules():
            if isinstance(layer, nn.Conv2d) and layer is not stem and layer.groups == 1:
                with torch.no_grad():
                    nn.init.dirac_(layer.weight[: layer.in_channels])
    if stem.bias is not None:
        stem.bias.requires_grad_(not freeze_bias)
    return finish(model, bias, zero_residual)
