"""Shared test helpers: compose configs with Hydra's compose API, train tiny runs in-process or through
the real entrypoint. Everything runs on CPU on small synthetic data."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

PROJECT = Path(__file__).resolve().parent.parent
CONF = PROJECT / "conf"

# A run that takes about a second on CPU: 200 synthetic images, one epoch.
SMOKE = [
    "data=synthetic",
    "data.train_size=200",
    "data.test_size=100",
    "data.batch_size=50",
    "trainer.epochs=1",
    "trainer.device=cpu",
    "trainer.progress=false",
]
SMALL_MODEL = ["model=convnet", "model.widths=[8,16]"]

# The keys of a metrics row that are clock readings: two runs of the same computation differ only in them.
TIMES = frozenset({"epoch_time_s", "eval_time_s", "callbacks_time_s", "images_per_s"})


def without_times(rows: list[dict], times=TIMES) -> list[dict]:
    """Metrics rows without their clock readings, so that two runs' computations compare equal."""
    return [{key: value for key, value in row.items() if key not in times} for row in rows]


def compose_config(overrides=(), return_hydra_config: bool = False):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=return_hydra_config)


def train_in_process(overrides, folder: Path) -> dict:
    """Build and train a smoke run without a subprocess; returns its summary."""
    from runner.loop import fit
    from runner.run import build

    config = compose_config(SMOKE + list(overrides))
    run = build(config, folder)
    return fit(run, {"choices": {}, "overrides": list(overrides), "seed": config.seed, "started": time.time()})


def run_entrypoint(
    arguments, outputs: Path, module: str = "runner.train", timeout: float = 300, env_extra=None, **kwargs
):
    """Run ``python -m runner.train ARGS`` as a user would, with outputs redirected under ``outputs``."""
    environment = {**os.environ, "RUNNER_OUTPUTS": str(outputs), "PYTHONUNBUFFERED": "1", **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", module, *arguments],
        cwd=PROJECT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


def invoke(arguments, monkeypatch, outputs, started: float | None = None) -> int:
    """``python -m runner.train ARGS`` in this process (so that a test can reach into it); its exit code. The
    command starts at ``started`` (on ``time.time()``), by default now, not when this process did (a time
    budget counts from it)."""
    from runner import train

    started = time.time() if started is None else started
    monkeypatch.setattr(train, "process_start", lambda: started)
    monkeypatch.setenv("RUNNER_OUTPUTS", str(outputs))
    monkeypatch.setattr(sys, "argv", ["runner.train", *arguments])
    try:
        train.main()
    except SystemExit as exited:
        return exited.code
    return 0


@pytest.fixture(autouse=True)
def _clear_hydra():
    yield
    GlobalHydra.instance().clear()
