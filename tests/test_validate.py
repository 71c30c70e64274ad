"""The generic checks (runner.validate) and every component's own: bad input gets a clear message and exit
code 2 before any training, naming the full key."""

import sys

import pytest
from omegaconf import OmegaConf

from runner import train
from runner.catalogue import read_catalogue
from runner.validate import FREE_FORM, check, rule_for
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
        (["optimizer=adam", "optimizer.eps=-1"], "optimizer.eps=-1 is not allowed: it must be an epsilon > 0"),
        (["trainer.device=banana"], "trainer.device='banana' is not allowed: it must be auto, cpu, mps, cuda or"),
        (["seed=abc"], "seed='abc' is not allowed: it must be a whole number >= 0"),
        (["norm.eps=-1"], "norm.eps=-1 is not allowed: it must be an epsilon > 0"),
        (["norm.momentum=5"], "norm.momentum=5 is not allowed"),
        (["schedule=step", "schedule.factor=-1"], "schedule.factor=-1 is not allowed: it must be a factor in (0, 1)"),
        (["augmentation=[affine]", "augmentation.affine.rotation=nan"], "augmentation.affine.rotation=nan is not"),
        (["augmentation=[affine]", "augmentation.affine.shear=inf"], "augmentation.affine.shear=inf is not"),
        (["+trainer.epoch=5"], "+trainer.epoch: no part of the run reads a setting of that name (did you mean "),
        (["+optimizer.momentun=0.5"], "optimizer: torch.optim.SGD has no setting momentun (did you mean momentum?)"),
        (
            ["optimizer=adam", "optimizer.betas=[0.9]"],
            "optimizer.betas=[0.9] is not allowed: it must be two betas in [0, 1)",
        ),
        (["model.widths=[8,0]"], "model.widths=[8, 0] is not allowed: it must be a list of whole numbers >= 1"),
        (["optimized_metric=accuracy"], "optimized_metric='accuracy' is not allowed: it must be one of test_acc"),
        # Combinations only the built network reveals: refused when it is built, as a paragraph all the same.
        (
            ["model=fastnet", "model.widths=[8,16,16]", "model.stem_width=30", "init=whitening"],
            "init=whitening needs a first convolution with an even number of output channels, at most 2 x 12 = 24",
        ),
        (["model=mlp", "init=whitening"], "init=whitening needs a model whose first layer is a convolution"),
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


@pytest.mark.slow
def test_a_mandatory_setting_left_out_is_named(tmp_path):
    result = run_entrypoint(["data=folder", "trainer.epochs=1"], tmp_path, timeout=120)
    assert result.returncode == 2 and "data.root must be set: add data.root=VALUE" in result.stderr
    assert "Traceback" not in result.stderr


def test_several_problems_are_reported_together():
    problems = check(compose_config(SMOKE + ["optimizer.lr=-1", "data.batch_size=0"]))
    assert len(problems) == 2


def test_the_defaults_are_valid():
    assert check(compose_config()) == []


def test_an_unknown_option_is_named_with_the_options_there_are(tmp_path):
    result = run_entrypoint(["activation=relu6"], tmp_path, timeout=120)
    assert result.returncode == 2
    assert "activation=relu6: no such option (did you mean relu?). The options: elu, gelu," in result.stderr


def declared_knobs():
    """Every setting of every YAML file in conf/ with its default: the settings outside the groups and every
    option's knobs (the recipes only set those)."""
    catalogue = read_catalogue()
    options = [catalogue.settings, catalogue.diagnose, catalogue.gradcheck]
    options += [option for group in catalogue.groups if not group.name.startswith("hydra") for option in group.options]
    return [(option, knob) for option in options if not option.is_recipe for knob in option.knobs]


def test_every_setting_of_every_yaml_file_has_a_rule_its_default_passes():
    without, failing = [], []
    for option, knob in declared_knobs():
        if knob.key in FREE_FORM or knob.key.rsplit(".", 1)[-1].startswith("_"):
            continue
        entry = rule_for(knob.key)
        if entry is None:
            without.append(f"{option.group}/{option.name}: {knob.key}")
            continue
        # As Hydra reads the file: 1e-05 is a number, [8, 16] a list.
        default = OmegaConf.to_container(OmegaConf.create(f"value: {knob.default}"))["value"]
        if default is not None and not entry[1](default) and not (isinstance(default, str) and "${" in default):
            failing.append(f"{option.group}/{option.name}: {knob.key}={knob.default} ({entry[2]})")
    assert not without, f"settings without a rule in runner.validate.RULES: {without}"
    assert not failing, f"defaults their own rule refuses: {failing}"


def test_the_rules_refuse_values_of_the_wrong_type_and_out_of_range():
    for key, bad in [("optimizer.lr", "fast"), ("regularizer.dropout.p", 1.0), ("model.depth", 2.5), ("tta.shift", 0)]:
        assert not rule_for(key)[1](bad), key
    assert rule_for("schedule.cycle_momentum")[0] == "schedule.cycle_momentum"  # not taken for a momentum value
