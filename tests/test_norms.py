"""Normalisation options: which statistics each uses, in training and in evaluation, for conv and linear
layers alike."""

import functools

import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from runner.norms import BatchNorm, GroupNorm, has_norm
from runner.run import build
from tests.conftest import SMALL_MODEL, SMOKE, compose_config

OPTIONS_TESTED = {"norm": {"batchnorm", "none", "layernorm", "groupnorm"}}


@functools.cache
def composed(*overrides: str):
    """Composing is the slow part of these tests: each distinct config is composed once per session."""
    return compose_config(list(overrides))


def norm(option: str, *overrides: str):
    return instantiate(composed(f"norm={option}", *overrides).norm)


def standardized(x: torch.Tensor, dims) -> torch.Tensor:
    mean = x.mean(dim=dims, keepdim=True)
    variance = x.var(dim=dims, keepdim=True, unbiased=False)
    return (x - mean) / torch.sqrt(variance + 1e-5)


@pytest.mark.parametrize("shape", [(32, 8), (32, 8, 5, 5)])
def test_batchnorm_uses_batch_statistics_in_training_and_running_ones_in_evaluation(shape):
    torch.manual_seed(0)
    layer = norm("batchnorm", "norm.momentum=0.5")(8)
    x = torch.randn(shape) * 3 + 2
    dims = (0,) if len(shape) == 2 else (0, 2, 3)
    layer.train()
    torch.testing.assert_close(layer(x), standardized(x, dims), rtol=1e-4, atol=1e-4)
    # One step of the running average from (0, 1) towards the batch's (unbiased) statistics.
    torch.testing.assert_close(layer.running_mean, 0.5 * x.mean(dim=dims))
    torch.testing.assert_close(layer.running_var, 0.5 + 0.5 * x.var(dim=dims, unbiased=True), rtol=1e-4, atol=1e-4)
    layer.eval()
    view = (1, -1) + (1,) * (len(shape) - 2)
    expected = (x - layer.running_mean.view(view)) / torch.sqrt(layer.running_var.view(view) + 1e-5)
    torch.testing.assert_close(layer(x), expected, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(layer(x), standardized(x, dims), atol=1e-2)


@pytest.mark.parametrize("shape", [(6, 8), (6, 8, 5, 5)])
def test_layernorm_normalises_each_sample_over_all_its_channels_and_positions(shape):
    x = torch.randn(shape) * 3 + 2
    layer = norm("layernorm")(8)
    dims = tuple(range(1, len(shape)))
    for mode in (True, False):  # no batch statistics: training and evaluation agree
        layer.train(mode)
        torch.testing.assert_close(layer(x), standardized(x, dims), rtol=1e-4, atol=1e-4)
    # A sample's output does not depend on the rest of the batch.
    torch.testing.assert_close(layer(x[:1]), layer(x)[:1])


def test_groupnorm_normalises_each_group_of_channels():
    x = torch.randn(4, 8, 5, 5) * 3 + 2
    layer = norm("groupnorm", "norm.groups=4")(8)
    expected = standardized(x.view(4, 4, 2, 5, 5), (2, 3, 4)).view_as(x)
    torch.testing.assert_close(layer(x), expected, rtol=1e-4, atol=1e-4)
    assert layer.num_groups == 4
    assert GroupNorm(12, groups=32).num_groups == 12  # narrow layers get fewer groups, each dividing them


def test_none_is_the_identity_and_lets_layers_keep_their_bias():
    x = torch.randn(3, 8, 2, 2)
    layer = norm("none")(8)
    assert torch.equal(layer(x), x)
    assert not has_norm(norm("none"))
    assert all(has_norm(norm(option)) for option in ("batchnorm", "layernorm", "groupnorm"))
    assert isinstance(layer, nn.Identity)


def test_batchnorm_airbench_options_fix_the_scale_and_multiply_the_learning_rate(tmp_path):
    airbench = ["norm.learn_scale=false", "norm.lr_multiplier=64", "regularizer=[l2]", "regularizer.l2.decay_all=true"]
    run = build(compose_config(SMOKE + SMALL_MODEL + airbench), tmp_path)
    norms = [module for module in run.model.modules() if isinstance(module, BatchNorm)]
    assert norms and all(not layer.weight.requires_grad and layer.bias.requires_grad for layer in norms)
    shifts = {id(layer.bias) for layer in norms}
    base, decay = run.config.optimizer.lr, run.config.regularizer.l2.weight_decay
    for group in run.optimizer.param_groups:
        members = {id(parameter) for parameter in group["params"]}
        assert members <= shifts or not members & shifts  # the shifts have a group of their own
        assert group["lr"] == pytest.approx(64 * base if members <= shifts else base)
        # The faster rate does not speed up the decay: each step still shrinks by base rate x weight decay.
        assert group["lr"] * group["weight_decay"] == pytest.approx(base * decay)
    scales = [layer.weight.clone() for layer in norms]
    images, labels = run.splits.train_images[:32], run.splits.train_labels[:32]
    run.objective(run.model(images), labels, run.model).backward()
    run.optimizer.step()
    assert all(torch.equal(layer.weight, scale) for layer, scale in zip(norms, scales, strict=True))
    assert all(torch.equal(scale, torch.ones_like(scale)) for scale in scales)
