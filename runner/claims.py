"""The lectures' claims, checked: each file in ``conf/claims/`` states a claim of the lectures, the setting it is
tested in, the arms to compare (each a set of overrides), the seeds, the metric and the relations the lecture
asserts. This command trains (or diagnoses, or gradient-checks) what is missing, groups each arm's seeds, and
computes every relation's verdict from a 95% confidence interval: **agrees**, **disagrees**, or
**inconclusive at this size** (the interval holds both answers). ``docs/lecture.md`` is then written from the
claim files and the results alone: no number or verdict is typed by hand.

    python -m runner.claims --tier cpu --data ../shared/data/cifar10-jpeg.tar.gz   # every CPU claim, the page
    python -m runner.claims --only activations,initialization                       # some claims, the page
    python -m runner.claims --page-only                                             # the page from the results

Runs land in ``outputs/claims/<claim>/<arm>/<seed>/`` and stay there: a run that completed is not trained again
(the runner's auto-resume over a fixed folder), so the tier can be built over several sittings. A claim's
results are ``docs/lecture/results/<claim>.json``; the page reads only those and the claim files.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from runner import outputs_dir, project_path
from runner.ensemble import build_ensemble
from runner.errors import USER_ERROR_EXIT, ConfigError
from runner.files import read_json_or_none, read_jsonl, write_json
from runner.report.statistics import mean_interval, welch_difference

CLAIMS = Path(project_path("conf", "claims"))
TIERS = ("cpu", "gpu")
KINDS = ("train", "diagnose", "gradcheck")
VERDICTS = ("agrees", "disagrees", "inconclusive at this size")


@dataclass
class Claim:
    name: str
    title: str
    lecture: str  # what the lectures claim, in a sentence
    setting: str  # the network, data and length it is tested at, and why
    tier: str
    kind: str
    base: list[str]
    arms: dict[str, list[str]]
    seeds: list[int]
    metrics: list[str | dict]  # the first is the claim's own; a relation may name another (metric: N or name)
    relations: list[dict]
    figure: bool = True
    curve: str | None = None  # the accuracy the figure draws against epoch (compare --curve), else test_acc
    notes: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # files each run's folder gets (a planted layer)

    def relation_metric(self, relation: dict) -> str | dict:
        chosen = relation.get("metric", 0)
        if isinstance(chosen, int):
            return self.metrics[chosen]
        return next(metric for metric in self.metrics if metric_name(metric) == chosen or metric == chosen)


def lower_is_better(metric: str | dict) -> bool:
    text = json.dumps(metric)
    return "loss" in text or "epochs_to" in text or "gradcheck" in text


def read_claim(path: Path) -> Claim:
    """A claim file, read as data and checked: every relation names arms the file has."""
    data = yaml.safe_load(path.read_text()) or {}
    try:
        claim = Claim(
            name=path.stem,
            title=str(data["title"]),
            lecture=str(data["lecture"]).strip(),
            setting=str(data["setting"]).strip(),
            tier=str(data.get("tier", "cpu")),
            kind=str(data.get("kind", "train")),
            base=[str(item) for item in data.get("base", [])],
            arms={str(name): [str(item) for item in overrides] for name, overrides in data["arms"].items()},
            seeds=[int(seed) for seed in data.get("seeds", [0, 1, 2])],
            metrics=list(data.get("metrics", ["test_acc"])),
            relations=list(data.get("relations", [])),
            figure=bool(data.get("figure", True)),
            curve=str(data["curve"]) if data.get("curve") else None,
            notes=[str(note).strip() for note in data.get("notes", [])],
            files={str(name): str(text) for name, text in (data.get("files") or {}).items()},
        )
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise ConfigError(f"{path}: not a claim file ({type(error).__name__}: {error}).") from None
    if claim.tier not in TIERS or claim.kind not in KINDS:
        raise ConfigError(f"{path}: tier must be one of {TIERS} and kind one of {KINDS}.")
    for relation in claim.relations:
        named = [relation.get(key) for key in ("better", "than", "within", "of", "above", "below") if key in relation]
        unknown = [name for name in named if name not in claim.arms]
        if not named or unknown:
            raise ConfigError(f"{path}: a relation names arms it does not have: {relation}.")
    return claim


def read_claims(folder: Path | None = None) -> list[Claim]:
    return [read_claim(path) for path in sorted((folder or CLAIMS).glob("*.yaml"))]


# --- Running what a claim needs ----------------------------------------------------------------------------


def run_folder(runs: Path, claim: Claim, arm: str, seed: int) -> Path:
    return runs / claim.name / arm / f"seed-{seed}"


def command(claim: Claim, arm: str, seed: int, folder: Path, data: list[str]) -> list[str]:
    """The runner command one run of a claim is: ``runner.train``, ``runner.diagnose`` or ``runner.gradcheck``."""
    module = {"train": "runner.train", "diagnose": "runner.diagnose", "gradcheck": "runner.gradcheck"}[claim.kind]
    arguments = [*claim.base, *claim.arms[arm], f"seed={seed}", f"hydra.run.dir={folder}", "trainer.progress=false"]
    if claim.kind != "gradcheck":
        arguments = [*data, *arguments]
    return [sys.executable, "-m", module, *arguments]


def finished(claim: Claim, folder: Path) -> bool:
    if claim.kind == "train":
        summary = read_json_or_none(folder / "summary.json") or {}
        return summary.get("status") in ("completed", "diverged")
    return (folder / ("gradcheck.json" if claim.kind == "gradcheck" else "diagnose.json")).exists()


def run_claim(claim: Claim, runs: Path, data: list[str]) -> None:
    """Every run of the claim that has not finished, one after another, each in its own fixed folder."""
    for arm in claim.arms:
        for seed in claim.seeds:
            folder = run_folder(runs, claim, arm, seed)
            if finished(claim, folder):
                continue
            arguments = command(claim, arm, seed, folder, data)
            print(f"\n[{claim.name} / {arm} / seed {seed}] {' '.join(arguments[1:])}", flush=True)
            folder.mkdir(parents=True, exist_ok=True)
            for name, text in claim.files.items():
                (folder / name).write_text(text)
            started = time.time()
            with open(folder / "claims.log", "a") as log:
                result = subprocess.run(
                    arguments,
                    cwd=folder if claim.kind == "gradcheck" else project_path(),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=run_environment(),
                )
            write_json(folder / "claims-run.json", {"exit": result.returncode, "seconds": time.time() - started})
            if claim.kind == "gradcheck":
                continue  # a failing check (exit 1) is a result, not an error
            if result.returncode not in (0, 1) and not finished(claim, folder):
                print(f"  exit {result.returncode}: see {folder / 'claims.log'}", flush=True)


def run_environment() -> dict:
    environment = dict(os.environ)
    environment.setdefault("RUNNER_OUTPUTS", outputs_dir())
    return environment


# --- Reading a run's value of the claim's metric ----------------------------------------------------------


def run_value(claim: Claim, folder: Path, metric: str | dict) -> float | None:
    """A metric of one run of the claim (None when the run holds none: it failed, or diverged before it)."""
    if claim.kind == "gradcheck":
        checks = (read_json_or_none(folder / "gradcheck.json") or {}).get("checks", [])
        return max((check["error"] for check in checks if check["entries"] > check["kinks"]), default=None)
    if claim.kind == "diagnose":
        return diagnose_value(metric, folder)
    summary = read_json_or_none(folder / "summary.json") or {}
    if isinstance(metric, str):
        if metric in summary or not summary:
            return number(summary.get(metric))
        # A per-epoch number the summary does not repeat (the diagnostics' train_eval_acc, train_test_gap): the
        # last epoch's value, which every completed run evaluates.
        rows = [row for row in read_jsonl(folder / "metrics.jsonl") if row.get(metric) is not None]
        return number(rows[-1][metric]) if rows and summary.get("status") == "completed" else None
    if "difference" in metric:  # one summary number less another: an EMA's or a snapshot ensemble's gain
        first, second = (number(summary.get(key)) for key in metric["difference"])
        return None if first is None or second is None else first - second
    if "warning" in metric:
        warnings = summary.get("warnings") or []
        return float(any(str(metric["warning"]) in str(warning) for warning in warnings))
    if "epochs_to" in metric:
        target = metric["epochs_to"]
        rows = read_jsonl(folder / "metrics.jsonl")
        reached = [row["epoch"] for row in rows if (row.get(target["key"]) or 0) >= target["at_least"]]
        # Censored at one more epoch than the run trained: it got there later, if at all.
        return float(reached[0]) if reached else float(len(rows) + 1)
    raise ConfigError(f"{claim.name}: the metric {metric} is not one this command reads.")


def number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def ensemble_gains(claim: Claim, runs: Path, arm: str) -> list[float]:
    """The accuracy of the arm's seeds as an ensemble (their mean probability) less each member's own: the
    lectures' "an ensemble beats its members", one value per member."""
    folders = [run_folder(runs, claim, arm, seed) for seed in claim.seeds]
    folders = [folder for folder in folders if (folder / "test_logits.npy").exists()]
    if len(folders) < 2:
        return []
    result = build_ensemble(folders)
    return [result["ensemble_accuracy"] - member["accuracy"] for member in result["members"]]


