"""The lecture sweeps: every job of every conf/experiment/lecture/ sweep composes and validates (the claims
behind docs/lecture.md are tests/test_claims.py's)."""

import itertools

import pytest
from omegaconf import OmegaConf

from runner.validate import check
from tests.conftest import CONF, compose_config

LECTURE = CONF / "experiment" / "lecture"
EXPERIMENTS = sorted(path.stem for path in LECTURE.glob("*.yaml"))
OPTIONS_TESTED = {"experiment": {f"lecture/{name}" for name in EXPERIMENTS}}


def sweep_jobs(experiment: str) -> list[list[str]]:
    """The overrides of each job the basic sweeper would launch: the grid of ``hydra.sweeper.params``."""
    config = compose_config([f"experiment=lecture/{experiment}"], return_hydra_config=True)
    params = config.hydra.sweeper.get("params")
    params = OmegaConf.to_container(params) if params else {}  # a single run (lecture/snapshot) has none
    if config.hydra.sweeper._target_.endswith("OptunaSweeper"):
        return [[]]  # sampled values: the ranges are checked by test_search's sweeps
    axes = [[f"{key}={value}" for value in str(values).split(",")] for key, values in params.items()]
    return [list(job) for job in itertools.product(*axes)]


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_job_of_each_lecture_sweep_composes_and_validates(experiment):
    jobs = sweep_jobs(experiment)
    assert jobs
    for job in jobs:
        config = compose_config([f"experiment=lecture/{experiment}", *job])
        assert config.data.subset is None or config.data.subset <= 50000
        assert not check(config), (job, check(config))
