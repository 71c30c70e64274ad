"""The lecture gallery: every conf/experiment/lecture/ sweep composes for each of its jobs, docs/make_lecture.py
uses each of them and has a reading for each result, and one section regenerates end to end."""

import importlib.util
import itertools
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from runner.validate import check
from tests.conftest import CONF, PROJECT, compose_config

LECTURE = CONF / "experiment" / "lecture"
EXPERIMENTS = sorted(path.stem for path in LECTURE.glob("*.yaml"))
OPTIONS_TESTED = {"experiment": {f"lecture/{name}" for name in EXPERIMENTS}}


def load_script():
    spec = importlib.util.spec_from_file_location("make_lecture", PROJECT / "docs" / "make_lecture.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


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


def test_the_script_runs_every_lecture_experiment_and_reads_every_result():
    script = load_script()
    source = (PROJECT / "docs" / "make_lecture.py").read_text()
    for experiment in EXPERIMENTS:
        assert f'"{experiment}"' in source, f"docs/make_lecture.py never runs lecture/{experiment}"
    assert all(text.strip() for text in script.VERDICTS.values()), "a section has no reading of its result"
    assert len(script.SECTIONS) >= 10


def test_one_section_regenerates_its_page_with_table_and_figure(tmp_path):
    page = tmp_path / "docs" / "lecture.md"
    tiny = ["data=synthetic", "data.subset=null", "data.train_size=300", "data.test_size=100", "trainer.epochs=2"]
    command = [sys.executable, "docs/make_lecture.py", "--only", "preprocessing", "--runs", str(tmp_path / "runs")]
    result = subprocess.run(
        [*command, "--page", str(page), *tiny], cwd=PROJECT, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    text = page.read_text()
    assert "## 3. Data preprocessing" in text and "python -m runner.train -m experiment=lecture/preprocessing" in text
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + 6  # the header and one row per preprocessing
    for option in ("none", "mean_image", "channel_mean", "standardize", "pca_whiten", "zca_whiten"):
        assert any(f"| {option} |" in line for line in table), option
    assert (tmp_path / "docs" / "lecture" / "preprocessing.png").stat().st_size > 10_000
    assert "6 runs whose wall times sum" in text