def diagnose_value(metric: str | dict, folder: Path) -> float | None:
    """A ``runner.diagnose`` measurement: a layer's statistic (``{stat: std, layer: 6}``; layer ``mean`` is the
    mean over the layers), the overfitting check's training accuracy (``overfit``), or a warning's presence."""
    report = read_json_or_none(folder / "diagnose.json") or {}
    if metric == "overfit":
        return (report.get("overfit") or {}).get("train_acc")
    if isinstance(metric, dict) and "warning" in metric:
        return float(any(str(metric["warning"]) in warning for warning in report.get("warnings", [])))
    try:
        layers = json.loads((folder / "activations.json").read_text())
    except (OSError, ValueError):
        return None
    values = [layer[metric["stat"]] for layer in layers if layer.get(metric["stat"]) is not None]
    if not values:
        return None
    if metric.get("layer", "mean") == "mean":
        return sum(values) / len(values)
    return values[int(metric["layer"]) - 1] if int(metric["layer"]) > 0 else values[int(metric["layer"])]


# --- Verdicts -----------------------------------------------------------------------------------------------


def arm_estimate(values: list[float]) -> dict:
    estimate = mean_interval(values) if values else None
    return {
        "values": values,
        "n": len(values),
        "mean": estimate.mean if estimate else None,
        "std": estimate.std if estimate else None,
        "ci_low": estimate.low if estimate else None,
        "ci_high": estimate.high if estimate else None,
    }


