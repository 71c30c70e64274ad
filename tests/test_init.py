"""Every initializer against its formula: per-layer standard deviations, LSUV's unit variances, Fixup's
identity blocks, and the symmetry that zeros never break."""

import functools
import math
import time

import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from runner.init import fans, weight_layers, zero_residual_branches
from runner.models.layers import Residual
from runner.models.resnet import ResNet
from runner.norms import BatchNorm
from tests.conftest import SMOKE, compose_config

OPTIONS_TESTED = {
    "init": {
        "default",
        "zeros",
        "constant",
        "normal",
        "small",
        "large",
        "xavier",
        "kaiming",
        "msra",
        "orthogonal",
        "lsuv",
        "fixup",
    }
}

RELU = functools.partial(nn.ReLU)
NO_NORM = functools.partial(nn.Identity)


@functools.cache
def composed(*overrides: str):
    """Composing is the slow part of these tests: each distinct config is composed once per session."""
    return compose_config(list(overrides))


def initializer(option: str, *overrides: str):
    return instantiate(composed(f"init={option}", *overrides).init)


def big_layers() -> nn.Sequential:
    """Layers large enough that a sample std is within 1-2% of the true one."""
    return nn.Sequential(
        nn.Conv2d(64, 96, 3, padding=1),
        nn.Conv2d(96, 128, 5, padding=2),
        nn.Linear(1200, 300),
        nn.Linear(300, 700),
    )


def stds(model: nn.Module) -> list[float]:
    return [layer.weight.std().item() for layer in weight_layers(model)]


def assert_stds(model: nn.Module, formula) -> None:
    for layer in weight_layers(model):
        expected = formula(*fans(layer.weight))
        assert layer.weight.std().item() == pytest.approx(expected, rel=0.05), layer
        assert abs(layer.weight.mean().item()) < 0.05 * expected


def test_fan_in_of_a_convolution_is_in_channels_times_kernel_area():
    assert fans(nn.Conv2d(64, 96, 5).weight) == (64 * 25, 96 * 25)
    assert fans(nn.Linear(1200, 300).weight) == (1200, 300)


@pytest.mark.parametrize(("option", "std"), [("normal", 0.01), ("small", 0.01), ("large", 0.05)])
def test_normal_presets_have_a_fixed_std(option, std):
    model = big_layers()
    initializer(option)(model, activation=RELU)
    assert_stds(model, lambda fan_in, fan_out: std)
    assert all(layer.bias.abs().max() == 0 for layer in weight_layers(model))


def test_normal_std_is_a_knob():
    model = big_layers()
    initializer("normal", "init.std=0.2")(model, activation=RELU)
    assert_stds(model, lambda fan_in, fan_out: 0.2)


@pytest.mark.parametrize("distribution", ["normal", "uniform"])
def test_xavier_is_one_over_sqrt_fan_in_as_taught(distribution):
    model = big_layers()
    initializer("xavier", f"init.distribution={distribution}")(model, activation=RELU)
    assert_stds(model, lambda fan_in, fan_out: 1 / math.sqrt(fan_in))
    if distribution == "uniform":
        for layer in weight_layers(model):
            assert layer.weight.abs().max().item() <= math.sqrt(3 / fans(layer.weight)[0]) + 1e-7


def test_xavier_fan_avg_is_glorots_two_over_fan_in_plus_fan_out():
    model = big_layers()
    initializer("xavier", "init.mode=fan_avg")(model, activation=RELU)
    assert_stds(model, lambda fan_in, fan_out: math.sqrt(2 / (fan_in + fan_out)))


@pytest.mark.parametrize(
    ("option", "activation", "gain"),
    [
        ("kaiming", ["activation=relu"], math.sqrt(2)),
        ("msra", ["activation=relu"], math.sqrt(2)),
        ("kaiming", ["activation=leaky_relu", "activation.negative_slope=0.2"], math.sqrt(2 / 1.04)),
        ("kaiming", ["activation=selu"], 1.0),
        ("kaiming", ["activation=tanh"], 5 / 3),
    ],
)
def test_kaiming_std_is_gain_over_sqrt_fan_in_with_the_activations_gain(option, activation, gain):
    config = composed(f"init={option}", *activation)
    model = big_layers()
    instantiate(config.init)(model, activation=instantiate(config.activation))
    assert_stds(model, lambda fan_in, fan_out: gain / math.sqrt(fan_in))


def test_init_bias_sets_every_bias():
    model = big_layers()
    initializer("kaiming", "init.bias=0.01")(model, activation=RELU)
    assert all(torch.all(layer.bias == 0.01) for layer in weight_layers(model))


def test_default_keeps_pytorchs_initialization():
    torch.manual_seed(0)
    model = big_layers()
    before = [parameter.clone() for parameter in model.parameters()]
    initializer("default")(model, activation=RELU)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    # PyTorch's Kaiming-uniform with a = sqrt(5): std = 1 / sqrt(3 fan_in).
    assert_stds(model, lambda fan_in, fan_out: 1 / math.sqrt(3 * fan_in))


def test_constant_sets_every_weight_to_the_value():
    model = big_layers()
    initializer("constant", "init.value=0.03")(model, activation=RELU)
    assert all(torch.all(layer.weight == 0.03) for layer in weight_layers(model))


