"""The math of each regularizer: penalties equal their formulas, weight decay shrinks the right parameters,
dropout keeps the expectation, DropConnect and stochastic depth vanish at evaluation."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from runner.errors import ConfigError
from runner.models.convnet import ConvNet
from runner.models.mlp import MLP
from runner.models.resnet import ResNet
from runner.optim import parameter_groups
from runner.regularize import (
    L1,
    DropConnect,
    DropConnectLinear,
    Dropout,
    ElasticNet,
    FractionalMaxPool,
    FractionalMaxPool2d,
    LabelSmoothing,
    Objective,
    StochasticDepth,
    WeightDecay,
)
from runner.run import build, group_entries
from tests.conftest import SMALL_MODEL, SMOKE, compose_config

OPTIONS_TESTED = {
    "regularizer": {
        "none",
        "l2",
        "l1",
        "elastic_net",
        "dropout",
        "spatial_dropout",
        "dropconnect",
        "stochastic_depth",
        "fractional_max_pool",
        "label_smoothing",
    }
}


def small_mlp() -> nn.Module:
    torch.manual_seed(0)
    return MLP(num_classes=5, input_shape=(3, 4, 4), activation=nn.ReLU, norm=nn.Identity, depth=2, width=16)


def weights_and_others(model: nn.Module):
    weights = [p for p in model.parameters() if p.ndim > 1]
    others = [p for p in model.parameters() if p.ndim <= 1]
    return weights, others


def test_none_and_list_selection_compose():
    assert group_entries(compose_config(["regularizer=none"]).get("regularizer")) == []
    config = compose_config(["regularizer=[l2,dropout]", "regularizer.dropout.p=0.3"])
    entries = group_entries(config.regularizer)
    assert [type(entry) for entry in entries] == [WeightDecay, Dropout] and entries[1].p == 0.3


def test_l1_and_elastic_net_penalties_equal_their_formulas():
    model = small_mlp()
    weights, others = weights_and_others(model)
    absolute = sum(p.abs().sum() for p in weights)
    squares = sum(p.square().sum() for p in weights)
    assert torch.allclose(L1(strength=0.01).penalty(model), 0.01 * absolute)
    everything = sum(p.abs().sum() for p in weights + others)
    assert torch.allclose(L1(strength=0.01, include_all=True).penalty(model), 0.01 * everything)
    assert torch.allclose(ElasticNet(l1=0.01, l2=0.1).penalty(model), 0.01 * absolute + 0.05 * squares)
    # The gradient of the L1 term is strength * sign(w), through the objective.
    objective = Objective([L1(strength=0.01)], num_classes=5)
    logits = torch.zeros(2, 5, requires_grad=True)
    objective(logits, torch.tensor([0, 1]), model).backward()
    assert torch.allclose(weights[0].grad, 0.01 * weights[0].sign())


def test_l2_weight_decay_is_the_gradient_of_half_the_squared_norm_on_weights_only():
    model = small_mlp()
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(parameter_groups(model, [WeightDecay(weight_decay=0.1)]), lr=0.5)
    for parameter in model.parameters():
        parameter.grad = torch.zeros_like(parameter)
    optimizer.step()
    for old, new in zip(before, model.parameters(), strict=True):
        expected = old * (1 - 0.5 * 0.1) if old.ndim > 1 else old
        assert torch.allclose(new, expected)


def test_decoupled_l2_with_adam_is_adamw():
    decoupled, reference = small_mlp(), small_mlp()
    regularizer = WeightDecay(weight_decay=0.1, decoupled=True)
    adam = torch.optim.Adam(parameter_groups(decoupled, [regularizer]), lr=0.01)
    regularizer.attach_optimizer(adam)
    adamw = torch.optim.AdamW(parameter_groups(reference, [WeightDecay(weight_decay=0.1)]), lr=0.01)
    for _ in range(3):
        for model, optimizer in ((decoupled, adam), (reference, adamw)):
            optimizer.zero_grad()
            model(torch.ones(4, 3, 4, 4)).square().sum().backward()
            optimizer.step()
    for a, b in zip(decoupled.parameters(), reference.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    coupled = small_mlp()
    coupled_adam = torch.optim.Adam(parameter_groups(coupled, [WeightDecay(weight_decay=0.1)]), lr=0.01)
    coupled_adam.zero_grad()
    coupled(torch.ones(4, 3, 4, 4)).square().sum().backward()
    coupled_adam.step()
    assert not torch.allclose(next(coupled.parameters()), next(decoupled.parameters()), atol=1e-4)


def test_dropout_sits_before_every_hidden_fully_connected_layer_and_keeps_the_expectation():
    model = Dropout(p=0.5).attach(small_mlp())
    # The first layer sees the pixels and keeps them; the later fully connected layers get dropout.
    layers = [m for m in model.body if isinstance(m, (nn.Linear, nn.Sequential))]
    assert isinstance(layers[0], nn.Linear) and len(layers) == 2
    assert isinstance(layers[1][0], nn.Dropout) and isinstance(layers[1][1], nn.Linear)
    assert isinstance(model.head[0], nn.Dropout) and model.head[0].p == 0.5
    convnet = Dropout(p=0.5).attach(ConvNet(5, (3, 8, 8), nn.ReLU, nn.Identity, widths=(4, 8)))
    assert isinstance(convnet.head[0], nn.Dropout)
    assert not any(isinstance(m, nn.Dropout) for m in convnet.body.modules())

    torch.manual_seed(1)
    x = torch.rand(1, 3, 4, 4).expand(100_000, 3, 4, 4)
    model.eval()
    with torch.no_grad():
        expected = model(x[:1])[0]
        hidden = model.body(x[:1])
        head = model.head
        head.train()
        mean = head(hidden.expand(100_000, -1)).mean(0)  # the head alone: linear after dropout
        dropped = head[0](hidden.expand(1000, -1))
    assert (mean - expected).norm() / expected.norm() < 0.01
    active = hidden.expand(1000, -1) != 0  # units the ReLU left on
    assert abs((dropped[active] == 0).float().mean().item() - 0.5) < 0.02  # train time: half of them dropped
    kept = dropped != 0
    assert torch.allclose(dropped[kept], 2 * hidden.expand(1000, -1)[kept])  # survivors scaled by 1 / (1 - p)


def test_spatial_dropout_drops_whole_channels_before_every_conv_but_the_first():
    convnet = Dropout(p=0.3, spatial=True).attach(ConvNet(5, (3, 8, 8), nn.ReLU, nn.Identity, widths=(4, 8, 8)))
    convs = [m for m in convnet.modules() if isinstance(m, nn.Conv2d)]
    wrapped = [m for m in convnet.modules() if isinstance(m, nn.Sequential) and isinstance(m[0], nn.Dropout2d)]
    assert len(convs) == 3 and len(wrapped) == 2 and isinstance(convnet.head, nn.Linear)
    layer = wrapped[0][0].train()
    x = torch.rand(200, 4, 6, 6) + 0.1
    out = layer(x)
    zero_channel = (out == 0).all(dim=(2, 3))
    assert torch.allclose(out[~zero_channel], x[~zero_channel] / 0.7)
    assert abs(zero_channel.float().mean().item() - 0.3) < 0.05


def test_dropconnect_zeroes_weights_at_train_time_and_is_the_plain_layer_at_eval():
    model = small_mlp()
    converted = DropConnect(p=0.4).attach(small_mlp())
    assert all(type(m) is DropConnectLinear for m in converted.modules() if isinstance(m, nn.Linear))
    converted.eval()
    x = torch.rand(8, 3, 4, 4)
    assert torch.equal(converted(x), model(x))
    assert converted.state_dict().keys() == model.state_dict().keys()

    layer = converted.head.train()
    torch.manual_seed(0)
    with torch.no_grad():
        # One-hot inputs read the (masked, rescaled) weight matrix column by column.
        masked = (layer(torch.eye(layer.in_features)) - layer.bias).T
    dropped = masked == 0
    assert abs(dropped.float().mean().item() - 0.4) < 0.1
    assert torch.allclose(masked[~dropped], layer.weight[~dropped] / 0.6)


def test_stochastic_depth_is_the_full_network_at_eval_and_skips_blocks_at_the_configured_rate():
    torch.manual_seed(0)
    network = ResNet(5, (3, 8, 8), nn.ReLU, nn.Identity, depth=20, width=4).eval()
    x = torch.rand(4, 3, 8, 8)
    plain = network(x)
    regularizer = group_entries(compose_config(["regularizer=[stochastic_depth]"]).regularizer)[0]
    network = regularizer.attach(network).eval()
    assert torch.equal(network(x), plain)

    layers = [m.branch[1] for m in network.modules() if hasattr(m, "branch")]
    assert len(layers) == 9 and all(type(layer).__module__.startswith("torchvision") for layer in layers)
    skipped = []
    for layer in layers:
        layer.register_forward_hook(lambda module, inputs, out: skipped.append((out == 0).all(dim=(1, 2, 3))))
    network.train()
    with torch.no_grad():
        network(torch.rand(3000, 3, 8, 8) + 0.1)
    for index, rows in enumerate(skipped, start=1):
        assert abs(rows.float().mean().item() - index / 9 * (1 - 0.5)) < 0.04
    with pytest.raises(ConfigError):
        StochasticDepth().attach(ConvNet(5, (3, 8, 8), nn.ReLU, nn.Identity, widths=(4,)))


def test_fractional_max_pooling_draws_random_regions_and_evaluation_averages_draws(tmp_path):
    network = FractionalMaxPool(test_samples=3).attach(ConvNet(5, (3, 8, 8), nn.ReLU, nn.Identity, widths=(4, 8, 8)))
    pools = [m for m in network.modules() if isinstance(m, FractionalMaxPool2d)]
    assert len(pools) == 3 and not any(type(m) is nn.MaxPool2d for m in network.modules())
    image = torch.arange(64.0).view(1, 1, 8, 8)  # increasing: each region's maximum is its bottom-right pixel
    draws = {tuple(pools[0](image).flatten().tolist()) for _ in range(30)}
    assert len(draws) > 1  # random regions
    for draw in draws:
        pooled = torch.tensor(draw).view(4, 4)
        rows, columns = pooled.div(8, rounding_mode="floor"), pooled % 8
        # Region ends increase by 1 or 2 (overlapping windows of up to 3 with fractional strides) and end at 7.
        assert set(rows.diff(dim=0).unique().tolist()) <= {1.0, 2.0} and rows[-1, 0] == 7
        assert set(columns.diff(dim=1).unique().tolist()) <= {1.0, 2.0} and columns[0, -1] == 7
    assert pools[2](torch.rand(1, 8, 2, 2)).shape[-2:] == (1, 1)  # a 2 -> 1 pooling still works

    run = build(compose_config([*SMOKE, *SMALL_MODEL, "regularizer=[fractional_max_pool]"]), tmp_path)
    assert run.predict is not None and run.predict.draws == 4


def test_label_smoothing_targets_and_loss():
    smoothing = LabelSmoothing(smoothing=0.1)
    targets = smoothing.targets(torch.tensor([2, 0]), 4)
    assert torch.allclose(targets[0], torch.tensor([0.025, 0.025, 0.925, 0.025]))
    logits = torch.randn(2, 4)
    loss = Objective([smoothing], 4).data_loss(logits, torch.tensor([2, 0]))
    assert torch.allclose(loss, F.cross_entropy(logits, torch.tensor([2, 0]), label_smoothing=0.1))