def interval_verdict(low: float | None, high: float | None, threshold: float = 0.0) -> str:
    """agrees when the whole interval is above the threshold, disagrees when it is all below, else undecided."""
    if low is None or high is None:
        return VERDICTS[2]
    if low > threshold:
        return VERDICTS[0]
    if high < threshold:
        return VERDICTS[1]
    return VERDICTS[2]


def judge(claim: Claim, relation: dict, per_seed: dict[str, dict[str, list[float | None]]]) -> dict:
    """One relation's verdict with its numbers. better/than: the difference of the two arms' means, in the
    metric's good direction, with Welch's interval (with ``than_metric``: one arm's two metrics, seed by seed,
    with the interval of their paired differences); within/of: the same difference inside +-margin; above or
    below: the arm's mean interval against a value."""
    metric = claim.relation_metric(relation)
    seeds = per_seed[metric_name(metric)]
    arms = {arm: [value for value in values if value is not None] for arm, values in seeds.items()}
    sign = -1.0 if lower_is_better(metric) else 1.0
    if "than_metric" in relation:
        other = per_seed[metric_name(claim.relation_metric({"metric": relation["than_metric"]}))][relation["than"]]
        pairs = [
            a - b for a, b in zip(seeds[relation["better"]], other, strict=True) if a is not None and b is not None
        ]
        estimate = arm_estimate(pairs)
        low, high = (estimate["ci_low"], estimate["ci_high"]) if estimate["n"] > 1 else (None, None)
        return {
            **relation,
            "difference": estimate["mean"],
            "ci_low": low,
            "ci_high": high,
            "verdict": interval_verdict(*sorted((sign * low, sign * high)) if low is not None else (None, None)),
        }
    if "better" in relation:
        first, second = relation["better"], relation["than"]
        difference = welch_difference(arms[first], arms[second])
        if difference is None:
            return {**relation, "verdict": VERDICTS[2], "why": "fewer than two runs on a side"}
        low, high = sorted((sign * difference.low, sign * difference.high))
        return {
            **relation,
            "difference": difference.value,
            "ci_low": difference.low,
            "ci_high": difference.high,
            "verdict": interval_verdict(low, high),
        }
    if "within" in relation:
        first, second, margin = relation["within"], relation["of"], float(relation["margin"])
        difference = welch_difference(arms[first], arms[second])
        if difference is None:
            return {**relation, "verdict": VERDICTS[2], "why": "fewer than two runs on a side"}
        inside = -margin < difference.low and difference.high < margin
        outside = difference.low >= margin or difference.high <= -margin
        verdict = VERDICTS[0] if inside else VERDICTS[1] if outside else VERDICTS[2]
        return {
            **relation,
            "difference": difference.value,
            "ci_low": difference.low,
            "ci_high": difference.high,
            "verdict": verdict,
        }
    key = "above" if "above" in relation else "below"
    estimate = arm_estimate(arms[relation[key]])
    if estimate["n"] == 0:
        return {**relation, "verdict": VERDICTS[2], "why": "no run has a value"}
    low, high = estimate["ci_low"], estimate["ci_high"]
    if estimate["n"] == 1:
        low = high = estimate["mean"]
    if key == "below" and low is not None:
        low, high = -high, -low
    value = float(relation["value"]) * (1 if key == "above" else -1)
    return {
        **relation,
        "mean": estimate["mean"],
        "ci_low": estimate["ci_low"],
        "ci_high": estimate["ci_high"],
        "verdict": interval_verdict(low, high, value),
    }


