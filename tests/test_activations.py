"""Every activation option against its formula, built from its YAML file as a run would build it."""

import functools
import math

import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from runner.activations import Maxout, gain, pieces
from runner.models.layers import conv_norm_activation, linear_norm_activation, standalone_activation
from tests.conftest import compose_config

OPTIONS_TESTED = {
    "activation": {
        "sigmoid",
        "tanh",
        "relu",
        "leaky_relu",
        "prelu",
        "elu",
        "selu",
        "gelu",
        "gelu_tanh",
        "silu",
        "softplus",
        "mish",
        "maxout",
    }
}

X = torch.linspace(-6, 6, 1201, dtype=torch.float64)


@functools.cache
def composed(*overrides: str):
    """Composing is the slow part of these tests: each distinct config is composed once per session."""
    return compose_config(list(overrides))


def factory(option: str, *overrides: str):
    return instantiate(composed(f"activation={option}", *overrides).activation)


def apply(option: str, x: torch.Tensor = X, *overrides: str) -> torch.Tensor:
    return factory(option, *overrides)().double()(x)


def derivative(option: str, x: torch.Tensor = X) -> torch.Tensor:
    x = x.clone().requires_grad_()
    module = factory(option)().double()
    (grad,) = torch.autograd.grad(module(x).sum(), x)
    return grad


def sigmoid(x):
    return 1 / (1 + torch.exp(-x))


def normal_cdf(x):
    return 0.5 * (1 + torch.erf(x / math.sqrt(2)))


FORMULAS = {
    "sigmoid": sigmoid,
    "tanh": lambda x: (torch.exp(x) - torch.exp(-x)) / (torch.exp(x) + torch.exp(-x)),
    "relu": lambda x: torch.where(x > 0, x, 0.0),
    "leaky_relu": lambda x: torch.where(x > 0, x, 0.01 * x),
    "prelu": lambda x: torch.where(x > 0, x, 0.25 * x),
    "elu": lambda x: torch.where(x > 0, x, torch.exp(x) - 1),
    "selu": lambda x: 1.0507009873554805 * torch.where(x > 0, x, 1.6732632423543772 * (torch.exp(x) - 1)),
    "gelu": lambda x: x * normal_cdf(x),
    "gelu_tanh": lambda x: 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3))),
    "silu": lambda x: x * sigmoid(x),
    "softplus": lambda x: torch.log1p(torch.exp(x)),
    "mish": lambda x: x * torch.tanh(torch.log1p(torch.exp(x))),
}


@pytest.mark.parametrize("option", sorted(FORMULAS))
def test_activation_matches_its_formula(option):
    torch.testing.assert_close(apply(option), FORMULAS[option](X), rtol=1e-6, atol=1e-6)


def test_sigmoid_saturates_and_its_gradient_is_at_most_a_quarter():
    grad = derivative("sigmoid")
    torch.testing.assert_close(grad, sigmoid(X) * (1 - sigmoid(X)))
    assert grad.max().item() == pytest.approx(0.25)
    assert derivative("sigmoid", torch.tensor([-10.0, 10.0], dtype=torch.float64)).max() < 1e-4


def test_tanh_is_zero_centred_but_saturates():
    assert apply("tanh", torch.tensor([0.0], dtype=torch.float64)).item() == 0
    torch.testing.assert_close(derivative("tanh"), 1 - torch.tanh(X) ** 2)
    assert derivative("tanh", torch.tensor([-10.0, 10.0], dtype=torch.float64)).max() < 1e-7


def test_relu_gradient_is_zero_below_zero_and_one_above():
    grad = derivative("relu")
    assert (grad[X < 0] == 0).all() and (grad[X > 0] == 1).all()


def test_leaky_relu_slope_is_a_knob():
    grad = derivative("leaky_relu")
    torch.testing.assert_close(grad[X < 0], torch.full_like(grad[X < 0], 0.01))
    assert apply("leaky_relu", torch.tensor([-2.0], dtype=torch.float64), "activation.negative_slope=0.1").item() == (
        pytest.approx(-0.2)
    )


