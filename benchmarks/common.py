"""Shared pieces of the benchmark scripts: composing configs, the device's name, writing results."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from runner import project_path
from runner.files import write_json

RESULTS = Path(__file__).resolve().parent / "results"


def compose_config(overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=project_path("conf"), version_base="1.3"):
        return compose("config", overrides=overrides)


def split_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
    """The script's own arguments, and the runner overrides after ``--``. Split by hand: argparse's remainder
    argument would also swallow the script's options written after its positional arguments."""
    cut = argv.index("--") if "--" in argv else len(argv)
    return argv[:cut], argv[cut + 1 :]


def device_name(device: str = "auto") -> str:
    if device in ("auto", "cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return f"cpu: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def save(name: str, data: dict) -> Path:
    """Write ``data`` with the time it was measured, to ``name``: a name in benchmarks/results/ (``startup``), or
    a path of its own (``/tmp/before.json``, ``results/before.json``), as ``--output`` takes either."""
    path = Path(name) if name.endswith(".json") or "/" in name else RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, {"measured": time.strftime("%Y-%m-%d %H:%M:%S"), **data})
    return path


def table(rows: list[dict], columns: list[str]) -> str:
    cells = [[str(row.get(column, "")) for column in columns] for row in rows]
    widths = [max(len(column), *(len(line[index]) for line in cells)) for index, column in enumerate(columns)]
    lines = ["  ".join(column.ljust(width) for column, width in zip(columns, widths, strict=True))]
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)) for line in cells]
    return "\n".join(lines)


def dump(data) -> str:
    return json.dumps(data, indent=2)