def collect(claim: Claim, runs: Path) -> dict:
    """The claim's result: each arm's values of each metric over its seeds with their interval, and every
    relation's verdict."""
    per_seed: dict[str, dict[str, list[float | None]]] = {metric_name(metric): {} for metric in claim.metrics}
    seconds = 0.0
    for arm in claim.arms:
        folders = [run_folder(runs, claim, arm, seed) for seed in claim.seeds]
        for metric in claim.metrics:
            if metric == "ensemble_gain":
                per_seed[metric_name(metric)][arm] = ensemble_gains(claim, runs, arm)
            else:
                per_seed[metric_name(metric)][arm] = [run_value(claim, folder, metric) for folder in folders]
        for folder in folders:
            seconds += float((read_json_or_none(folder / "claims-run.json") or {}).get("seconds") or 0.0)
    first = per_seed[metric_name(claim.metrics[0])]
    missing = []
    if claim.metrics[0] != "ensemble_gain":  # its values are one per member of the ensemble, not per seed
        missing = [
            f"{arm}/seed-{seed}"
            for arm, values in first.items()
            for seed, value in zip(claim.seeds, values, strict=True)
            if value is None
        ]
    return {
        "claim": claim.name,
        "tier": claim.tier,
        "values": per_seed,
        "seeds": claim.seeds,
        "setting": settings_key(claim),
        "missing": missing,
        "seconds": seconds,
        "measured": time.strftime("%Y-%m-%d"),
        "machine": machine(),
    }


def matches(claim: Claim, result: dict) -> bool:
    """Whether a result holds every metric and arm the claim file now has (a claim edited since it was measured
    is measured again, not judged from values of another setting)."""
    values = result.get("values") or {}
    return (
        all(set(claim.arms) <= set(values.get(metric_name(metric)) or {}) for metric in claim.metrics)
        and result.get("seeds", claim.seeds) == claim.seeds
        and result.get("setting") == settings_key(claim)
    )


