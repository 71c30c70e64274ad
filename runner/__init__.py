"""runner: a CIFAR-10 experiment runner for the choices taught in "Training Neural Networks" courses.

Importing the package registers the OmegaConf resolvers the configs in ``conf/`` use, so that the
compose API in tests and ``python -m runner.train`` resolve the same paths.
"""

import os
from datetime import datetime
from pathlib import Path

from omegaconf import OmegaConf

PROJECT_DIR = Path(__file__).resolve().parent.parent


def project_path(*parts: str) -> str:
    """A path inside the project folder, so outputs and data land there wherever the user launches."""
    return str(PROJECT_DIR.joinpath(*parts))


def outputs_dir() -> str:
    """Where run folders go: ``RUNNER_OUTPUTS`` when set (tests, clusters), else the project's ``outputs/``."""
    return os.environ.get("RUNNER_OUTPUTS") or project_path("outputs")


_STARTED = datetime.now()


def run_dir(resume: str | None = None) -> str:
    """A new single run's folder, ``<outputs>/runs/<date>/<time>``, or the folder of the run being resumed."""
    if resume:
        return str(Path(resume).expanduser().resolve())
    return f"{outputs_dir()}/runs/{_STARTED:%Y-%m-%d}/{_STARTED:%H-%M-%S-%f}"


def if_set(value, when_set: str, otherwise: str) -> str:
    return when_set if value else otherwise


OmegaConf.register_new_resolver("run_dir", run_dir, replace=True)
OmegaConf.register_new_resolver("if_set", if_set, replace=True)
OmegaConf.register_new_resolver("project_path", project_path, replace=True)
OmegaConf.register_new_resolver("outputs_dir", outputs_dir, replace=True)
