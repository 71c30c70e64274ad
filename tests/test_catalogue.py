"""Every option of every catalogue group: it composes, it trains for one epoch on synthetic data, and some
test module checks its math (declared in that module's ``OPTIONS_TESTED``). A new YAML file without a
test fails here."""

import importlib
import pkgutil
import subprocess
import sys

import pytest

import tests
from tests.conftest import CONF, PROJECT, SMALL_MODEL, SMOKE, compose_config, train_in_process

GROUPS = [
    "activation",
    "init",
    "norm",
    "preprocess",
    "model",
    "regularizer",
    "augmentation",
    "optimizer",
    "schedule",
]
# Knobs that keep the big architectures to a second on CPU; their full sizes are tested in test_models.
SMALL_KNOBS = {
    "mlp": ["model.depth=2", "model.width=32"],
    "convnet": ["model.widths=[8,16]"],
    "vgg": ["model.widths=[8,16]", "model.convs_per_stage=1", "model.hidden=32"],
    "resnet": ["model.depth=8", "model.width=4"],
    "wide_resnet": ["model.depth=10", "model.widen_factor=1"],
    "preact_resnet18": ["model.width=4"],
    "densenet": ["model.depth=10", "model.growth=4"],
    "fastnet": ["model.widths=[8,16,16]", "model.stem_width=24"],
}


def options(group: str) -> list[str]:
    return sorted(path.stem for path in (CONF / group).glob("*.yaml"))


def catalogue() -> list[tuple[str, str]]:
    return [(group, option) for group in GROUPS for option in options(group)]


def declared_tests() -> dict[str, set]:
    declared: dict[str, set] = {}
    for module in pkgutil.iter_modules(tests.__path__):
        if module.name.startswith("test_"):
            tested = getattr(importlib.import_module(f"tests.{module.name}"), "OPTIONS_TESTED", {})
            for group, names in tested.items():
                declared.setdefault(group, set()).update(names)
    return declared


# Options that need a particular model or data to do anything: residual blocks, or small images so that a
# whitening's eigendecomposition takes a moment rather than seconds.
SPECIAL = {
    ("regularizer", "stochastic_depth"): ["model=resnet", *SMALL_KNOBS["resnet"]],
    ("init", "fixup"): ["model=resnet", *SMALL_KNOBS["resnet"]],
    ("init", "whitening"): ["model=fastnet", *SMALL_KNOBS["fastnet"]],
    ("preprocess", "pca_whiten"): [*SMALL_MODEL, "data.image_size=8"],
    ("preprocess", "zca_whiten"): [*SMALL_MODEL, "data.image_size=8"],
}


def overrides_for(group: str, option: str) -> list[str]:
    if group == "model":
        return [f"model={option}", *SMALL_KNOBS.get(option, [])]
    selection = f"{group}=[{option}]" if group in ("regularizer", "augmentation") else f"{group}={option}"
    return [*SPECIAL.get((group, option), SMALL_MODEL), selection]


def test_every_option_has_a_test_of_its_math():
    declared = declared_tests()
    missing = [f"{group}={option}" for group, option in catalogue() if option not in declared.get(group, set())]
    assert not missing, f"options without a math test (add them to a test module's OPTIONS_TESTED): {missing}"


def test_every_model_has_small_knobs_for_the_smoke_runs():
    assert set(options("model")) <= set(SMALL_KNOBS)


@pytest.mark.parametrize(("group", "option"), catalogue())
def test_option_composes_and_trains_one_epoch(group, option, tmp_path):
    config = compose_config(SMOKE + overrides_for(group, option))
    assert group in config or option == "none"
    summary = train_in_process(overrides_for(group, option), tmp_path)
    assert summary["status"] == "completed", summary
    assert summary["epochs_completed"] == 1


@pytest.mark.parametrize("experiment", sorted(path.stem for path in (CONF / "experiment").glob("*.yaml")))
def test_shipped_experiments_compose(experiment):
    config = compose_config([f"experiment={experiment}"])
    assert config.trainer.epochs >= 1


def test_cfg_job_prints_the_composed_config():
    result = subprocess.run(
        [sys.executable, "-m", "runner.train", "--cfg", "job", "activation=gelu", "activation.approximate=tanh"],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "_target_: torch.nn.GELU" in result.stdout and "approximate: tanh" in result.stdout


@pytest.mark.parametrize("experiment", ["cpu_fast", "fast94"])
def test_speed_recipes_train_on_cpu(experiment, tmp_path):
    # Their options together (triangular schedule, fixed-scale norms with faster shifts, identity starts) train.
    summary = train_in_process([f"experiment={experiment}", "model.widths=[8,16,16]", "trainer.epochs=1"], tmp_path)
    assert summary["status"] == "completed" and summary["test_acc"] is not None, summary