def settings_key(claim: Claim) -> list:
    return [claim.base, claim.arms, claim.kind]


def verdicts(claim: Claim, result: dict) -> list[dict]:
    """Every relation of the claim judged from the values of a result: the page computes them when it is written,
    so a changed result (or a changed relation) changes its verdict."""
    return [judge(claim, relation, result["values"]) for relation in claim.relations]


def estimates(result: dict) -> dict[str, dict[str, dict]]:
    return {
        name: {arm: arm_estimate([value for value in values if value is not None]) for arm, values in arms.items()}
        for name, arms in result["values"].items()
    }


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.system()}"


# --- The page ------------------------------------------------------------------------------------------------

RESULTS = Path(project_path("docs", "lecture", "results"))
FIGURES = Path(project_path("docs", "lecture"))
PAGE = Path(project_path("docs", "lecture.md"))


def metric_name(metric: str | dict) -> str:
    if metric == "ensemble_gain":
        return "ensemble accuracy less the member's"
    if isinstance(metric, str):
        return metric.replace("_", " ")
    if "difference" in metric:
        first, second = (key.replace("_", " ") for key in metric["difference"])
        return f"{first} less {second}"
    if "gradcheck" in metric:
        return "largest relative gradient error"
    if "epochs_to" in metric:
        target = metric["epochs_to"]
        return f"epochs until {target['key'].replace('_', ' ')} >= {target['at_least']:g}"
    if "warning" in metric:
        return f'runs warned "{metric["warning"]}"'
    if "stat" in metric:
        where = "mean over the layers" if metric.get("layer", "mean") == "mean" else f"layer {metric['layer']}"
        return f"{metric['stat'].replace('_', ' ')}, {where}"
    return json.dumps(metric)


def shown(value: float | None, metric: str | dict, difference: bool = False) -> str:
    """A value as a person reads it: accuracies in percent (differences in points), errors in powers of ten."""
    if value is None:
        return "-"
    text = json.dumps(metric)
    if text.endswith('_gap"'):  # train accuracy less test accuracy: already a difference, in points
        return f"{100 * value:{'+' if difference else ''}.1f} points"
    if text.endswith('_acc"') or '_acc"]' in text or "overfit" in text or metric == "ensemble_gain":
        if difference or metric == "ensemble_gain" or "difference" in text:
            return f"{100 * value:+.1f} points"
        return f"{100 * value:.1f}%"
    if "warning" in text:
        return f"{value:+.2f}" if difference else f"{value:.0%} of runs"
    if abs(value) < 1e-3 and value != 0:
        return f"{value:.1e}"
    return f"{value:+.3g}" if difference else f"{value:.3g}"


def relation_text(claim: Claim, relation: dict) -> str:
    metric = claim.relation_metric(relation)
    what = metric_name(metric)
    if "than_metric" in relation:
        other = metric_name(claim.relation_metric({"metric": relation["than_metric"]}))
        return f"`{relation['better']}` scores higher by {what} than by {other}"
    if "better" in relation:
        return f"`{relation['better']}` beats `{relation['than']}` ({what})"
    if "within" in relation:
        margin = shown(float(relation["margin"]), metric, difference=True).lstrip("+")
        return f"`{relation['within']}` lands within {margin} of `{relation['of']}` ({what})"
    key = "above" if "above" in relation else "below"
    return f"`{relation[key]}` stays {key} {shown(float(relation['value']), metric)} ({what})"


def relation_numbers(claim: Claim, relation: dict) -> str:
    metric = claim.relation_metric(relation)
    if "difference" in relation:
        low, high = (shown(relation[key], metric, difference=True) for key in ("ci_low", "ci_high"))
        return f"difference {shown(relation['difference'], metric, difference=True)}, 95% CI [{low}, {high}]"
    if relation.get("mean") is not None:
        interval = ""
        if relation.get("ci_low") is not None:
            interval = f", 95% CI [{shown(relation['ci_low'], metric)}, {shown(relation['ci_high'], metric)}]"
        return f"mean {shown(relation['mean'], metric)}{interval}"
    return relation.get("why", "")


