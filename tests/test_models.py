"""Architectures: parameter counts as published, output shapes, and every model with every norm and with
maxout (whose widened layers must still fit together)."""

import functools

import pytest
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from torch import nn

from runner.models.layers import Residual
from tests.conftest import CONF, compose_config

OPTIONS_TESTED = {"model": {"mlp", "convnet", "vgg", "resnet", "wide_resnet", "preact_resnet18", "densenet"}}

NORMS = sorted(path.stem for path in (CONF / "norm").glob("*.yaml"))
# Small versions of each of this module's models, fast enough to run forward and backward on CPU.
SMALL = {
    "mlp": ["model.depth=2", "model.width=16"],
    "convnet": ["model.widths=[8,16]"],
    "vgg": ["model.widths=[8,16,16]", "model.convs_per_stage=[1,1,2]", "model.hidden=16"],
    "resnet": ["model.depth=8", "model.width=4"],
    "wide_resnet": ["model.depth=10", "model.widen_factor=1"],
    "preact_resnet18": ["model.width=4"],
    "densenet": ["model.depth=10", "model.growth=4"],
}


@functools.cache
def composed(*overrides: str):
    """Composing is the slow part of these tests: each distinct config is composed once per session."""
    return compose_config(list(overrides))


def network(
    option: str, *overrides: str, norm: str = "norm=batchnorm", activation=("activation=relu",), input_shape=(3, 16, 16)
) -> nn.Module:
    """Each group is composed (and cached) on its own, so the model x norm grid composes few configs."""
    return instantiate(
        composed(f"model={option}", *overrides).model,
        num_classes=7 if input_shape[1] == 16 else 10,
        input_shape=input_shape,
        activation=instantiate(composed(*activation).activation),
        norm=instantiate(composed(norm).norm),
    )


def millions(option: str, *overrides: str) -> float:
    with torch.device("meta"):  # counts without allocating or initializing the weights
        model = network(option, *overrides, input_shape=(3, 32, 32))
    return sum(parameter.numel() for parameter in model.parameters()) / 1e6


@pytest.mark.parametrize(
    ("option", "overrides", "published"),
    [
        ("resnet", ["model.depth=20"], 0.27),  # He et al. 2016, Table 6
        ("resnet", ["model.depth=32"], 0.46),
        ("resnet", ["model.depth=56"], 0.85),
        ("resnet", ["model.depth=110"], 1.7),
        ("wide_resnet", ["model.depth=16", "model.widen_factor=4"], 2.7),  # Zagoruyko and Komodakis 2016, Table 4
        ("wide_resnet", ["model.depth=28", "model.widen_factor=10"], 36.5),
        ("densenet", ["model.depth=40", "model.growth=12"], 1.0),  # Huang et al. 2017, Table 2
        ("densenet", ["model.depth=100", "model.growth=12", "model.bottleneck=true", "model.compression=0.5"], 0.8),
        ("preact_resnet18", [], 11.2),
    ],
)
def test_parameter_counts_match_the_papers(option, overrides, published):
    assert millions(option, *overrides) == pytest.approx(published, rel=0.05)


def test_vgg16_has_thirteen_convolutions_and_its_fully_connected_part_is_the_classifier():
    model = network("vgg", "model.convs_per_stage=[2,2,3,3,3]", input_shape=(3, 32, 32))
    assert sum(isinstance(m, nn.Conv2d) for m in model.features.modules()) == 13
    linears = [m for m in model.classifier if isinstance(m, nn.Linear)]
    assert [layer.out_features for layer in linears] == [512, 512, 10]
    assert model.classifier[-1] is linears[-1]


def test_mlp_depth_and_width_are_the_lectures_knobs():
    model = network("mlp", "model.depth=10", "model.width=500", norm="norm=none")
    hidden = [m for m in model.body if isinstance(m, nn.Linear)]
    assert len(hidden) == 10 and all(layer.out_features == 500 for layer in hidden)


@pytest.mark.parametrize("option", ["resnet", "wide_resnet", "preact_resnet18"])
def test_residual_models_expose_their_branches(option):
    model = network(option, *SMALL[option])
    blocks = [m for m in model.modules() if isinstance(m, Residual)]
    assert blocks and all(isinstance(block.branch, nn.Module) for block in blocks)


def test_densenet_layers_concatenate_their_growth():
    model = network("densenet", "model.depth=10", "model.growth=4")
    dense_layer = model.body[1]
    x = torch.randn(2, 16, 8, 8)
    out = dense_layer(x)
    assert out.shape == (2, 20, 8, 8) and torch.equal(out[:, :16], x)


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("option", sorted(SMALL))
def test_every_model_accepts_every_norm(option, norm):
    model = network(option, *SMALL[option], norm=f"norm={norm}")
    x = torch.randn(4, 3, 16, 16)
    out = model(x)
    assert out.shape == (4, 7)
    out.square().mean().backward()
    assert all(parameter.grad is not None for parameter in model.parameters())


@pytest.mark.parametrize("option", sorted(SMALL))
def test_every_model_builds_with_maxout(option):
    model = network(option, *SMALL[option], activation=("activation=maxout", "activation.pieces=3"))
    model = model.to(memory_format=torch.channels_last)
    out = model(torch.randn(2, 3, 16, 16).contiguous(memory_format=torch.channels_last))
    assert out.shape == (2, 7)


def test_models_take_the_activation_from_config():
    model = network("convnet", *SMALL["convnet"], activation=("activation=tanh",))
    assert any(isinstance(m, nn.Tanh) for m in model.modules())
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())


def test_models_reject_impossible_depths():
    for option, depth in (("resnet", 21), ("wide_resnet", 15), ("densenet", 41)):
        with pytest.raises(InstantiationException, match="model.depth"):
            network(option, f"model.depth={depth}")


def test_model_identity_norm_puts_biases_back():
    with_norm = network("resnet", *SMALL["resnet"])
    without = network("resnet", *SMALL["resnet"], norm="norm=none")
    assert with_norm.body[0].bias is None and without.body[0].bias is not None


def test_projection_shortcut_is_a_strided_one_by_one_convolution():
    from runner.models.layers import ProjectionShortcut

    shortcut = ProjectionShortcut(4, 8, stride=2, bias=False)
    reference = nn.Conv2d(4, 8, 1, stride=2, bias=False)
    reference.weight.data.copy_(shortcut.weight)
    x = torch.randn(2, 4, 9, 9)
    torch.testing.assert_close(shortcut(x), reference(x))
