"""Hyperparameter search and parallel launchers through Hydra's plugins (the optional [sweep] extra): a
random search with the Optuna sweeper writes the best trial's parameters, a joblib multirun runs its jobs,
the shipped SLURM config asks for a GPU, and a run always hands the sweeper a finite number."""

import json
import math

import pytest
import yaml

from runner.train import WORST_LOSS, optimized_value
from runner.validate import check_metric
from tests.conftest import SMALL_MODEL, SMOKE, compose_config, run_entrypoint

OPTIONS_TESTED = {"hparams_search": {"lr_wd"}}

QUICK = SMOKE + SMALL_MODEL + ["diagnostics=off"]


def summaries(sweep):
    return [json.loads(path.read_text()) for path in sorted(sweep.glob("*/summary.json"))]


def test_lr_wd_is_a_log_uniform_random_search_on_validation_accuracy():
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    config = compose_config(["hparams_search=lr_wd"], return_hydra_config=True)
    sweeper = config.hydra.sweeper
    assert sweeper.sampler._target_ == "optuna.samplers.RandomSampler"
    assert sweeper.direction == "maximize" and sweeper.max_failure_rate == 1.0
    assert sweeper.params["optimizer.lr"] == "tag(log, interval(1e-3, 1))"
    assert sweeper.params["regularizer.l2.weight_decay"] == "tag(log, interval(1e-5, 1e-2))"
    assert config.optimized_metric == "val_acc" and config.data.val_size > 0


@pytest.mark.slow
def test_random_search_writes_the_best_trials_parameters(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    sweep = tmp_path / "search"
    arguments = ["-m", "hparams_search=lr_wd", "hydra.sweeper.n_trials=4", "data.val_size=50", *QUICK]
    result = run_entrypoint([*arguments, f"hydra.sweep.dir={sweep}"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    trials = summaries(sweep)
    assert len(trials) == 4 and all(trial["status"] == "completed" for trial in trials)
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["best_value"] == pytest.approx(max(trial["val_acc"] for trial in trials))
    winner = next(trial for trial in trials if trial["val_acc"] == pytest.approx(best["best_value"]))
    chosen = dict(override.split("=", 1) for override in winner["overrides"])
    for key in ("optimizer.lr", "regularizer.l2.weight_decay"):
        assert float(chosen[key]) == pytest.approx(best["best_params"][key])
    for trial in trials:
        chosen = dict(override.split("=", 1) for override in trial["overrides"])
        assert 1e-3 <= float(chosen["optimizer.lr"]) <= 1
        assert 1e-5 <= float(chosen["regularizer.l2.weight_decay"]) <= 1e-2


@pytest.mark.slow
def test_joblib_runs_the_jobs_of_a_multirun(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    sweep = tmp_path / "parallel"
    arguments = ["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "seed=0,1", *QUICK]
    result = run_entrypoint([*arguments, f"hydra.sweep.dir={sweep}"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = summaries(sweep)
    assert sorted(job["seed"] for job in jobs) == [0, 1]
    assert all(job["status"] == "completed" for job in jobs)


def test_slurm_gpu_asks_for_one_gpu_per_job():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    launcher = compose_config(["hydra/launcher=slurm_gpu"], return_hydra_config=True).hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.gpus_per_node == 1 and launcher.tasks_per_node == 1 and launcher.nodes == 1


def test_slurm_asks_for_cores_and_requeues_at_the_time_limit():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    launcher = compose_config(["hydra/launcher=slurm"], return_hydra_config=True).hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.gpus_per_node is None and launcher.cpus_per_task >= 1 and launcher.max_num_timeout >= 1
    assert "OMP_NUM_THREADS=$SLURM_CPUS_PER_TASK" in " ".join(launcher.setup)


@pytest.mark.parametrize(
    ("metric", "summary", "expected"),
    [
        ("val_acc", {"status": "completed", "val_acc": 0.7}, 0.7),
        ("val_acc", {"status": "completed", "val_acc": None}, 0.0),
        ("val_acc", {"status": "diverged", "val_acc": 0.3}, 0.0),
        ("test_acc", {"status": "failed"}, 0.0),
        ("val_loss", {"status": "diverged", "val_loss": float("nan")}, WORST_LOSS),
    ],
)
def test_a_run_hands_the_sweeper_a_finite_value(metric, summary, expected):
    value = optimized_value(compose_config([f"optimized_metric={metric}"]), summary)
    assert value == expected and math.isfinite(value)


def test_a_validation_metric_needs_a_validation_split():
    assert check_metric(compose_config(["optimized_metric=val_acc", "data.val_size=0"]))
    assert not check_metric(compose_config(["optimized_metric=val_acc", "data.val_size=100"]))


@pytest.mark.slow
def test_a_search_whose_every_trial_would_be_refused_stops_before_the_first(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    # lr_wd holds out 5000 validation images; the synthetic set has 200.
    sweep = tmp_path / "search"
    result = run_entrypoint(["-m", "hparams_search=lr_wd", *QUICK, f"hydra.sweep.dir={sweep}"], tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "data.val_size=5000 must be at least 0 and below the 200 training images" in result.stderr
    assert "No job of the sweep was started" in result.stderr and "Traceback" not in result.stderr
    assert not list(sweep.glob("*/summary.json"))


@pytest.mark.slow
def test_a_search_whose_every_trial_failed_ends_with_one_paragraph(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    sweep = tmp_path / "search"
    arguments = ["-m", "hparams_search=lr_wd", "hydra.sweeper.n_trials=2", "data.val_size=50", *QUICK]
    arguments += ["regularizer.l2.weight_decay=interval(-2, -1)"]  # every trial refused, the fixed settings fine
    result = run_entrypoint([*arguments, f"hydra.sweep.dir={sweep}"], tmp_path)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Every one of the 2 jobs failed" in result.stderr and "is not allowed" in result.stderr
    assert "Traceback" not in result.stderr and "No trials are completed" not in result.stderr