def estimate_cell(estimate: dict, metric: str | dict) -> str:
    """mean ± std [95% CI] (n) of one arm's values."""
    if estimate["mean"] is None:
        return "-"
    text = shown(estimate["mean"], metric)
    if estimate["std"]:
        text += f" ± {shown(estimate['std'], metric, difference=True).lstrip('+')}"
    if estimate["ci_low"] is not None:
        text += f" [{shown(estimate['ci_low'], metric)}, {shown(estimate['ci_high'], metric)}]"
    return text


def section(claim: Claim, result: dict | None) -> list[str]:
    lines = [f"## {claim.title}", "", f"**The lecture:** {claim.lecture}", "", f"**Here:** {claim.setting}", ""]
    runs = " ".join([*claim.base, "<arm>", "seed=<seed>"])
    lines += [
        "```bash",
        f"python -m runner.claims --only {claim.name}",
        f"# each run: python -m runner.{claim.kind} {runs}",
    ]
    lines += [f"#   {arm}: {' '.join(overrides) or '(the base alone)'}" for arm, overrides in claim.arms.items()]
    lines += ["```", ""]
    if result is not None and not matches(claim, result):
        lines += [
            f"*The result in `docs/lecture/results/{claim.name}.json` was measured for another version of this "
            f"claim (its setting, arms, seeds or metrics have changed since): "
            f"`python -m runner.claims --only {claim.name}` measures it again.*",
            "",
        ]
        return lines
    if result is None:
        lines += [
            f"*Not measured yet: this claim is in the **{claim.tier}** tier "
            f"(`python -m runner.claims --tier {claim.tier} --only {claim.name}`).*",
            "",
        ]
        return lines
    names = [metric_name(metric) for metric in claim.metrics]
    table = estimates(result)
    lines += ["| arm | runs | " + " | ".join(f"{name}: mean ± std [95% CI]" for name in names) + " |"]
    lines += ["|---|---:|" + "---:|" * len(names)]
    for arm in claim.arms:
        cells = [estimate_cell(table[name][arm], metric) for name, metric in zip(names, claim.metrics, strict=True)]
        runs_counted = table[names[0]][arm]["n"]
        lines.append(f"| `{arm}` | {runs_counted} | " + " | ".join(cells) + " |")
    lines.append("")
    for relation in verdicts(claim, result):
        lines.append(
            f"- {relation_text(claim, relation)}: **{relation['verdict']}** ({relation_numbers(claim, relation)})."
        )
    if result.get("missing"):
        lines.append(f"- Runs without a value (failed, or diverged before it): {', '.join(result['missing'])}.")
    lines.append("")
    figures = [FIGURES / f"{claim.name}.png"] + [FIGURES / f"{claim.name}-{arm}.png" for arm in claim.arms]
    for figure in figures:
        if claim.figure and figure.exists():
            lines += [f"![{claim.title}: {figure.stem}](lecture/{figure.name})", ""]
    lines += [*claim.notes, ""] if claim.notes else []
    return lines