def test_orthogonal_weights_have_orthonormal_rows_times_the_gain():
    model = nn.Sequential(nn.Conv2d(16, 32, 3), nn.Linear(300, 200), nn.Linear(200, 300))
    initializer("orthogonal")(model, activation=RELU)
    for layer in weight_layers(model):
        matrix = layer.weight.flatten(1) / math.sqrt(2)
        gram = matrix @ matrix.T if matrix.shape[0] <= matrix.shape[1] else matrix.T @ matrix
        torch.testing.assert_close(gram, torch.eye(len(gram)), atol=1e-5, rtol=0)


def layer_output_variances(model: nn.Module, sample: torch.Tensor) -> list[float]:
    variances: list[float] = []
    handles = [
        layer.register_forward_hook(lambda module, inputs, output: variances.append(output.var().item()))
        for layer in weight_layers(model)
    ]
    with torch.no_grad():
        model(sample)
    for handle in handles:
        handle.remove()
    return variances


@pytest.mark.parametrize("norm", [NO_NORM, functools.partial(BatchNorm)])
def test_lsuv_gives_every_layer_unit_output_variance_on_the_batch(norm):
    torch.manual_seed(0)
    model = ResNet(10, (3, 16, 16), RELU, norm, depth=14, width=8)
    sample = torch.randn(64, 3, 16, 16) * 3 + 1
    running = [buffer.clone() for buffer in model.buffers()]
    initializer("lsuv")(model, activation=RELU, sample=sample)
    # The measuring passes leave batch-norm running statistics as they were.
    assert all(torch.equal(a, b) for a, b in zip(running, model.buffers(), strict=True))
    variances = layer_output_variances(model, sample)
    assert len(variances) == len(weight_layers(model))
    assert all(abs(variance - 1) < 0.1 for variance in variances), variances


def residual_stack(depth: int, width: int = 32) -> nn.Sequential:
    """A deep residual stack without normalisation: Fixup's setting."""
    blocks = [
        Residual(nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1)))
        for _ in range(depth)
    ]
    return nn.Sequential(*blocks, nn.Flatten(), nn.Linear(width * 8 * 8, 10))


def test_fixup_keeps_a_deep_residual_stack_at_its_input_variance():
    torch.manual_seed(0)
    depth = 32
    x = torch.randn(16, 32, 8, 8)
    model = residual_stack(depth)
    initializer("kaiming")(model, activation=RELU)
    with torch.no_grad():
        exploded = model[:-2](x).var().item()
    assert exploded > 10 * x.var().item()  # He init alone: the variance grows with every block

    initializer("fixup")(model, activation=RELU)
    with torch.no_grad():
        kept = model[:-2](x).var().item()
        logits = model(x)
    assert kept == pytest.approx(x.var().item(), rel=1e-6)
    assert torch.all(logits == 0)  # the classifier starts at zero
    first, last = model[0].branch[0], model[0].branch[2]
    he_std = math.sqrt(2 / (32 * 9))
    assert first.weight.std().item() == pytest.approx(he_std * depth ** (-1 / 2), rel=0.05)  # L^(-1/(2m-2)), m=2
    assert torch.all(last.weight == 0)


def test_fixup_and_zero_residual_zero_the_norm_scale_when_a_norm_ends_the_branch():
    model = ResNet(10, (3, 16, 16), RELU, functools.partial(BatchNorm), depth=8, width=4)
    initializer("kaiming", "init.zero_residual=true")(model, activation=RELU)
    blocks = [module for module in model.modules() if isinstance(module, Residual)]
    assert len(blocks) == 3
    for block in blocks:
        assert torch.all(block.branch[-1].weight == 0)
        block.eval()
        x = torch.randn(2, block.branch[0].in_channels, 8, 8)
        with torch.no_grad():
            torch.testing.assert_close(block.branch(x), torch.zeros_like(block.branch(x)))


def test_zero_residual_works_on_top_of_any_initializer():
    model = residual_stack(3)
    assert zero_residual_branches(model) == 3
    initializer("orthogonal", "init.zero_residual=true")(model, activation=RELU)
    x = torch.randn(2, 32, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(model[:3](x), x)


def test_zeros_never_breaks_the_symmetry_between_hidden_units(tmp_path):
    from runner.loop import fit
    from runner.run import build

    config = compose_config(
        [
            *SMOKE,
            "init=zeros",
            "model=mlp",
            "model.depth=2",
            "model.width=16",
            "norm=none",
            "activation=sigmoid",
            "optimizer.lr=0.5",
        ]
    )
    run = build(config, tmp_path)
    network = run.model[1]
    fit(run, {"choices": {}, "overrides": [], "seed": 0, "started": time.time()})
    hidden = [layer for layer in weight_layers(network)]
    assert any(layer.weight.abs().sum() > 0 for layer in hidden)  # it trained ...
    for layer in hidden[:-1]:
        # ... but every unit of a layer still has the same incoming weights and bias
        torch.testing.assert_close(layer.weight, layer.weight[:1].expand_as(layer.weight))
        torch.testing.assert_close(layer.bias, layer.bias[:1].expand_as(layer.bias))
    head = hidden[-1].weight  # and every class sees the same value from every hidden unit
    torch.testing.assert_close(head, head[:, :1].expand_as(head))
