"""The airbench-style fast network: shapes, the scaled head, and an initial loss near ln(classes)."""

import functools
import math

import torch
from torch import nn

from runner.activations import Maxout
from runner.models.fastnet import FastNet
from runner.norms import BatchNorm

OPTIONS_TESTED = {"model": {"fastnet"}}


def network(activation=nn.GELU, **knobs) -> FastNet:
    torch.manual_seed(0)
    return FastNet(10, (3, 32, 32), activation, functools.partial(BatchNorm), **knobs)


def test_layout_follows_airbench():
    model = network(widths=(16, 32, 32), stem_width=24)
    assert model.stem.kernel_size == (2, 2) and model.stem.padding == (0, 0) and model.stem.out_channels == 24
    output = model(torch.randn(4, 3, 32, 32))
    assert output.shape == (4, 10)
    # Three 2x pools after the 31x31 stem output: 31 -> 15 -> 7 -> 3, then global max pooling.
    features = model.body[:-2](torch.randn(1, 3, 32, 32))
    assert features.shape[-2:] == (3, 3)


def test_head_output_is_scaled_and_the_initial_loss_is_near_ln_classes():
    model = network(widths=(16, 32, 32))
    images = torch.randn(256, 3, 32, 32)
    assert torch.allclose(model(images), model.head(model.body(images)) / 9, atol=1e-6)
    loss = nn.functional.cross_entropy(model(images), torch.randint(0, 10, (256,)))
    assert abs(loss.item() - math.log(10)) < 0.1


def test_maxout_widens_each_layer_before_its_activation():
    model = network(activation=functools.partial(Maxout, pieces=3), widths=(8, 16, 16), stem_width=12)
    assert model.stem.out_channels == 36
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
