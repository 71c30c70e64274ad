"""Every option of every catalogue group: it composes, it trains for one epoch on synthetic data (in the slow
selection), and some test module checks its math (declared in that module's ``OPTIONS_TESTED``). A new YAML
file without a test fails here."""

import difflib
import importlib
import importlib.util
import pkgutil
import subprocess
import sys

import pytest

import tests
from runner.catalogue import header_cell, parse_option, read_catalogue, render_markdown
from runner.run import LIST_GROUPS
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
    "averaging",
    "tta",
    "diagnostics",
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
    ("averaging", "snapshots"): [*SMALL_MODEL, "schedule=cosine_restarts", "schedule.cycle_epochs=0.5"],
}


def overrides_for(group: str, option: str) -> list[str]:
    if group == "model":
        return [f"model={option}", *SMALL_KNOBS.get(option, [])]
    selection = f"{group}=[{option}]" if group in LIST_GROUPS else f"{group}={option}"
    return [*SPECIAL.get((group, option), SMALL_MODEL), selection]


def test_every_option_has_a_test_of_its_math():
    declared = declared_tests()
    missing = [f"{group}={option}" for group, option in catalogue() if option not in declared.get(group, set())]
    assert not missing, f"options without a math test (add them to a test module's OPTIONS_TESTED): {missing}"


def test_every_model_has_small_knobs_for_the_smoke_runs():
    assert set(options("model")) <= set(SMALL_KNOBS)


@pytest.mark.parametrize(("group", "option"), catalogue())
def test_option_composes(group, option):
    config = compose_config(SMOKE + overrides_for(group, option))
    assert group in config or option == "none"


# A second or more each, 94 of them: the slow selection (CI runs it) trains every option.
@pytest.mark.slow
@pytest.mark.parametrize(("group", "option"), catalogue())
def test_option_trains_one_epoch(group, option, tmp_path):
    summary = train_in_process(overrides_for(group, option), tmp_path)
    assert summary["status"] == "completed", summary
    assert summary["epochs_completed"] == 1


@pytest.mark.parametrize("experiment", sorted(path.stem for path in (CONF / "experiment").glob("*.yaml")))
def test_shipped_experiments_compose(experiment):
    config = compose_config([f"experiment={experiment}"])
    assert config.trainer.epochs >= 1


@pytest.mark.slow
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


@pytest.mark.parametrize("experiment", ["cpu_fast", "fast94", "fast94_muon", "fast95", "fast96"])
def test_speed_recipes_train_on_cpu(experiment, tmp_path):
    # Their options together (triangular schedule, fixed-scale norms with faster shifts, identity starts, Muon,
    # residual blocks) train. cpu_fast's time budget would fill 5 minutes: a fixed epoch instead (its budget has
    # tests of its own). Compiling is for the GPU: on the CPU it would take minutes.
    overrides = [f"experiment={experiment}", "model.widths=[8,16,16]", "trainer.epochs=1", "trainer.time_budget=null"]
    overrides.append("trainer.compile=false")
    summary = train_in_process(overrides, tmp_path)
    assert summary["status"] == "completed" and summary["test_acc"] is not None, summary


# --- The option reference: docs/options.md, generated from conf/ by runner.catalogue (fast, no training) ------

PAGE = PROJECT / "docs" / "options.md"


def test_reference_page_matches_conf():
    page, expected = PAGE.read_text(), render_markdown()
    if page != expected:
        difference = difflib.unified_diff(
            page.splitlines(), expected.splitlines(), "docs/options.md", "conf/", n=0, lineterm=""
        )
        shown = "\n".join(line[:200] for line in list(difference)[:12])
        pytest.fail(f"docs/options.md disagrees with conf/: run python docs/make_options.py\n{shown}")


def option_files() -> list[tuple[str, str]]:
    """(group, option) of every option file, found without runner.catalogue: a folder of conf/ is a group, and
    hydra/ holds the groups hydra/launcher and the like; claims/ holds the lectures' claims, not options."""
    found = []
    for path in sorted(CONF.rglob("*.yaml")):
        parts = path.relative_to(CONF).with_suffix("").parts
        if len(parts) > 1 and parts[0] != "claims":
            depth = 2 if parts[0] == "hydra" else 1
            found.append(("/".join(parts[:depth]), "/".join(parts[depth:])))
    return found


def test_reference_page_lists_every_option_file():
    sections = {}
    for section in PAGE.read_text().split("\n## ")[1:]:
        heading, _, body = section.partition("\n")
        sections[heading] = body
    missing = [
        f"{group}={option}" for group, option in option_files() if f"\n| `{option}`" not in sections.get(group, "")
    ]
    assert not missing, f"options missing from docs/options.md (run python docs/make_options.py): {missing}"


def test_reference_every_option_has_a_description():
    options = [option for group in read_catalogue().groups for option in group.options]
    assert len(options) == len(option_files())
    missing = [f"{option.group}={option.name}" for option in options if not option.description.strip()]
    assert not missing, f"options whose YAML header says nothing (add a # line at the top): {missing}"


