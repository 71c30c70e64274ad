"""The training entrypoint: compose -> build -> fit, and every failure recorded in the run's folder.

    python -m runner.train activation=gelu init=kaiming
    python -m runner.train -m activation=relu,gelu,selu init=xavier,kaiming

``runner.resume`` decides whether this is a fresh, resumed or finished run, ``runner.validate`` refuses values
a run cannot use before any work, ``runner.run.build`` turns the config into the parts of a run, and
``runner.loop.fit`` trains them and records the outcome.
"""

from __future__ import annotations

import sys

if __name__ == "__main__" and sys.stderr.isatty():
    # Before PyTorch's import, which takes seconds on a CPU: a person at a terminal sees the command started.
    print("Loading PyTorch ...", file=sys.stderr, flush=True)

import contextlib
import errno
import logging
import math
import shutil
import signal
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from runner import attempt_subdir, exempt_from_collection, forget_attempt, project_path, sweep, validate
from runner.budget import process_start
from runner.catalogue import refuse_mistyped
from runner.errors import USER_ERROR_EXIT, ConfigError, RunnerError
from runner.loop import StopNow, StopRequest, fit
from runner.record import Recorder
from runner.resume import FolderLock, check_checkpoint, prepare, remove_stale_temporaries
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


@dataclass
class Attempt:
    """This invocation in its output folder: whether the folder already held a run when it started (a resume,
    a sweep started again, a second start), and where its own Hydra files and log went (runner.attempt_subdir).
    Until the attempt is accepted, nothing of an earlier run's records is written over."""

    folder: Path
    subdir: str
    before: set[str]  # the folder's entries when the run started
    accepted: bool = False
    handler: logging.Handler | None = None

    @classmethod
    def start(cls, folder: Path) -> Attempt:
        return cls(folder, attempt_subdir(str(folder)), {path.name for path in folder.iterdir()})

    @property
    def held(self) -> bool:
        return self.subdir != ".hydra"

    def accept(self) -> None:
        """From here on the run may write its records; in a folder that held it, its train.log gets the rest
        of this attempt's log too."""
        self.accepted = True
        if self.held:
            self.handler = logging.FileHandler(self.folder / f"{HydraConfig.get().job.name}.log")
            self.handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
            logging.getLogger().addHandler(self.handler)

    def close(self) -> None:
        if self.handler is not None:
            logging.getLogger().removeHandler(self.handler)
            self.handler.close()
        forget_attempt(str(self.folder))

    def beside(self, name: str, text: str) -> None:
        """A file of this attempt's own, beside an earlier run's records."""
        (self.folder / self.subdir).mkdir(parents=True, exist_ok=True)
        (self.folder / self.subdir / name).write_text(text)

    def failed(self, text: str, summary: dict) -> None:
        """Record an unexpected failure: in the run's records once the run went on, else beside them."""
        if self.held and not self.accepted:
            self.beside("error.txt", text)
            return
        recorder = Recorder(self.folder)
        recorder.path("error.txt").write_text(text)
        recorder.summary(summary)

    def refused(self, message: str, in_sweep: bool, context: dict) -> None:
        """Record a refused start where it harms nothing: beside an earlier run's records, never over them; in
        a sweep's new job folder, as a failed job; a refused single run leaves no folder behind."""
        if self.held:
            self.beside("refused.txt", f"{message}\n")
        elif in_sweep:
            recorder = Recorder(self.folder)
            recorder.path("error.txt").write_text(f"{message}\n")
            recorder.summary({"status": "failed", "refused": True, "error": message, **context})
        else:
            self.remove()

    def remove(self) -> None:
        """Take away what this attempt put into a folder that held no run: Hydra's files, the log, its records."""
        created = {path.name for path in self.folder.iterdir()} - self.before
        for name in created | {".hydra", f"{HydraConfig.get().job.name}.log"}:
            path = self.folder / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        # The folder itself and the date folder above it, where nothing else is left in them.
        for folder in (self.folder, self.folder.parent):
            with contextlib.suppress(OSError):
                folder.rmdir()


# Errors of the disk or file system under the output folder, which the user can fix.
DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def disk_problem(error: OSError) -> str:
    return (
        f"Cannot write {error.filename}: {error.strerror}. What was written before is intact (every record is "
        "written whole or not at all). Free space there or make it writable, or send the outputs elsewhere "
        "(RUNNER_OUTPUTS=PATH, or hydra.run.dir=PATH), then resume=FOLDER continues the run."
    )


