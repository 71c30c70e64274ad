"""The optimizer group and its parameter groups (runner.optim): each optimizer option, built as the run builds
it, takes the step its update rule gives; layers' learning-rate multipliers and the regularizers' settings form
the groups; the linear scaling rule scales every optimizer."""

import pytest
import torch
from torch import nn

from runner.norms import BatchNorm
from runner.optim import build_optimizer, learning_rate_multipliers, parameter_groups, scale_learning_rate
from runner.regularize import WeightDecay
from tests.conftest import compose_config

OPTIONS_TESTED = {"optimizer": {"sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop", "adagrad"}}


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(4, 3)


def steps(option: str, gradient_steps: int, knobs=(), regularizers=()) -> tuple[list, list, torch.Tensor]:
    """Build the option for a linear layer, apply a fixed gradient ``gradient_steps`` times; returns the
    weights before and after and the gradient."""
    config = compose_config([f"optimizer={option}", *knobs])
    network = model()
    optimizer = build_optimizer(config.optimizer, network, list(regularizers), torch.device("cpu"), 256)
    before = network.weight.detach().clone()
    gradient = torch.linspace(-1, 1, 12).view(3, 4)
    for _ in range(gradient_steps):
        network.weight.grad = gradient.clone()
        network.bias.grad = torch.zeros(3)
        optimizer.step()
    return before, network.weight.detach(), gradient


def test_sgd_momentum_and_nesterov_follow_their_update_rules():
    w, after, g = steps("sgd", 1)
    assert torch.allclose(after, w - 0.1 * g)
    # Heavy ball: v1 = g, v2 = 0.9 v1 + g.
    w, after, g = steps("momentum", 2)
    assert torch.allclose(after, w - 0.1 * g - 0.1 * 1.9 * g)
    # Nesterov: the step uses g + 0.9 v, with v1 = g.
    w, after, g = steps("nesterov", 1)
    assert torch.allclose(after, w - 0.1 * 1.9 * g)


def test_adam_and_adamw_first_step_is_lr_times_the_gradient_sign():
    w, after, g = steps("adam", 1)
    # Bias-corrected moments after one step are g and g^2: the step is lr * g / (|g| + eps).
    assert torch.allclose(after, w - 1e-3 * g / (g.abs() + 1e-8), atol=1e-7)
    w, after, g = steps("adamw", 1, regularizers=[WeightDecay(weight_decay=0.1)])
    assert torch.allclose(after, w * (1 - 1e-3 * 0.1) - 1e-3 * g / (g.abs() + 1e-8), atol=1e-7)


def test_rmsprop_and_adagrad_divide_by_the_root_of_squared_gradients():
    w, after, g = steps("rmsprop", 2)
    v1 = 0.01 * g.square()
    w1 = w - 1e-3 * g / (v1.sqrt() + 1e-8)
    v2 = 0.99 * v1 + 0.01 * g.square()
    assert torch.allclose(after, w1 - 1e-3 * g / (v2.sqrt() + 1e-8), atol=1e-6)
    w, after, g = steps("adagrad", 2)
    w1 = w - 1e-2 * g / (g.abs() + 1e-10)
    assert torch.allclose(after, w1 - 1e-2 * g / ((2 * g.square()).sqrt() + 1e-10), atol=1e-6)


@pytest.mark.parametrize("option", sorted(OPTIONS_TESTED["optimizer"]))
def test_linear_scaling_rule_scales_every_optimizer_by_batch_size_over_256(option):
    base = compose_config([f"optimizer={option}"]).optimizer.lr
    config = compose_config([f"optimizer={option}", "optimizer.scale_lr=linear"])
    optimizer = build_optimizer(config.optimizer, model(), [], torch.device("cpu"), batch_size=1024)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(4 * base)
    assert "scale_lr" not in optimizer.defaults


def test_linear_scaling_rule():
    assert scale_learning_rate(0.1, "linear", 512) == pytest.approx(0.2)
    assert scale_learning_rate(0.1, "none", 512) == 0.1


def test_a_layers_multiplier_speeds_up_its_rate_but_not_its_decay():
    # A batch norm asking for 64x the rate (airbench), weight decay 5e-4 on weights and, with decay_all, on it.
    network = nn.Sequential(nn.Linear(4, 3), BatchNorm(3, learn_scale=False, lr_multiplier=64))
    assert learning_rate_multipliers(network) == {"1.weight": 64, "1.bias": 64}
    decay = WeightDecay(weight_decay=5e-4, decay_all=True)
    groups = parameter_groups(network, [decay])
    # The fixed scale does not train, so it is in no group.
    assert [(len(group["params"]), group.get("lr_multiplier")) for group in groups] == [(2, None), (1, 64)]
    config = compose_config(["optimizer=sgd", "optimizer.lr=0.1"])
    optimizer = build_optimizer(config.optimizer, network, [decay], torch.device("cpu"), batch_size=256)
    plain, fast = optimizer.param_groups
    assert plain["lr"] == pytest.approx(0.1) and fast["lr"] == pytest.approx(6.4)
    # The shrinkage per step, lr x weight decay, is the base rate's in both groups.
    assert plain["lr"] * plain["weight_decay"] == pytest.approx(fast["lr"] * fast["weight_decay"])