def test_reference_parser_skips_the_package_directive_and_prefixes_keys_with_it():
    text = (
        "# @package regularizer.l2\n"
        "# L2 regularization as weight decay. Biases are left alone.\n"
        "_target_: runner.regularize.WeightDecay\n"
        "weight_decay: 5.0e-04   # the strength\n"
        "decay_all: false\n"
    )
    option = parse_option(text, "regularizer", "l2")
    assert option.header == ("L2 regularization as weight decay. Biases are left alone.",)
    assert option.description == "L2 regularization as weight decay"
    assert option.targets == ("runner.regularize.WeightDecay",)
    assert [(knob.key, knob.default, knob.comment) for knob in option.knobs] == [
        ("regularizer.l2.weight_decay", "0.0005", "the strength"),
        ("regularizer.l2.decay_all", "false", ""),
    ]


def test_reference_parser_gives_nested_list_entries_their_own_keys():
    text = (
        "# @package augmentation\n"
        "# Random horizontal flip, then pad-and-crop.\n"
        "flip:\n"
        "  _target_: runner.augment.RandomFlip\n"
        "  probability: 0.5\n"
        "  alternate: false        # true: flip each image in every other epoch\n"
        "crop:\n"
        "  _target_: runner.augment.RandomCrop\n"
        "  padding: 4\n"
    )
    option = parse_option(text, "augmentation", "flip_crop")
    assert {knob.key: knob.comment for knob in option.knobs} == {
        "augmentation.flip.probability": "",
        "augmentation.flip.alternate": "true: flip each image in every other epoch",
        "augmentation.crop.padding": "",
    }
    assert option.targets == ("runner.augment.RandomFlip", "runner.augment.RandomCrop")
    assert not option.is_recipe


def test_reference_parser_reads_inline_comments():
    text = (
        "# Settings.\n"
        "defaults:\n"
        "  - data: cifar10\n"
        "  - regularizer: [l2]\n"
        "seed: 0\n"
        "optimized_metric: test_acc  # what a run returns to a sweeper; a failed\n"
        "                            # run returns the worst value\n"
        "# a comment of its own, about nothing above\n"
        "trainer:                    # the training loop\n"
        "  name: 'a # b'             # a '#' inside quotes is no comment\n"
        "  widths: [16, 32]\n"
    )
    option = parse_option(text, "", "config")
    assert {knob.key: (knob.default, knob.comment) for knob in option.knobs} == {
        "seed": ("0", ""),
        "optimized_metric": ("test_acc", "what a run returns to a sweeper; a failed run returns the worst value"),
        "trainer.name": ("a # b", "a '#' inside quotes is no comment"),
        "trainer.widths": ("[16,32]", ""),
    }
    assert option.section_comments == {"trainer": "the training loop"}
    assert option.picks == (("data", "cifar10"), ("regularizer", "[l2]"))


def test_reference_parser_keeps_command_examples_out_of_the_description():
    text = (
        "# @package _global_\n"
        "# Lecture claim: a larger batch needs a larger learning rate (Goyal et al. 2017):\n"
        "#   python -m runner.train -m experiment=lecture/large_batch   # one rate for every batch\n"
        "# Scaled for a 2-core CPU.\n"
        "defaults:\n"
        "  - override /model: fastnet\n"
        "trainer:\n"
        "  epochs: 4\n"
        "hydra:\n"
        "  sweeper:\n"
        "    params:\n"
        "      data.batch_size: 128,1024\n"
    )
    option = parse_option(text, "experiment", "lecture/large_batch")
    assert option.description == "Lecture claim: a larger batch needs a larger learning rate (Goyal et al. 2017)"
    assert option.is_recipe and option.picks == (("model", "fastnet"),)
    assert [knob.key for knob in option.knobs] == ["trainer.epochs", "hydra.sweeper.params.data.batch_size"]
    assert header_cell(option.header) == (
        "Lecture claim: a larger batch needs a larger learning rate (Goyal et al. 2017):"
        "<br>`python -m runner.train -m experiment=lecture/large_batch` (one rate for every batch)"
        "<br>Scaled for a 2-core CPU."
    )


def test_reference_parser_reads_options_without_knobs_and_default_packages():
    empty = parse_option("# @package augmentation\n# No augmentation.\n", "augmentation", "none")
    assert empty.knobs == () and empty.description == "No augmentation"
    launcher = parse_option("# Jobs side by side, e.g. Two at once.\nn_jobs: 2\n", "hydra/launcher", "gpus")
    assert [knob.key for knob in launcher.knobs] == ["hydra.launcher.n_jobs"]
    assert launcher.description == "Jobs side by side, e.g. Two at once"


def test_reference_import_is_torch_free():
    # --help and the docs read the catalogue: importing it must stay as cheap as reading a few YAML files.
    check = "import runner.catalogue, sys; assert 'torch' not in sys.modules and 'hydra' not in sys.modules"
    result = subprocess.run([sys.executable, "-c", check], cwd=PROJECT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_reference_check_flags_a_stale_page(tmp_path, monkeypatch, capsys):
    spec = importlib.util.spec_from_file_location("make_options", PROJECT / "docs" / "make_options.py")
    make_options = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_options)
    monkeypatch.setattr(make_options, "PAGE", tmp_path / "options.md")
    make_options.PAGE.write_text("# Options\n\nedited by hand\n")
    assert make_options.main(["--check"]) == 1
    assert "run python docs/make_options.py" in capsys.readouterr().err
    assert make_options.main([]) == 0
    assert make_options.main(["--check"]) == 0
