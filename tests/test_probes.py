"""The lectures' measurements of a network (runner.probes): the statistics' math, which modules are activation
layers, that measuring changes nothing, the plain-words warnings and the symmetry of identical weights."""

import math

import pytest
import torch
from torch import nn

from runner.activations import Maxout
from runner.probes import activation_layers, activation_warnings, identical_weights, layer_statistics, probe


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_layer_statistics_count_zeros_dead_units_and_saturation():
    # 4 examples x 3 units; unit 2 is zero on every example (dead), unit 0 is zero once.
    y = torch.tensor([[0.0, 1.0, 0.0], [2.0, 3.0, 0.0], [4.0, 5.0, 0.0], [6.0, 7.0, 0.0]])
    mean, std, zeros, dead, saturated, identical = layer_statistics(y, nn.ReLU()).tolist()
    assert mean == pytest.approx(y.mean().item()) and std == pytest.approx(y.std().item())
    assert zeros == pytest.approx(5 / 12) and dead == pytest.approx(1 / 3)
    assert math.isnan(saturated) and identical == 0  # ReLU does not saturate

    # Convolution outputs: a unit is a channel, dead only when zero at every example and position.
    feature_maps = torch.ones(2, 4, 3, 3)
    feature_maps[:, 1] = 0
    feature_maps[0, 2, 0, 0] = 0
    assert layer_statistics(feature_maps, nn.ReLU())[3].item() == pytest.approx(1 / 4)

    tanh_outputs = torch.tensor([[0.995, -0.999, 0.5, 0.0]])
    assert layer_statistics(tanh_outputs, nn.Tanh())[4].item() == pytest.approx(2 / 4)
    sigmoid_outputs = torch.tensor([[0.005, 0.995, 0.5, 0.98]])
    assert layer_statistics(sigmoid_outputs, nn.Sigmoid())[4].item() == pytest.approx(2 / 4)

    same = torch.randn(5, 1).expand(5, 8)
    assert layer_statistics(same, nn.Tanh())[5].item() == 1
    assert layer_statistics(torch.randn(5, 8), nn.Tanh())[5].item() == 0
    assert layer_statistics(torch.zeros(5, 8), nn.ReLU())[5].item() == 0  # dead, not symmetric


def test_activation_layers_are_the_activation_modules_in_depth_order():
    model = nn.Sequential(
        nn.Linear(4, 4),
        nn.ReLU(),
        nn.Linear(4, 8),
        Maxout(pieces=2, units=4),
        nn.Sequential(nn.Tanh(), nn.Linear(4, 4)),
        nn.Softmax(dim=1),  # lives in torch.nn.modules.activation, but is not a layer's nonlinearity
    )
    assert [type(module) for _, module in activation_layers(model)] == [nn.ReLU, Maxout, nn.Tanh]

    class Swish(nn.SiLU):  # a subclass defined elsewhere still counts, and its inner parts count once
        def __init__(self):
            super().__init__()
            self.inner = nn.Sigmoid()

    assert [name for name, _ in activation_layers(nn.Sequential(Swish()))] == ["0"]


def test_probe_changes_nothing_in_the_model_or_the_random_state():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Dropout(0.5), nn.Linear(6, 3)).eval()
    before = {name: value.clone() for name, value in model.state_dict().items()}
    inputs = torch.randn(16, 6) * 3 + 1
    state = torch.get_rng_state()
    logits, rows, _ = probe(model, inputs)
    assert logits.shape == (16, 3) and len(rows) == 1 and not model.training
    assert all(torch.equal(before[name], value) for name, value in model.state_dict().items())
    assert torch.equal(torch.get_rng_state(), state)
    # Training mode: the batch-norm output is normalized by the batch's own statistics.
    assert rows[0]["mean"] == pytest.approx(math.sqrt(1 / (2 * math.pi)), abs=0.15)


def test_warnings_speak_plain_words():
    rows = [
        {
            "layer": 3,
            "name": "a",
            "std": 0.5,
            "dead_fraction": 0.2,
            "saturated_fraction": None,
            "identical_units": False,
        },
        {
            "layer": 7,
            "name": "b",
            "std": 0.3,
            "dead_fraction": 0.93,
            "saturated_fraction": None,
            "identical_units": False,
        },
        {
            "layer": 10,
            "name": "c",
            "std": 2e-6,
            "dead_fraction": 0.0,
            "saturated_fraction": 0.9,
            "identical_units": False,
        },
    ]
    found = activation_warnings(rows, "at epoch 3")
    assert found["dead"].startswith("layer 7 (b): 93% of units dead at epoch 3")
    assert found["collapse"].startswith("activations collapse: std 2e-06 at layer 10 (c) at epoch 3")
    assert found["saturated"].startswith("layer 10 (c): 90% of outputs saturated at epoch 3")
    assert "identical" not in found


def test_identical_weights_finds_units_that_share_their_weights_and_their_gradients():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    with torch.no_grad():
        model[0].weight.fill_(0.25)
    # Read by random weights, the four units get different gradients: the first step breaks the symmetry.
    assert identical_weights(model) == []
    inputs, targets = torch.randn(8, 3), torch.tensor([0, 1] * 4)
    nn.functional.cross_entropy(model(inputs), targets).backward()
    gradient = model[0].weight.grad
    assert (gradient - gradient[:1]).abs().amax() > 0
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0], [-1.0]]).expand(2, 4))  # reads its four inputs alike
    assert identical_weights(model) == ["0.weight"]
    model.zero_grad()
    nn.functional.cross_entropy(model(inputs), targets).backward()
    gradient = model[0].weight.grad
    assert (gradient - gradient[:1]).abs().amax() == 0