def test_prelu_slope_is_learned():
    module = factory("prelu")()
    (slope,) = list(module.parameters())
    assert slope.item() == pytest.approx(0.25)
    module(torch.tensor([-2.0, 3.0])).sum().backward()
    assert slope.grad.item() == pytest.approx(-2.0)  # d/da of a * x for the negative input


def test_elu_alpha_is_the_negative_saturation():
    assert apply("elu", torch.tensor([-50.0], dtype=torch.float64), "activation.alpha=2.0").item() == pytest.approx(
        -2.0
    )


def test_selu_keeps_unit_gaussians_at_zero_mean_and_unit_variance():
    torch.manual_seed(0)
    x = torch.randn(1_000_000, dtype=torch.float64)
    y = apply("selu", x)
    assert abs(y.mean().item()) < 5e-3 and abs(y.var().item() - 1) < 5e-3


def test_softplus_derivative_is_the_sigmoid():
    torch.testing.assert_close(derivative("softplus"), sigmoid(X))


def test_gelu_config_switches_to_the_tanh_approximation():
    approximate = apply("gelu", X, "activation.approximate=tanh")
    torch.testing.assert_close(approximate, FORMULAS["gelu_tanh"](X))
    assert (approximate - apply("gelu")).abs().max() < 1e-3


def test_maxout_takes_the_max_over_k_pieces_per_unit():
    module = factory("maxout", "activation.pieces=3")(units=4)
    x = torch.randn(5, 12, 2, 2)
    expected = torch.stack([x[:, 3 * unit : 3 * unit + 3].max(dim=1).values for unit in range(4)], dim=1)
    torch.testing.assert_close(module(x), expected)
    torch.testing.assert_close(module(x[:, :, 0, 0]), expected[:, :, 0, 0])
    with pytest.raises(ValueError, match="3 outputs per unit"):
        factory("maxout", "activation.pieces=3")()(x)


def test_maxout_widens_the_layer_before_it_in_conv_and_linear_layers():
    activation = factory("maxout", "activation.pieces=3")
    assert pieces(activation) == 3 and pieces(factory("relu")) == 1
    identity_norm = functools.partial(nn.Identity)
    convolution, _, maxout = conv_norm_activation(2, 4, activation, identity_norm)
    assert convolution.out_channels == 12
    x = torch.randn(3, 2, 5, 5)
    pieces_out = convolution(x)
    torch.testing.assert_close(maxout(pieces_out), pieces_out.unflatten(1, (4, 3)).amax(2))
    linear, _, maxout = linear_norm_activation(6, 5, activation, identity_norm)
    assert linear.out_features == 15 and maxout(linear(torch.randn(2, 6))).shape == (2, 5)
    # After a residual sum there is no layer to widen: maxout brings its own 1x1 convolution.
    standalone = standalone_activation(activation, 4)
    assert standalone(torch.randn(3, 4, 5, 5)).shape == (3, 4, 5, 5)
    # A linear unit is a maxout with one piece... and a ReLU is the max of the pieces (x, 0).
    torch.testing.assert_close(Maxout(2, units=1)(torch.stack([X, 0 * X], dim=1)), FORMULAS["relu"](X)[:, None])


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        ("relu", math.sqrt(2)),
        ("leaky_relu", math.sqrt(2 / (1 + 0.01**2))),
        ("prelu", math.sqrt(2 / (1 + 0.25**2))),
        ("selu", 1.0),
        ("tanh", 5 / 3),
        ("sigmoid", 1.0),
        ("maxout", 1.0),
        ("gelu", math.sqrt(2)),
    ],
)
def test_initialization_gain_per_activation(option, expected):
    assert gain(factory(option)) == pytest.approx(expected)


def test_maxout_of_two_unit_gaussians_keeps_the_second_moment_so_its_gain_is_one():
    torch.manual_seed(0)
    pieces_out = torch.randn(200_000, 2, dtype=torch.float64)
    assert Maxout(2, units=1)(pieces_out.reshape(-1, 2)).square().mean().item() == pytest.approx(1.0, abs=0.01)
