"""The training entrypoint (runner.train), as a user runs it: ``python -m runner.train`` trains, prints where
its outputs are, records the choices and overrides, and a diverged run exits 0 so that a sweep goes on."""

import json
import re

from tests.conftest import SMALL_MODEL, SMOKE, run_entrypoint


def test_entrypoint_end_to_end(tmp_path):
    result = run_entrypoint(SMOKE + SMALL_MODEL + ["activation=gelu"], tmp_path)
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    folder = re.search(r"Outputs: (\S+)", output).group(1)
    assert re.search(r"final test accuracy: \d+\.\d\d%", output)
    assert re.fullmatch(rf"{re.escape(str(tmp_path))}/runs/\d{{4}}-\d\d-\d\d/\d\d-\d\d-\d\d-\d+", folder)
    summary = json.loads((tmp_path / folder / "summary.json").read_text())
    assert summary["choices"]["activation"] == "gelu" and summary["choices"]["model"] == "convnet"
    assert "activation=gelu" in summary["overrides"]
    assert (tmp_path / folder / ".hydra" / "config.yaml").exists()


def test_divergence_exits_zero_so_a_sweep_goes_on(tmp_path):
    overrides = ["model=mlp", "norm=none", "optimizer=sgd", "optimizer.lr=50", "trainer.log_every=1"]
    result = run_entrypoint(SMOKE + overrides + ["trainer.epochs=2"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Status: diverged" in result.stdout + result.stderr
