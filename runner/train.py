"""The training entrypoint: compose -> build -> fit, and every failure recorded in the run's folder.

    python -m runner.train activation=gelu init=kaiming
    python -m runner.train -m activation=relu,gelu,selu init=xavier,kaiming

``runner.resume`` decides whether this is a fresh, resumed or finished run, ``runner.validate`` refuses values
a run cannot use before any work, ``runner.run.build`` turns the config into the parts of a run, and
``runner.loop.fit`` trains them and records the outcome.
"""

from __future__ import annotations

import logging
import math
import signal
import sys
import time
import traceback
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from runner import project_path, sweep, validate
from runner.errors import USER_ERROR_EXIT, ConfigError, RunnerError
from runner.loop import fit
from runner.record import Recorder
from runner.resume import prepare
from runner.run import LIST_GROUPS, build

log = logging.getLogger("runner")

# What a sweeper gets for a loss it minimises when the run has none (a finite number: Optuna rejects inf and NaN).
WORST_LOSS = 1e9


def resolved_choices(config: DictConfig) -> dict:
    """The option chosen in each config group; list selections are joined with '+'."""
    choices = {}
    for group, choice in HydraConfig.get().runtime.choices.items():
        if group.startswith("hydra/") or group in ("hydra",):
            continue
        if choice is None and isinstance(config.get(group), DictConfig):
            choice = "+".join(config[group].keys()) or "none"
        choices[group] = choice
    for group in LIST_GROUPS:
        if group not in choices:
            node = config.get(group)
            choices[group] = "+".join(node.keys()) if node else "none"
    return choices


def run(config: DictConfig) -> float:
    """Train one configured run in Hydra's output folder; returns its ``optimized_metric`` (for sweepers)."""
    started = time.time()
    hydra_config = HydraConfig.get()
    output_dir = Path(hydra_config.runtime.output_dir)
    in_sweep = hydra_config.mode == RunMode.MULTIRUN
    recorder = Recorder(output_dir)
    context = {
        "choices": resolved_choices(config),
        "overrides": list(hydra_config.overrides.task),
        "seed": config.get("seed"),
        "started": started,
    }
    try:
        config, checkpoint, finished = prepare(config, output_dir, context)
        if finished is not None:
            log.info("%s already holds a %s run; nothing to do.", output_dir, finished["status"])
            return optimized_value(config, finished)
        problems = validate.check(config) + metric_problems(config)
        if problems:
            raise ConfigError("\n".join(problems))
        # In a sweep that runs jobs side by side, this job trains on its own device slot (runner.sweep).
        with sweep.job_slot(config) as slot:
            if slot is not None:
                context["slot"] = slot
            summary = fit(build(config, output_dir), context, checkpoint)
    except RunnerError as error:
        recorder.path("error.txt").write_text(f"{error}\n")
        recorder.summary({"status": "failed", "error": str(error), **context})
        if in_sweep:
            raise  # the job is recorded as failed and Hydra goes on with the rest of the sweep
        # A problem the user can fix gets a paragraph, not a traceback.
        print(f"\n{error}\n", file=sys.stderr)
        sys.exit(USER_ERROR_EXIT)
    except torch.cuda.OutOfMemoryError as error:
        # Recorded as this job's failure with what to lower; the jobs sharing the GPU go on.
        reason = sweep.out_of_memory_reason(error, context.get("slot"))
        recorder.path("error.txt").write_text(f"{traceback.format_exc()}\n{reason}\n")
        recorder.summary({"status": "failed", "error": reason, **context})
        raise
    except Exception:
        recorder.path("error.txt").write_text(traceback.format_exc())
        recorder.summary({"status": "failed", "error": traceback.format_exc(limit=1), **context})
        raise
    log.info("Outputs: %s", output_dir)
    log.info("Status: %s; final test accuracy: %s", summary["status"], _percent(summary.get("test_acc")))
    if summary["status"] == "interrupted":
        # Stop here, and stop a sweep too: the user (or the scheduler) asked for it.
        log.info("Resume with: python -m runner.train resume=%s", output_dir)
        sys.exit(128 + signal.Signals[summary.get("signal", "SIGINT")].value)
    return optimized_value(config, summary)


def metric_problems(config: DictConfig) -> list[str]:
    """A sweep that optimises a validation metric needs a validation split, or every trial would score 0."""
    metric = str(config.get("optimized_metric") or "test_acc")
    if "val_" in metric and not config.data.get("val_size"):
        return [f"optimized_metric={metric} needs a validation split: set data.val_size (e.g. 5000)."]
    return []


def optimized_value(config: DictConfig, summary: dict) -> float:
    """The summary's ``optimized_metric``, for sweepers; a run without it (diverged in its first epoch, no
    validation split) gets the worst value instead, because Optuna stops a whole search at a NaN."""
    metric = str(config.get("optimized_metric") or "test_acc")
    value = summary.get(metric)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        if summary.get("status") != "diverged":
            return float(value)
    return WORST_LOSS if "loss" in metric else 0.0


def _percent(value) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


@hydra.main(version_base="1.3", config_path=project_path("conf"), config_name="config")
def main(config: DictConfig) -> float:
    return run(config)


if __name__ == "__main__":
    main()
