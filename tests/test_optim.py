"""The optimizer group and its parameter groups (runner.optim): each optimizer option, built as the run builds
it, takes the step its update rule gives; layers' learning-rate multipliers and the regularizers' settings form
the groups; the linear scaling rule scales every optimizer. Muon: its step is the learning rate times the
Newton-Schulz orthogonalization of its momentum, it gets exactly the hidden weight matrices, and a run with it is
scheduled, loss-scaled, checkpointed and resumed as any other."""

import functools
import math
import os
import signal
import sys
import time
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from runner import train
from runner.files import read_jsonl
from runner.loop import fit, optimize
from runner.norms import BatchNorm
from runner.optim import (
    Muon,
    OrthogonalizedMomentum,
    build_optimizer,
    hidden_matrices,
    learning_rate_multipliers,
    orthogonalize,
    parameter_groups,
    scale_learning_rate,
)
from runner.regularize import WeightDecay
from runner.run import build, make
from runner.validate import check
from tests.conftest import SMOKE, TIMES, compose_config, without_times

PLAIN = {"sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop", "adagrad"}
OPTIONS_TESTED = {"optimizer": PLAIN | {"muon"}}


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


@pytest.mark.parametrize("option", sorted(PLAIN))
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


# --- Muon ---------------------------------------------------------------------------------------------------------

QUINTIC = (3.4445, -4.7750, 2.0315)


