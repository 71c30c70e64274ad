"""runner: a CIFAR-10 experiment runner for the choices taught in "Training Neural Networks" courses.

Importing the package registers the OmegaConf resolvers the configs in ``conf/`` use, so that the
compose API in tests and ``python -m runner.train`` resolve the same paths.
"""

import atexit
import gc
import os
from datetime import datetime
from pathlib import Path

from omegaconf import OmegaConf

from runner.catalogue import render_help

PROJECT_DIR = Path(__file__).resolve().parent.parent


def project_path(*parts: str) -> str:
    """A path inside the project folder, so outputs and data land there wherever the user launches."""
    return str(PROJECT_DIR.joinpath(*parts))


def outputs_dir() -> str:
    """Where run folders go: ``RUNNER_OUTPUTS`` when set (tests, clusters), else the project's ``outputs/``."""
    return os.environ.get("RUNNER_OUTPUTS") or project_path("outputs")


def exempt_from_collection() -> None:
    """For a command's process: what exists now (the imported modules: with PyTorch, Hydra and the runner,
    some 200,000 objects) lives until the process ends, so the cyclic garbage collector need not walk it at every full
    collection; and at exit, nothing needs walking at all, because the process is about to give back its
    memory. Objects are still freed when their last reference goes; only garbage in reference cycles created
    before a freeze is never reclaimed, which at exit costs nothing and after imports holds little."""
    gc.freeze()
    # Registered before the run and Hydra register theirs, so it runs after them (last in, first out).
    atexit.register(gc.freeze)


_STARTED = datetime.now()


def run_dir(resume: str | None = None) -> str:
    """A new single run's folder, ``<outputs>/runs/<date>/<time>``, or the folder of the run being resumed."""
    if resume:
        return str(Path(resume).expanduser().resolve())
    return f"{outputs_dir()}/runs/{_STARTED:%Y-%m-%d}/{_STARTED:%H-%M-%S-%f}"


# Files whose presence makes a folder hold a run, so that a new invocation there must not write over them.
RUN_RECORDS = ("config.json", "summary.json", ".hydra")
_attempts: dict[str, str] = {}


def attempt_subdir(output_dir: str) -> str:
    """Where, inside its output folder, this invocation's own Hydra files and log go: ``.hydra`` in a new
    folder; in one that already holds a run (a resume, a sweep started again over its folder, a second start),
    a new folder under ``.hydra-attempts/``, so that nothing of that run's records is written over before
    ``runner.train`` has accepted the attempt. The same answer for the same folder within one process."""
    folder = Path(output_dir).resolve()
    if str(folder) not in _attempts:
        held = any((folder / name).exists() for name in RUN_RECORDS)
        _attempts[str(folder)] = f".hydra-attempts/{datetime.now():%Y-%m-%d_%H-%M-%S-%f}" if held else ".hydra"
    return _attempts[str(folder)]


def forget_attempt(output_dir: str) -> None:
    """At the end of an invocation, so that the next one in the same process (a test, a basic-launcher sweep
    over one folder) decides afresh."""
    _attempts.pop(str(Path(output_dir).resolve()), None)


def job_log(output_dir: str, name: str) -> str:
    """The log file of this invocation: ``<output>/<name>.log`` in a new folder, else in its attempt folder."""
    subdir = attempt_subdir(output_dir)
    folder = Path(output_dir) if subdir == ".hydra" else Path(output_dir) / subdir
    folder.mkdir(parents=True, exist_ok=True)  # the log opens before Hydra writes its files there
    return str(folder / f"{name}.log")


OmegaConf.register_new_resolver("run_dir", run_dir, replace=True)
OmegaConf.register_new_resolver("attempt_subdir", attempt_subdir, replace=True)
OmegaConf.register_new_resolver("job_log", job_log, replace=True)
OmegaConf.register_new_resolver("runner_help", render_help, replace=True)
OmegaConf.register_new_resolver("project_path", project_path, replace=True)
OmegaConf.register_new_resolver("outputs_dir", outputs_dir, replace=True)
