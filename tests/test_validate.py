"""The generic checks (runner.validate) and every component's own: bad input gets a clear message and exit
code 2 before any training, naming the full key."""

import sys

import pytest

from runner import train
from runner.validate import check
from tests.conftest import SMALL_MODEL, SMOKE, compose_config, run_entrypoint


def invoke(arguments, tmp_path, monkeypatch, capsys) -> tuple[int, str]:
    """``python -m runner.train ARGS`` in this process: exit code and what it printed to stderr."""
    monkeypatch.setenv("RUNNER_OUTPUTS", str(tmp_path))
    model = [] if any(argument.startswith("model=") for argument in arguments) else SMALL_MODEL
    monkeypatch.setattr(sys, "argv", ["runner.train", *SMOKE, *model, *arguments])
    with pytest.raises(SystemExit) as exited:
        train.main()
    return exited.value.code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["optimizer.lr=-0.1"], "optimizer.lr=-0.1 is not allowed: it must be a learning rate > 0"),
        (["optimizer.lr=0"], "optimizer.lr=0 is not allowed"),
        (["optimizer.momentum=1.5"], "optimizer.momentum=1.5 is not allowed: it must be a momentum in [0, 1)"),
        (["data.batch_size=0"], "data.batch_size=0 is not allowed: it must be a whole number >= 1"),
        (["trainer.epochs=-1"], "trainer.epochs=-1 is not allowed"),
        (["trainer.eval_every=0"], "trainer.eval_every=0 is not allowed: it must be a whole number >= 1"),
        (
            ["trainer.eval_batch_size=big"],
            "trainer.eval_batch_size='big' is not allowed: it must be auto or a whole number >= 1",
        ),
        (["regularizer.l2.weight_decay=-1e-4"], "regularizer.l2.weight_decay=-0.0001 is not allowed"),
        (["augmentation.crop.padding=-2"], "augmentation.crop.padding=-2 is not allowed"),
        (["augmentation.flip.probability=2"], "augmentation.flip.probability=2 is not allowed"),
        (["schedule.warmup_epochs=-1"], "schedule.warmup_epochs=-1 is not allowed"),
        (
            ["regularizer=[dropout]", "regularizer.dropout.p=1.5"],
            "regularizer.dropout.p=1.5 is not allowed: it must be a drop probability in [0, 1)",
        ),
        (
            ["augmentation=[mixup]", "augmentation.mixup.alpha=0"],
            "augmentation.mixup.alpha=0 is not allowed: it must be an alpha > 0",
        ),
        (["norm.lr_multiplier=0"], "norm.lr_multiplier=0 is not allowed: it must be a learning-rate multiplier > 0"),
        (
            ["schedule=onecycle", "schedule.anneal=step"],
            "schedule.anneal='step' is not allowed: it must be cos or linear",
        ),
        (["tta=multicrop", "tta.padding=edge"], "tta.padding='edge' is not allowed: it must be constant or reflect"),
        (["tta=multicrop", "tta.shift=0"], "tta.shift=0 is not allowed: it must be a whole number of pixels >= 1"),
        (["averaging=[ema]", "averaging.ema.decay=1.5"], "averaging.ema.decay=1.5 is not allowed: it must be a decay"),
        (
            ["averaging=[snapshots]"],
            "averaging=[snapshots] takes its snapshots at the ends of the learning-rate cycles",
        ),
        (
            ["augmentation=[crop]", "augmentation.crop.padding_mode=zeros"],
            "augmentation.crop.padding_mode='zeros' is not allowed: it must be constant or reflect",
        ),
        (
            ["experiment=fast94", "schedule=linear"],
            "schedule: runner.schedules.linear has no setting anneal, peak_fraction, initial_division",
        ),
        (["data.classes=[class_0,zebra]"], "data.classes"),
        (["model=resnet", "model.depth=21"], "model.depth=21 must be 6n + 2"),
        (["data.subset=5000"], "data.subset=5000 must be between 1 and the 200 training images"),
        (["data.val_size=200"], "data.val_size=200 must be at least 0 and below the 200 training images"),
        (["trainer.device=cuda"] if not train.torch.cuda.is_available() else [], "no CUDA device"),
    ],
)
def test_bad_value_exits_2_with_the_key_the_value_and_what_is_allowed(
    arguments, expected, tmp_path, monkeypatch, capsys
):
    if not arguments:
        pytest.skip("this machine has CUDA")
    code, printed = invoke(arguments, tmp_path, monkeypatch, capsys)
    assert code == 2, printed
    assert expected in printed
    assert "Traceback" not in printed


def test_several_problems_are_reported_together():
    problems = check(compose_config(SMOKE + ["optimizer.lr=-1", "data.batch_size=0"]))
    assert len(problems) == 2


def test_the_defaults_are_valid():
    assert check(compose_config()) == []


def test_unknown_options_keep_hydras_message(tmp_path):
    result = run_entrypoint(["activation=relu6"], tmp_path, timeout=120)
    assert result.returncode != 0
    assert "Could not find 'activation/relu6'" in result.stderr and "Available options" in result.stderr