def newton_schulz(matrix: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """The reference, in float64: Jordan et al. 2024's quintic iteration X <- a X + b (X X^T) X + c (X X^T)^2 X,
    from the matrix divided by its Frobenius norm, on its wide orientation."""
    a, b, c = QUINTIC
    x = matrix.double()
    tall = x.shape[0] > x.shape[1]
    x = x.T if tall else x
    x = x / x.norm()
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + b * gram @ x + c * gram @ gram @ x
    return x.T if tall else x


def close(actual: torch.Tensor, expected: torch.Tensor, tolerance: float = 0.03) -> bool:
    """Equal up to the rounding of Muon's bfloat16 iteration (about 1.5% here), as a relative error."""
    return ((actual.double() - expected.double()).norm() / expected.double().norm()).item() < tolerance


def muon_config(*knobs):
    return compose_config(["optimizer=muon", *knobs]).optimizer


def test_newton_schulz_keeps_the_singular_vectors_and_moves_the_values_into_muons_band():
    generator = torch.Generator().manual_seed(0)
    left, _ = torch.linalg.qr(torch.randn(16, 16, generator=generator, dtype=torch.float64))
    right, _ = torch.linalg.qr(torch.randn(72, 16, generator=generator, dtype=torch.float64))
    values = torch.linspace(1, 10, 16, dtype=torch.float64)
    matrix = left @ torch.diag(values) @ right.T
    # On the singular values alone, the iteration is the scalar polynomial a s + b s^3 + c s^5, five times.
    scaled = values / values.norm()
    for _ in range(5):
        scaled = QUINTIC[0] * scaled + QUINTIC[1] * scaled**3 + QUINTIC[2] * scaled**5
    # The coefficients trade exactness for speed: the values land in [0.68, 1.14], not on 1.
    assert 0.68 <= scaled.min() and scaled.max() <= 1.14
    assert torch.allclose(newton_schulz(matrix), left @ torch.diag(scaled) @ right.T, atol=1e-10)
    for oriented in (matrix, matrix.T):
        assert close(orthogonalize(oriented.float()), newton_schulz(oriented))


def mlp() -> nn.Module:
    """First layer, one tall hidden matrix (32 x 8, whose Muon rate is sqrt(32 / 8) = 2 times the base), head."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 3))


def test_a_muon_step_is_the_rate_times_the_orthogonalized_nesterov_momentum():
    network = mlp()
    knobs = ["optimizer.lr=0.05", "optimizer.momentum=0.9", "optimizer.weight_decay=0.1"]
    optimizer = build_optimizer(muon_config(*knobs), network, [], torch.device("cpu"), 256)
    hidden, first = network[2].weight, network[0].weight
    generator = torch.Generator().manual_seed(1)
    gradients = [torch.randn(32, 8, generator=generator) for _ in range(2)]
    buffer = torch.zeros(32, 8)
    for gradient in gradients:
        before, first_before = hidden.detach().clone(), first.detach().clone()
        for parameter in network.parameters():
            parameter.grad = gradient.clone() if parameter is hidden else torch.ones_like(parameter)
        optimizer.step()
        # As torch.optim.Muon's documentation defines it: B <- m B + g, O = NS(g + m B), decoupled weight decay,
        # then the step of the adjusted rate (x sqrt(max(1, rows / columns)) = 2).
        buffer = 0.9 * buffer + gradient
        expected = -0.05 * 2 * newton_schulz(gradient + 0.9 * buffer)
        assert close(hidden.detach() - before * (1 - 0.05 * 0.1), expected)
        assert not torch.equal(first.detach(), first_before)
    # The first layer is the other optimizer's: Nesterov SGD at 0.1, two steps of the gradient 1.
    assert torch.allclose(first.detach(), first_before - 0.1 * (1 + 0.9 * 1.9) * torch.ones_like(first))


def convnet() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 2),
        nn.Conv2d(4, 6, 3, bias=False),
        nn.Conv2d(6, 8, 3, bias=False),
        nn.AdaptiveMaxPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 3),
    )


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_a_filter_steps_as_its_out_by_in_k_k_matrix_and_in_place(layout):
    network = convnet().to(memory_format=layout)
    optimizer = build_optimizer(muon_config("optimizer.lr=0.05"), network, [], torch.device("cpu"), 256)
    filters = [network[1].weight, network[2].weight]
    matrices = [matrix for group in optimizer.muon.param_groups for matrix in group["params"]]
    assert [tuple(matrix.shape) for matrix in matrices] == [(6, 36), (8, 54)]
    # Muon's matrices are the filters' own storage, whatever the memory layout: its update is theirs.
    assert [matrix.data_ptr() for matrix in matrices] == [weight.data_ptr() for weight in filters]
    before = [weight.detach().clone() for weight in filters]
    network(torch.randn(2, 3, 9, 9)).square().sum().backward()
    gradients = [weight.grad.clone() for weight in filters]
    optimizer.step()
    for weight, old, gradient in zip(filters, before, gradients, strict=True):
        rows = weight.shape[0]
        update = newton_schulz(gradient.reshape(rows, -1) * (1 + 0.95)).reshape(weight.shape)
        assert close(weight.detach() - old, -0.05 * update)  # rows < columns: the rate is not adjusted
        assert weight.is_contiguous(memory_format=layout)


def test_muon_gets_exactly_the_hidden_weight_matrices_and_the_other_the_rest():
    from runner.models.fastnet import FastNet

    torch.manual_seed(0)
    norm = functools.partial(BatchNorm, learn_scale=False, lr_multiplier=64)
    network = nn.Sequential(nn.Identity(), FastNet(10, (3, 32, 32), nn.GELU, norm, widths=(8, 16, 16)))
    network[1].stem.weight.requires_grad_(False)  # as init=whitening leaves it
    parts = [WeightDecay(weight_decay=5e-4, decay_all=True)]
    optimizer = build_optimizer(muon_config(), network, parts, torch.device("cpu"), 256)
    assert isinstance(optimizer, Muon) and isinstance(optimizer, torch.optim.Optimizer)
    count = len(optimizer.muon.param_groups)
    in_muon = {id(p) for group in optimizer.param_groups[:count] for p in group["params"]}
    in_other = {id(p) for group in optimizer.param_groups[count:] for p in group["params"]}
    named = dict(network.named_parameters())
    blocks = {id(p) for name, p in named.items() if p.ndim == 4 and name != "1.body.0.weight"}
    assert in_muon == blocks and len(blocks) == 6  # two convolutions per block, not the stem
    trainable_rest = {id(p) for name, p in named.items() if p.requires_grad and id(p) not in blocks}
    assert in_other == trainable_rest and id(named["1.head.weight"]) in in_other
    assert id(named["1.body.0.weight"]) not in in_muon | in_other  # the frozen whitening
    # The norms' faster shifts keep their multiplier, in the other optimizer's groups.
    fast = [group for group in optimizer.param_groups[count:] if group.get("lr_multiplier") == 64]
    assert fast and all(group["lr"] == pytest.approx(0.1 * 64) for group in fast)


@pytest.mark.parametrize(
    "model",
    ["mlp", "convnet", "vgg", "resnet", "wide_resnet", "preact_resnet18", "densenet", "fastnet"],
)
def test_every_networks_first_layer_and_head_are_left_out_of_muon(model):
    from tests.test_catalogue import SMALL_KNOBS

    config = compose_config([f"model={model}", *SMALL_KNOBS[model]])
    network = make(config.model, num_classes=10, input_shape=(3, 32, 32), activation=nn.ReLU, norm=make(config.norm))
    layers = [module for module in network.modules() if isinstance(module, nn.Conv2d | nn.Linear)]
    weights = [p for p in network.parameters() if p.ndim >= 2]
    hidden = {id(p) for p in hidden_matrices(network)}
    assert id(layers[0].weight) not in hidden and id(layers[-1].weight) not in hidden  # input layer, classifier
    assert len(hidden) == len(weights) - 2


def test_linear_scaling_scales_both_of_muons_rates():
    optimizer = build_optimizer(muon_config("optimizer.scale_lr=linear"), mlp(), [], torch.device("cpu"), 1024)
    assert [group["lr"] for group in optimizer.param_groups] == pytest.approx([4 * 0.02, 4 * 0.1])


@pytest.mark.skipif(not hasattr(torch.optim, "Muon"), reason="compared with torch.optim.Muon (PyTorch 2.9 and later)")
@pytest.mark.parametrize(
    "settings",
    [{}, {"nesterov": False, "weight_decay": 0.1}, {"adjust_lr_fn": "match_rms_adamw", "ns_steps": 3, "momentum": 0.6}],
)
def test_the_fallback_for_older_pytorch_takes_torchs_muon_steps(settings):
    generator = torch.Generator().manual_seed(2)
    start = torch.randn(24, 40, generator=generator)
    ours, theirs = nn.Parameter(start.clone()), nn.Parameter(start.clone())
    optimizers = [OrthogonalizedMomentum([ours], lr=0.02, **settings), torch.optim.Muon([theirs], lr=0.02, **settings)]
    for _ in range(3):
        gradient = torch.randn(24, 40, generator=generator)
        ours.grad, theirs.grad = gradient.clone(), gradient.clone()
        for optimizer in optimizers:
            optimizer.step()
    assert close(ours.detach() - start, theirs.detach() - start, tolerance=1e-3)


def test_without_torchs_muon_the_fallback_is_used(monkeypatch):
    monkeypatch.delattr(torch.optim, "Muon", raising=False)
    optimizer = build_optimizer(muon_config(), mlp(), [], torch.device("cpu"), 256)
    assert isinstance(optimizer.muon, OrthogonalizedMomentum)
    with pytest.raises(ValueError, match="matrices only"):
        OrthogonalizedMomentum([nn.Parameter(torch.zeros(3, 3, 3))])


@pytest.mark.parametrize("schedule", ["constant", "cosine", "onecycle", "step", "reduce_on_plateau", "cosine_restarts"])
def test_every_kind_of_schedule_drives_both_optimizers(schedule):
    config = compose_config(["optimizer=muon", f"schedule={schedule}", "schedule.warmup_epochs=1"])
    network = mlp()
    optimizer = build_optimizer(config.optimizer, network, [], torch.device("cpu"), 256)
    scheduler = make(config.schedule)(optimizer, steps_per_epoch=2, epochs=3)
    rates = []
    for _ in range(4):
        for parameter in network.parameters():
            parameter.grad = torch.ones_like(parameter)
        optimizer.step()
        # What the schedule set is what the two optimizers stepped with.
        inner_groups = optimizer.muon.param_groups + optimizer.other.param_groups
        for outer, inner in zip(optimizer.param_groups, inner_groups, strict=True):
            assert inner["lr"] == outer["lr"] and inner["momentum"] == outer["momentum"]
        rates.append([group["lr"] for group in optimizer.param_groups])
        scheduler.step()
    assert rates[0] != rates[1]  # the warm-up moves both rates, each from its own base
    assert rates[-1][0] / rates[-1][1] == pytest.approx(0.02 / 0.1)


def test_float16_loss_scaling_unscales_before_muon_and_skips_overflowing_steps():
    plain, scaled = mlp(), mlp()
    optimizers = [build_optimizer(muon_config(), network, [], torch.device("cpu"), 256) for network in (plain, scaled)]
    images = torch.randn(16, 4)
    plain(images).square().mean().backward()
    optimizers[0].step()
    run = SimpleNamespace(optimizer=optimizers[1], scaler=torch.amp.GradScaler("cpu", init_scale=2.0**12))
    optimize(run, scaled(images).square().mean())
    for left, right in zip(plain.parameters(), scaled.parameters(), strict=True):
        assert torch.allclose(left, right, atol=1e-6)
    before = [parameter.detach().clone() for parameter in scaled.parameters()]
    optimize(run, scaled(images).square().mean() * math.inf)
    assert all(torch.equal(old, new) for old, new in zip(before, scaled.parameters(), strict=True))
    assert run.scaler.get_scale() == 2.0**11  # the overflow halved the scale, and no step was taken


def test_a_muon_run_resumed_after_an_interruption_matches_an_uninterrupted_one(tmp_path):
    from tests.test_catalogue import SMALL_KNOBS

    overrides = SMOKE + ["model=fastnet", *SMALL_KNOBS["fastnet"], "init=whitening", "diagnostics=off"]
    overrides += ["optimizer=muon", "optimizer.normalize_weights=true", "schedule=onecycle", "trainer.epochs=2"]
    context = {"choices": {}, "overrides": [], "seed": 0, "started": time.time()}
    reference = fit(build(compose_config(overrides), tmp_path / "reference"), dict(context))

    class InterruptAfterFirstEpoch:
        def on_epoch_end(self, run, state, row):
            if row["epoch"] == 1:
                os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C does: the loop stops after this epoch

    folder = tmp_path / "interrupted"
    # The warm-up's throwaway steps, whose optimizer state is put back, must leave no trace either.
    resumed_overrides = [*overrides, "trainer.device_warmup=true"]
    run = build(compose_config(resumed_overrides), folder)
    run.callbacks.append(InterruptAfterFirstEpoch())
    assert fit(run, dict(context))["status"] == "interrupted"
    checkpoint = torch.load(folder / "checkpoint.pt", weights_only=True)
    resumed = fit(build(compose_config(resumed_overrides), folder), dict(context), checkpoint)
    assert resumed["test_acc"] == reference["test_acc"] and resumed["test_loss"] == reference["test_loss"]

    def rows(path):
        return without_times(read_jsonl(path / "metrics.jsonl"), TIMES | {"warmup_time_s"})

    assert rows(folder) == rows(tmp_path / "reference")
    weights = [
        torch.load(path / "checkpoint.pt", weights_only=True)["model"] for path in (folder, tmp_path / "reference")
    ]
    assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[1])


@pytest.mark.parametrize(
    ("knobs", "expected"),
    [
        (["optimizer.ns_steps=0"], "optimizer.ns_steps=0 is not allowed: it must be a whole number of Newton-Schulz"),
        (["optimizer.adjust_lr_fn=fast"], "optimizer.adjust_lr_fn='fast' is not allowed: it must be null or one of"),
        (["optimizer.momentum=1"], "optimizer.momentum=1 is not allowed: it must be a momentum in [0, 1)"),
        (["optimizer.other.lr=-1"], "optimizer.other.lr=-1 is not allowed: it must be a learning rate > 0"),
        (["optimizer.normalize_weights=yes"], "optimizer.normalize_weights='yes' is not allowed: it must be true or"),
        (["+optimizer.other.momentun=0.5"], "optimizer.other: torch.optim.SGD has no setting momentun (did you mean"),
        (["optimizer.other.momentum=0"], "optimizer: Nesterov momentum requires a momentum and zero dampening"),
    ],
)
def test_bad_muon_settings_are_refused_before_any_work(knobs, expected):
    problems = check(compose_config([*SMOKE, "optimizer=muon", *knobs]), [*knobs])
    assert any(expected in problem for problem in problems), problems


def test_a_bad_muon_setting_exits_2_naming_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RUNNER_OUTPUTS", str(tmp_path))
    monkeypatch.setattr(sys, "argv", ["runner.train", *SMOKE, "optimizer=muon", "optimizer.ns_steps=100"])
    with pytest.raises(SystemExit) as exited:
        train.main()
    printed = capsys.readouterr().err
    assert exited.value.code == 2 and "optimizer.ns_steps=100 is not allowed" in printed
    assert "Traceback" not in printed
