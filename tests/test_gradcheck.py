"""Gradient checking (runner.gradcheck): a layer with a wrong backward pass is named and the command fails; a
right one passes; every activation and regularizer of the catalogue passes; kinks are told apart."""

import subprocess
import sys

import pytest
import torch

from runner.gradcheck import Checked, KinkWatch, gradcheck, relative_error
from tests.conftest import CONF, PROJECT, compose_config

TINY = ["model=mlp", "model.depth=2", "model.width=12", "data.image_size=8", "gradcheck.entries=4"]

LAYERS = '''
import torch


class Doubled(torch.autograd.Function):
    """tanh whose backward pass is twice what it should be: the kind of slip gradient checking is for."""

    @staticmethod
    def forward(context, inputs):
        outputs = torch.tanh(inputs)
        context.save_for_backward(outputs)
        return outputs

    @staticmethod
    def backward(context, gradient):
        (outputs,) = context.saved_tensors
        return 2 * gradient * (1 - outputs**2)


class WrongTanh(torch.nn.Module):
    def forward(self, inputs):
        return Doubled.apply(inputs)


class RightTanh(torch.nn.Module):
    def forward(self, inputs):
        return torch.tanh(inputs)
'''


def compose_gradcheck(overrides):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("gradcheck", overrides=list(overrides))


@pytest.mark.slow
def test_a_wrong_backward_is_named_and_fails_and_a_right_one_passes(tmp_path):
    (tmp_path / "my_layers.py").write_text(LAYERS)
    environment = {"RUNNER_OUTPUTS": str(tmp_path / "outputs"), "PATH": "/usr/bin:/bin"}

    def check(layer):
        arguments = [f"activation._target_=my_layers.{layer}", *TINY]
        return subprocess.run(
            [sys.executable, "-m", "runner.gradcheck", *arguments],
            cwd=tmp_path,  # the student's own module is importable from the folder they work in
            env=environment,
            capture_output=True,
            text=True,
            timeout=300,
        )

    wrong = check("WrongTanh")
    assert wrong.returncode == 1, wrong.stderr[-2000:]
    assert "FAILED: the analytic gradient of 1.body.1.weight" in wrong.stdout
    right = check("RightTanh")
    assert right.returncode == 0, right.stdout[-2000:] + right.stderr[-2000:]
    assert "Passed" in right.stdout


@pytest.mark.parametrize(
    "overrides",
    [[f"activation={name}"] for name in sorted(path.stem for path in (CONF / "activation").glob("*.yaml"))]
    + [
        [
            f"regularizer=[{name}]",
            *(
                {
                    "stochastic_depth": ["model=resnet", "model.depth=8", "model.width=4"],
                    "fractional_max_pool": ["model=convnet", "model.widths=[4,8]"],
                    "spatial_dropout": ["model=convnet", "model.widths=[4,8]"],
                }.get(name, [])
            ),
        ]
        for name in sorted(path.stem for path in (CONF / "regularizer").glob("*.yaml"))
    ],
    ids=lambda overrides: overrides[0],
)
def test_every_activation_and_regularizer_of_the_catalogue_passes(overrides, tmp_path):
    model = [item for item in overrides if item.startswith("model")]
    rest = [item for item in TINY if not (model and item.startswith("model"))]
    checks = gradcheck(compose_gradcheck([*rest, *overrides]), tmp_path)
    assert checks and not [check for check in checks if check.verdict == "WRONG"], checks


def test_the_readings_and_the_kinks():
    assert relative_error(1.0, 1.0 + 1e-9) < 1e-7
    assert relative_error(0.0, 1e-12) < 1e-4  # a gradient below rounding's reach is not wrong
    assert Checked("w", (2,), 4, 1, 2e-4).verdict == "WRONG" and Checked("w", (2,), 4, 4, 0.0).verdict == "only kinks"
    # A ReLU's pieces: a step that moves a unit across 0 is a kink crossing.
    model = torch.nn.Sequential(torch.nn.Linear(1, 1), torch.nn.ReLU())
    watch = KinkWatch(model)
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[0].bias.fill_(0.0)
    _, before = watch.evaluate(lambda: model(torch.tensor([[1e-6]])).sum())
    _, after = watch.evaluate(lambda: model(torch.tensor([[-1e-6]])).sum())
    assert not torch.equal(before[0], after[0]) and watch.kinked == ["ReLU"]


def test_compose_needs_no_data_download():
    config = compose_config([])
    assert config.data.source == "cifar10"  # training's default; the check's own default is synthetic
    assert compose_gradcheck([]).data.source == "synthetic" and (PROJECT / "conf" / "gradcheck.yaml").exists()