def run(config: DictConfig) -> float:
    """Train one configured run in Hydra's output folder; returns its ``optimized_metric`` (for sweepers).

    SIGINT, SIGTERM, SIGUSR1 and SIGUSR2 are handled from here to the last write: a run stopped before it trains
    leaves a folder it can be resumed from (or none); one stopped while training ends its step, records and exits."""
    started = time.time()
    hydra_config = HydraConfig.get()
    output_dir = Path(hydra_config.runtime.output_dir)
    in_sweep = hydra_config.mode == RunMode.MULTIRUN
    attempt = Attempt.start(output_dir)
    context = {
        "choices": resolved_choices(config),
        "overrides": list(hydra_config.overrides.task),
        "seed": config.get("seed"),
        "started": started,
    }
    with StopRequest() as stop:
        try:
            with FolderLock(output_dir):
                # A run's time budget counts from the command's start; a sweep job's, from the job's own.
                budget_from = started if in_sweep else (process_start() or started)
                summary = start(config, output_dir, context, attempt, stop, budget_from)
        except RunnerError as error:
            # A problem the user can fix gets a paragraph, not a traceback.
            attempt.refused(str(error), in_sweep, context)
            if in_sweep:
                log.error("%s", error)
                return failed_value(config)  # the sweep goes on; its last lines list this job (runner.sweep)
            print(f"\n{error}\n", file=sys.stderr)
            sys.exit(USER_ERROR_EXIT)
        except StopNow as now:
            # Stopped before training began: a new folder keeps what a resume needs; a held one is left alone.
            if not attempt.held and (output_dir / "config.json").exists():
                Recorder(output_dir).summary({"status": "interrupted", "epochs_completed": 0, **context})
            elif not attempt.held:
                attempt.remove()
            log.info("Stopped by %s before training.", signal.Signals(now.number).name)
            sys.exit(128 + now.number)
        except torch.cuda.OutOfMemoryError as error:
            # Recorded as this job's failure with what to lower; the jobs sharing the GPU go on.
            reason = sweep.out_of_memory_reason(error, context.get("slot"))
            attempt.failed(f"{traceback.format_exc()}\n{reason}\n", {"status": "failed", "error": reason, **context})
            if in_sweep:
                log.error("%s", reason)
                return failed_value(config)
            raise
        except Exception as error:
            if isinstance(error, OSError) and error.errno in DISK_ERRORS and error.filename is not None:
                # Nothing more is written to a full or read-only disk; what is there is whole.
                print(f"\n{disk_problem(error)}\n", file=sys.stderr)
                sys.exit(USER_ERROR_EXIT)
            first_lines = traceback.format_exc(limit=1)
            attempt.failed(traceback.format_exc(), {"status": "failed", "error": first_lines, **context})
            if in_sweep:
                # The traceback is in the job's error.txt; the sweep goes on and its last lines list the job.
                log.error("Failed: %s", traceback.format_exc())
                return failed_value(config)
            raise
        finally:
            attempt.close()
    if not attempt.accepted:
        return optimized_value(config, summary)  # a finished run found in its folder: nothing was done
    log.info("Outputs: %s", output_dir)
    log.info("Status: %s; final test accuracy: %s", summary["status"], _percent(summary.get("test_acc")))
    if summary["status"] == "interrupted":
        # Stop here, and stop a sweep too: the user (or the scheduler) asked for it.
        log.info("Resume with: python -m runner.train resume=%s", output_dir)
        sys.exit(128 + signal.Signals[summary.get("signal", "SIGINT")].value)
    return optimized_value(config, summary)


def start(
    config: DictConfig, output_dir: Path, context: dict, attempt: Attempt, stop: StopRequest, budget_from: float
) -> dict:
    """Decide, check, build and train; ``stop`` is looked at between the stages. Returns the summary (for a
    run already finished, the one it has). ``budget_from``: where a time budget counts from."""
    remove_stale_temporaries(output_dir)
    # The check builds the optimizer on the meta device, and PyTorch's first optimizer of a process imports its
    # compiler: seconds on a CPU in which nothing else would show.
    log.info("Checking the settings.")
    refuse_problems(config, context["overrides"])
    resumed = bool(config.get("resume"))
    config, checkpoint, finished = prepare(config, output_dir, context)
    if finished is not None:
        log.info("%s already holds a %s run; nothing to do.", output_dir, finished["status"])
        return finished
    if resumed:
        # The stored config, read as data, is checked like a command line; its refusal names the file.
        problems = validate.check(config)
        if problems:
            raise ConfigError(f"{output_dir / 'config.json'} holds settings a run cannot use:\n" + "\n".join(problems))
    stop.check()
    # In a sweep that runs jobs side by side, this job trains on its own device slot (runner.sweep).
    with sweep.job_slot(config) as slot:
        if slot is not None:
            context["slot"] = slot
        parts = build(config, output_dir)
        if checkpoint is not None:
            check_checkpoint(checkpoint, parts.model, output_dir / "checkpoint.pt")
        stop.check()
        attempt.accept()
        return fit(parts, context, checkpoint, stop, budget_from)


def refuse_problems(config: DictConfig, overrides: list[str]) -> None:
    problems = validate.check(config, overrides)
    if problems:
        raise ConfigError("\n".join(problems))


def failed_value(config: DictConfig) -> float:
    """What a failed job returns to the sweeper: the worst value, so that a search scores it and goes on."""
    return optimized_value(config, {"status": "failed"})


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
def train(config: DictConfig) -> float:
    return run(config)


def main() -> None:
    """``python -m runner.train``: a mistyped key or option is named with its nearest valid names first, then
    Hydra composes the config and runs it."""
    refuse_mistyped(sys.argv[1:])
    train()


if __name__ == "__main__":
    exempt_from_collection()
    main()
