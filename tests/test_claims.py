"""The lectures' claims (runner.claims): every claim file reads and every run it asks for composes and
validates; each verdict follows from the interval (agrees, disagrees, inconclusive at this size); the page is
computed from the result files, so changing one changes its verdict; a tiny claim runs end to end and a second
sitting trains nothing again."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from runner import claims as claims_module
from runner.claims import (
    VERDICTS,
    Claim,
    collect,
    interval_verdict,
    judge,
    metric_name,
    read_claim,
    read_claims,
    render_page,
    run_value,
    shown,
)
from runner.errors import ConfigError
from runner.validate import check
from tests.conftest import CONF, PROJECT, SMOKE

AGREES, DISAGREES, INCONCLUSIVE = VERDICTS
CLAIMS = read_claims()


def compose_named(name: str, overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(name, overrides=overrides)


def claim_of(arms: dict, relations: list, metrics=("test_acc",), seeds=(0, 1, 2), kind="train") -> Claim:
    return Claim(
        name="made_up",
        title="A made-up claim",
        lecture="A beats B.",
        setting="Nowhere.",
        tier="cpu",
        kind=kind,
        base=[],
        arms={arm: [] for arm in arms},
        seeds=list(seeds),
        metrics=list(metrics),
        relations=relations,
    )


@pytest.mark.parametrize("claim", CLAIMS, ids=[claim.name for claim in CLAIMS])
def test_every_run_of_every_claim_composes_and_validates(claim):
    assert claim.tier != "cpu" or len(claim.seeds) >= 3, "the cpu tier runs at least 3 seeds per arm"
    assert claim.relations, "a claim with nothing to judge"
    for relation in claim.relations:
        claim.relation_metric(relation)  # names a metric the claim has
    config_name = {"train": "config", "diagnose": "diagnose", "gradcheck": "gradcheck"}[claim.kind]
    for arm, overrides in claim.arms.items():
        if any("_target_=planted." in override for override in overrides):
            continue  # the planted layer is importable only from its run folder; test_gradcheck plants one
        config = compose_named(config_name, [*claim.base, *overrides, "seed=0"])
        if claim.kind == "train":
            check(config)
        assert config.seed == 0, arm


def test_every_cpu_claim_says_what_it_tests_and_the_gpu_tier_exists():
    tiers = {claim.tier for claim in CLAIMS}
    assert tiers == {"cpu", "gpu"}
    for claim in CLAIMS:
        assert len(claim.lecture) > 40 and len(claim.setting) > 40, claim.name


def test_a_relation_naming_an_arm_the_file_lacks_is_refused(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("title: T\nlecture: L\nsetting: S\narms: {a: []}\nrelations: [{better: a, than: b}]\n")
    with pytest.raises(ConfigError, match="names arms it does not have"):
        read_claim(path)
    path.write_text("title: T\nlecture: L\n")
    with pytest.raises(ConfigError, match="not a claim file"):
        read_claim(path)


def test_interval_verdicts():
    assert interval_verdict(0.01, 0.03) == AGREES
    assert interval_verdict(-0.03, -0.01) == DISAGREES
    assert interval_verdict(-0.01, 0.03) == INCONCLUSIVE
    assert interval_verdict(None, None) == INCONCLUSIVE
    assert interval_verdict(0.2, 0.3, threshold=0.25) == INCONCLUSIVE


def test_better_agrees_disagrees_or_is_inconclusive_by_welch_interval():
    claim = claim_of(["a", "b"], [{"better": "a", "than": "b"}])
    name = metric_name("test_acc")

    def verdict(a, b):
        return judge(claim, claim.relations[0], {name: {"a": a, "b": b}})

    clear = verdict([0.80, 0.81, 0.82], [0.70, 0.71, 0.72])
    assert clear["verdict"] == AGREES and clear["difference"] == pytest.approx(0.10)
    # Welch's interval: mean difference +- t(0.975, 4 dof) * sqrt(s_a^2/3 + s_b^2/3), with s = 0.01 on both sides.
    half = 2.7764451 * (2 * 0.01**2 / 3) ** 0.5
    assert clear["ci_low"] == pytest.approx(0.10 - half, rel=1e-5)
    assert verdict([0.70, 0.71, 0.72], [0.80, 0.81, 0.82])["verdict"] == DISAGREES
    assert verdict([0.70, 0.75, 0.80], [0.72, 0.74, 0.76])["verdict"] == INCONCLUSIVE
    lonely = verdict([0.80, None, None], [0.70, 0.71, 0.72])
    assert lonely["verdict"] == INCONCLUSIVE and "fewer than two" in lonely["why"]


def test_lower_is_better_for_losses_and_epochs():
    claim = claim_of(["fast", "slow"], [{"better": "fast", "than": "slow"}], metrics=["test_loss"])
    values = {metric_name("test_loss"): {"fast": [1.0, 1.1, 1.05], "slow": [2.0, 2.1, 2.05]}}
    assert judge(claim, claim.relations[0], values)["verdict"] == AGREES
    epochs = {"epochs_to": {"key": "train_acc", "at_least": 0.5}}
    claim = claim_of(["fast", "slow"], [{"better": "fast", "than": "slow"}], metrics=[epochs])
    values = {metric_name(epochs): {"fast": [2.0, 2.0, 3.0], "slow": [8.0, 9.0, 9.0]}}
    assert judge(claim, claim.relations[0], values)["verdict"] == AGREES


def test_within_a_margin():
    claim = claim_of(["a", "b"], [{"within": "a", "of": "b", "margin": 0.02}])
    name = metric_name("test_acc")
    same = judge(claim, claim.relations[0], {name: {"a": [0.800, 0.801, 0.802], "b": [0.801, 0.802, 0.803]}})
    assert same["verdict"] == AGREES
    far = judge(claim, claim.relations[0], {name: {"a": [0.70, 0.701, 0.702], "b": [0.80, 0.801, 0.802]}})
    assert far["verdict"] == DISAGREES
    noisy = judge(claim, claim.relations[0], {name: {"a": [0.70, 0.80, 0.75], "b": [0.80, 0.801, 0.802]}})
    assert noisy["verdict"] == INCONCLUSIVE


def test_above_and_below_a_value():
    claim = claim_of(["a"], [{"above": "a", "value": 0.9}, {"below": "a", "value": 1e-7}])
    name = metric_name("test_acc")
    high = {name: {"a": [0.95, 0.96, 0.97]}}
    assert judge(claim, claim.relations[0], high)["verdict"] == AGREES
    assert judge(claim, claim.relations[1], high)["verdict"] == DISAGREES
    tiny = {name: {"a": [1e-9, 2e-9, 3e-9]}}
    assert judge(claim, claim.relations[1], tiny)["verdict"] == AGREES
    assert judge(claim, claim.relations[0], {name: {"a": [0.85, 0.95, 0.90]}})["verdict"] == INCONCLUSIVE
    unmeasured = judge(claim, claim.relations[0], {name: {"a": [None, None, None]}})
    assert unmeasured["verdict"] == INCONCLUSIVE and unmeasured["why"] == "no run has a value"


def test_one_arm_scored_two_ways_is_a_paired_difference_seed_by_seed():
    claim = claim_of(
        ["big"],
        [{"better": "big", "than": "big", "metric": 1, "than_metric": 0}],
        metrics=["test_acc", "precise_bn_test_acc"],
    )
    plain, recomputed = (metric_name(metric) for metric in claim.metrics)
    # Unpaired, 0.10 +- 0.05 per seed would be inconclusive; paired, every seed gains 0.20 +- 0.01.
    values = {plain: {"big": [0.10, 0.20, 0.15]}, recomputed: {"big": [0.30, 0.41, 0.35]}}
    result = judge(claim, claim.relations[0], values)
    assert result["verdict"] == AGREES and result["difference"] == pytest.approx(0.2033333)


def write_run(folder: Path, summary: dict, rows: list[dict] = ()) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "summary.json").write_text(json.dumps({"status": "completed", **summary}))
    (folder / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))


def test_run_values_read_each_metric_kind(tmp_path):
    claim = claim_of(["a"], [{"above": "a", "value": 0}])
    write_run(
        tmp_path,
        {"test_acc": 0.5, "ema_test_acc": 0.53, "warnings": ["the loss is flat, then drops: bad init?"]},
        [
            {"epoch": 1, "train_acc": 0.3, "train_eval_acc": 0.35},
            {"epoch": 2, "train_acc": 0.55},
            {"epoch": 3, "train_acc": 0.6, "train_eval_acc": 0.7},
        ],
    )
    assert run_value(claim, tmp_path, "test_acc") == 0.5
    # A per-epoch number the summary does not repeat: the last epoch's; none in any row, no value.
    assert run_value(claim, tmp_path, "train_eval_acc") == 0.7
    assert run_value(claim, tmp_path, "train_test_gap") is None
    assert run_value(claim, tmp_path, {"difference": ["ema_test_acc", "test_acc"]}) == pytest.approx(0.03)
    assert run_value(claim, tmp_path, {"warning": "flat, then drops"}) == 1.0
    assert run_value(claim, tmp_path, {"warning": "diverged"}) == 0.0
    assert run_value(claim, tmp_path, {"epochs_to": {"key": "train_acc", "at_least": 0.5}}) == 2.0
    # Never reached: censored at one epoch more than the run trained.
    assert run_value(claim, tmp_path, {"epochs_to": {"key": "train_acc", "at_least": 0.9}}) == 4.0
    assert run_value(claim, tmp_path / "absent", "test_acc") is None


def test_values_read_as_accuracies_points_or_numbers():
    assert shown(0.612, "test_acc") == "61.2%" and shown(0.014, "test_acc", difference=True) == "+1.4 points"
    assert shown(0.61, "train_test_gap") == "61.0 points" and shown(-0.05, "train_test_gap", True) == "-5.0 points"
    assert shown(2.5, {"epochs_to": {"key": "train_acc", "at_least": 0.5}}) == "2.5"


def made_up_claim_file(folder: Path) -> Path:
    path = folder / "made_up.yaml"
    path.write_text(
        "title: A made-up claim\n"
        "lecture: Arm a beats arm b.\n"
        "setting: Fake runs.\n"
        "arms: {a: [], b: []}\n"
        "relations: [{better: a, than: b}]\n"
    )
    return path


def test_the_page_is_computed_from_the_result_file_so_its_verdict_follows_a_change(tmp_path):
    claim = read_claim(made_up_claim_file(tmp_path))
    runs = tmp_path / "runs"
    for arm, accuracies in (("a", [0.80, 0.81, 0.82]), ("b", [0.70, 0.71, 0.72])):
        for seed, accuracy in zip(claim.seeds, accuracies, strict=True):
            write_run(runs / claim.name / arm / f"seed-{seed}", {"test_acc": accuracy})
    result = collect(claim, runs)
    results_folder = tmp_path / "results"
    results_folder.mkdir()
    path = results_folder / "made_up.json"
    path.write_text(json.dumps(result))

    page = render_page([claim], claims_module.read_results(results_folder))
    assert f"`a` beats `b` (test acc): **{AGREES}** (difference +10.0 points" in page
    assert "| `a` | 3 | 81.0% ± 1.0 points [78.5%, 83.5%] |" in page

    changed = json.loads(path.read_text())
    changed["values"]["test acc"]["a"] = [0.60, 0.61, 0.62]
    path.write_text(json.dumps(changed))
    page = render_page([claim], claims_module.read_results(results_folder))
    assert f"`a` beats `b` (test acc): **{DISAGREES}** (difference -10.0 points" in page
    assert f"**{AGREES}** (" not in page and "| cpu | disagrees |" in page

    changed["values"]["test acc"]["a"] = [0.60, 0.80, 0.70]
    path.write_text(json.dumps(changed))
    assert f"**{INCONCLUSIVE}**" in render_page([claim], claims_module.read_results(results_folder))

    claim.arms["c"] = []  # the claim was edited after it was measured: its old values are not judged
    page = render_page([claim], claims_module.read_results(results_folder))
    assert "measured for another version of this claim" in page and f"**{INCONCLUSIVE}** (" not in page


def test_a_claim_without_a_result_says_which_tier_it_waits_for():
    page = render_page(CLAIMS, {})
    for claim in CLAIMS:
        assert f"python -m runner.claims --tier {claim.tier} --only {claim.name}" in page
    assert "not measured yet" in page


@pytest.mark.slow
def test_a_tiny_claim_runs_end_to_end_and_a_second_sitting_trains_nothing_again(tmp_path, monkeypatch):
    folder = tmp_path / "claims"
    folder.mkdir()
    base = ", ".join(f'"{override}"' for override in [*SMOKE, "trainer.threads=1", "diagnostics=off"])
    (folder / "tiny.yaml").write_text(
        "title: Tiny\n"
        "lecture: A wider network does not do worse here, and an ensemble beats its members.\n"
        "setting: Synthetic data, one epoch.\n"
        f"base: [{base}]\n"
        "seeds: [0, 1]\n"
        "arms: {narrow: [model=mlp, model.width=8], wide: [model=mlp, model.width=32]}\n"
        "metrics: [test_acc, ensemble_gain]\n"
        "relations: [{better: wide, than: narrow}, {above: wide, value: -1.0, metric: 1}]\n"
    )
    monkeypatch.setattr(claims_module, "CLAIMS", folder)
    monkeypatch.setattr(claims_module, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(claims_module, "FIGURES", tmp_path / "figures")
    monkeypatch.setattr(claims_module, "PAGE", tmp_path / "lecture.md")
    monkeypatch.setenv("RUNNER_OUTPUTS", str(tmp_path / "outputs"))
    runs = tmp_path / "runs"
    assert claims_module.main(["--only", "tiny", "--runs", str(runs)]) == 0

    result = json.loads((tmp_path / "results" / "tiny.json").read_text())
    assert len(result["values"]["test acc"]["wide"]) == 2 and result["missing"] == []
    assert len(result["values"]["ensemble accuracy less the member's"]["wide"]) == 2
    page = (tmp_path / "lecture.md").read_text()
    assert "## Tiny" in page and "| `wide` | 2 |" in page
    assert (tmp_path / "figures" / "tiny.png").stat().st_size > 10_000  # the learning curves, from compare
    finished = sorted(runs.glob("tiny/*/seed-*/summary.json"))
    assert len(finished) == 4
    stamps = [path.stat().st_mtime_ns for path in finished]

    assert claims_module.main(["--only", "tiny", "--runs", str(runs)]) == 0
    assert [path.stat().st_mtime_ns for path in finished] == stamps, "a finished run was trained again"
    assert claims_module.main(["--only", "nonesuch"]) == 2


def test_the_command_line_lists_its_options():
    result = subprocess.run(
        [sys.executable, "-m", "runner.claims", "--help"], cwd=PROJECT, capture_output=True, text=True
    )
    assert result.returncode == 0
    for option in ("--tier", "--only", "--data", "--page-only"):
        assert option in result.stdout
