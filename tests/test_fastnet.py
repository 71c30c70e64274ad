"""The airbench-style fast network: shapes, the scaled head, and an initial loss near ln(classes)."""

import functools
import math

import torch
from torch import nn

from runner.activations import Maxout
from runner.models.fastnet import FastNet
from runner.norms import BatchNorm

OPTIONS_TESTED = {"model": {"fastnet"}, "init": {"whitening"}}


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


def test_whitening_init_decorrelates_the_stems_patches():
    from runner.init import whitening

    model = network(widths=(8, 16, 16), stem_width=24)
    # Correlated inputs: neighbouring pixels and channels share most of their signal.
    base = torch.randn(64, 1, 16, 16)
    images = torch.cat([base + 0.3 * torch.randn(64, 1, 16, 16) for _ in range(3)], dim=1)
    images = nn.functional.interpolate(images, size=32, mode="bilinear")
    whitening(model, sample=images, epsilon=1e-8)
    outputs = nn.functional.conv2d(images.double(), model.stem.weight.double())[:, :12]
    outputs = outputs.permute(0, 2, 3, 1).reshape(-1, 12)
    outputs = outputs - outputs.mean(0)
    covariance = outputs.T @ outputs / len(outputs)
    assert torch.allclose(covariance, torch.eye(12, dtype=torch.float64), atol=1e-4)
    assert torch.equal(model.stem.weight[12:], -model.stem.weight[:12])
    assert not model.stem.weight.requires_grad


def test_a_narrower_whitening_stem_keeps_the_leading_components():
    from runner.init import whitening

    base = torch.randn(64, 1, 16, 16)
    images = torch.cat([base + 0.3 * torch.randn(64, 1, 16, 16) for _ in range(3)], dim=1)
    images = nn.functional.interpolate(images, size=32, mode="bilinear")
    full = whitening(network(widths=(8, 16, 16), stem_width=24), sample=images, epsilon=1e-8)
    narrow = whitening(network(widths=(8, 16, 16), stem_width=16), sample=images, epsilon=1e-8)
    # The 8 components of most variance, as the full stem has them (its last 8 of 12), then their negatives.
    assert torch.allclose(narrow.stem.weight[:8], full.stem.weight[4:12])
    assert torch.equal(narrow.stem.weight[8:], -narrow.stem.weight[:8])
    patches = nn.functional.unfold(images.double(), 2).transpose(1, 2).reshape(-1, 12)
    patches = patches - patches.mean(0)
    kept = patches @ narrow.stem.weight[:8].double().reshape(8, 12).T
    assert torch.allclose(kept.T @ kept / len(kept), torch.eye(8, dtype=torch.float64), atol=1e-4)
    # What it drops is the least of the patches' variance: the 4 smallest eigenvalues of 12.
    eigenvalues = torch.linalg.eigvalsh(patches.T @ patches / len(patches))
    assert eigenvalues[:4].sum() < 0.05 * eigenvalues.sum()


def test_whitening_init_names_the_width_it_needs():
    from runner.init import whitening

    for stem_width in (13, 26):
        model = network(widths=(8, 16, 16), stem_width=stem_width)
        try:
            whitening(model, sample=torch.randn(4, 3, 32, 32))
        except ValueError as error:
            assert "at most 2 x 12 = 24" in str(error) and "model.stem_width" in str(error)
        else:
            raise AssertionError(f"a {stem_width}-channel stem cannot hold whitening filters and their negatives")


def test_whitening_with_a_frozen_bias_stops_backpropagation_after_the_stem():
    from runner.init import whitening

    images = torch.randn(8, 3, 32, 32)
    trained_bias = whitening(network(widths=(8, 16, 16)), sample=images)
    assert trained_bias.stem.bias.requires_grad
    model = whitening(network(widths=(8, 16, 16)), sample=images, freeze_bias=True)
    assert not model.stem.weight.requires_grad and not model.stem.bias.requires_grad
    assert torch.equal(model.stem.bias, torch.zeros_like(model.stem.bias))
    stem_output = []
    model.stem.register_forward_hook(lambda module, inputs, output: stem_output.append(output))
    model(images).sum().backward()
    assert not stem_output[0].requires_grad  # no gradient is computed for the widest activation
    assert model.body[2].weight.grad is not None


def test_whitening_identity_option_starts_later_convolutions_as_partial_identities():
    from runner.init import whitening

    model = whitening(network(widths=(8, 16, 16)), sample=torch.randn(8, 3, 32, 32), identity=True)
    convolutions = [layer for layer in model.modules() if isinstance(layer, nn.Conv2d)][1:]
    x = torch.randn(2, 24, 6, 6)
    for layer in convolutions:
        inputs = x[:, : layer.in_channels] if layer.in_channels <= 24 else torch.randn(2, layer.in_channels, 6, 6)
        # The first in_channels filters copy their input channel; the rest keep PyTorch's random start.
        out = nn.functional.conv2d(inputs, layer.weight, padding=1)
        copied = min(layer.in_channels, layer.out_channels)
        torch.testing.assert_close(out[:, :copied], inputs[:, :copied])
        if layer.out_channels > layer.in_channels:
            assert layer.weight[layer.in_channels :].abs().sum() > 0
    assert not torch.equal(model.stem.weight, torch.zeros_like(model.stem.weight))


def test_residual_blocks_have_three_convolutions_the_last_two_around_a_skip():
    from runner.models.layers import Residual

    model = network(widths=(8, 16, 16), residual=True)
    convolutions = [layer for layer in model.modules() if isinstance(layer, nn.Conv2d)]
    assert len(convolutions) == 1 + 3 * 3  # the stem, then three per block, as airbench96
    units = [layer for layer in model.body if isinstance(layer, Residual)]
    assert len(units) == 3
    # Each unit: activation(branch(x) + x), the branch conv-norm-activation-conv-norm at the block's width.
    unit = units[0].eval()
    x = torch.randn(2, 8, 15, 15)
    torch.testing.assert_close(unit(x), nn.functional.gelu(unit.branch(x) + x))
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    maxout = network(activation=functools.partial(Maxout, pieces=2), widths=(8, 16, 16), stem_width=12, residual=True)
    assert maxout(torch.randn(2, 3, 32, 32)).shape == (2, 10)