def render_page(claims: list[Claim], results: dict[str, dict]) -> str:
    """docs/lecture.md from the claim files and their results alone."""
    measured = [results[claim.name] for claim in claims if claim.name in results]
    seconds = sum(result["seconds"] for result in measured if result["tier"] == "cpu")
    machines = sorted({result["machine"] for result in measured})
    dates = sorted({result["measured"] for result in measured})
    lines = [
        "# The lectures, checked",
        "",
        "Every claim of the lectures below is a file in `conf/claims/`: the setting it is tested in, the arms "
        "compared, the seeds, the metric and the relation the lecture asserts. `python -m runner.claims` trains "
        "what is missing, groups the seeds, and writes this page from those files and the results in "
        "`docs/lecture/results/` alone: no number and no verdict here is typed by hand. A verdict is **agrees** "
        "or **disagrees** when the 95% confidence interval (Student's t over seeds; Welch's for a difference of "
        "two arms) lies on one side, and **inconclusive at this size** when it holds both answers.",
        "",
    ]
    if measured:
        lines += [
            f"Measured {', '.join(dates)} on {', '.join(machines)}; the cpu tier's runs took "
            f"{seconds / 60:.0f} minutes in all.",
            "",
        ]
    lines += ["| claim | tier | verdicts |", "|---|---|---|"]
    for claim in claims:
        result = results.get(claim.name)
        if result is None:
            judged = "not measured yet"
        elif not matches(claim, result):
            judged = "measured for an older version of the claim"
        else:
            judged = ", ".join(relation["verdict"] for relation in verdicts(claim, result))
        lines.append(f"| [{claim.title}](#{anchor(claim.title)}) | {claim.tier} | {judged} |")
    lines.append("")
    for claim in claims:
        lines += section(claim, results.get(claim.name))
    return "\n".join(lines).rstrip() + "\n"


def anchor(title: str) -> str:
    return "".join(character for character in title.lower() if character.isalnum() or character in " -").replace(
        " ", "-"
    )


def read_results(folder: Path | None = None) -> dict[str, dict]:
    results = {}
    for path in sorted((folder or RESULTS).glob("*.json")):
        result = read_json_or_none(path)
        if result and "claim" in result:
            results[result["claim"]] = result
    return results


def draw_figure(claim: Claim, runs: Path) -> None:
    """The claim's picture: the learning curves of its runs (compare --plot), or the activation statistics of
    its first seed per arm (runner.diagnose's figure)."""
    FIGURES.mkdir(parents=True, exist_ok=True)
    target = FIGURES / f"{claim.name}.png"
    if claim.kind == "train":
        curve = ["--curve", claim.curve] if claim.curve else []
        subprocess.run(
            [sys.executable, "-m", "runner.compare", str(runs / claim.name), "--all", "--plot", str(target), *curve],
            cwd=project_path(),
            capture_output=True,
        )
    elif claim.kind == "diagnose":
        for arm in claim.arms:
            source = run_folder(runs, claim, arm, claim.seeds[0]) / "activations.png"
            if source.exists():
                shutil.copyfile(source, FIGURES / f"{claim.name}-{arm}.png")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runner.claims", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tier", choices=[*TIERS, "all"], default="cpu", help="the claims to run (default: cpu)")
    parser.add_argument("--only", default="", metavar="NAME,...", help="only these claims (file names)")
    parser.add_argument("--data", metavar="PATH", help="an image folder or archive (data=folder data.root=PATH)")
    parser.add_argument("--runs", type=Path, default=Path(outputs_dir()) / "claims", help="where the runs go")
    parser.add_argument("--page-only", action="store_true", help="write the page from the results; run nothing")
    arguments = parser.parse_args(argv)
    try:
        claims = read_claims()
        wanted = {name for name in arguments.only.split(",") if name}
        unknown = wanted - {claim.name for claim in claims}
        if unknown:
            raise ConfigError(f"--only {','.join(sorted(unknown))}: no such claim in {CLAIMS}.")
        data = ["data=folder", f"data.root={Path(arguments.data).resolve()}"] if arguments.data else []
        for claim in claims:
            selected = claim.name in wanted if wanted else arguments.tier in ("all", claim.tier)
            if not selected or arguments.page_only:
                continue
            run_claim(claim, arguments.runs, data)
            result = collect(claim, arguments.runs)
            RESULTS.mkdir(parents=True, exist_ok=True)
            write_json(RESULTS / f"{claim.name}.json", result)
            if claim.figure:
                draw_figure(claim, arguments.runs)
            for relation in verdicts(claim, result):
                print(f"{claim.name}: {relation_text(claim, relation)}: {relation['verdict']}", flush=True)
        PAGE.write_text(render_page(claims, read_results()))
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return USER_ERROR_EXIT
    print(f"Wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
