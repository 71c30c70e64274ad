"""What an invocation does in its output folder: a fresh run, a resumed one, or nothing (a finished run), and
the checkpoint that carries a run across an interruption.

A run folder is data, maybe from someone else: its ``config.json`` is read as plain values (an interpolation
is refused, never evaluated) and its checkpoint is loaded with ``weights_only=True``, so opening it runs no
code from the folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from runner.errors import ConfigError
from runner.files import read_json_or_none, write_json

# Statuses of a run that has nothing left to train.
FINISHED = ("completed", "diverged")


def stored_config(folder: Path) -> DictConfig:
    """The resolved config a run saved in ``config.json``; interpolations in it are never evaluated."""
    path = folder / "config.json"
    try:
        stored = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ConfigError(f"{path} is missing or unreadable ({error}): cannot resume that run.") from None
    if "${" in json.dumps(stored):
        raise ConfigError(f"{path} holds an interpolation ('${{...}}'); a resumed config must be plain values.")
    return OmegaConf.create(stored)


def load_checkpoint(path: Path) -> dict | None:
    if not path.exists():
        return None
    try:
        # weights_only: a checkpoint is data, and loading it must not run code from the file.
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - a torn or foreign file, whatever the exception
        raise ConfigError(
            f"{path} is not a readable checkpoint ({type(error).__name__}: {error}). Delete it to start that run "
            "again from scratch, or resume from a copy that is intact."
        ) from None


def prepare(config: DictConfig, output_dir: Path, context: dict) -> tuple[DictConfig, dict | None, dict | None]:
    """Decide what this invocation does in ``output_dir``: a fresh run, a resumed one, or nothing.

    Returns the config to run, the checkpoint to continue from, and, for a run already finished (a sweep
    started again over the same folder), its summary, in which case nothing is trained again.
    """
    if config.get("resume"):
        folder = Path(str(config.resume)).expanduser().resolve()
        if folder != output_dir.resolve():
            raise ConfigError(f"resume={config.resume}: the run folder could not be used as the output folder.")
        config = stored_config(folder)
        previous = read_json_or_none(folder / "summary.json") or {}
        context.update(choices=previous.get("choices", context["choices"]))
        context.update(overrides=previous.get("overrides", context["overrides"]))
        return config, load_checkpoint(folder / "checkpoint.pt"), None
    resolved = OmegaConf.to_container(config, resolve=True)
    if config.trainer.auto_resume and (output_dir / "config.json").exists():
        if stored_config(output_dir) != OmegaConf.create(resolved):
            raise ConfigError(f"{output_dir} holds a run with another config; use a new output folder.")
        previous = read_json_or_none(output_dir / "summary.json") or {}
        if previous.get("status") in FINISHED:
            return config, None, previous
        return config, load_checkpoint(output_dir / "checkpoint.pt"), None
    write_json(output_dir / "config.json", resolved)
    return config, None, None


def stateful_callbacks(run) -> list[tuple[str, object]]:
    """Callbacks that keep something a resumed run needs (an average of the weights) through ``state_dict()``
    and ``load_state_dict()``, named by position and class so each finds its own entry in the checkpoint."""
    return [
        (f"{index}.{type(callback).__name__}", callback)
        for index, callback in enumerate(run.callbacks)
        if hasattr(callback, "state_dict") and hasattr(callback, "load_state_dict")
    ]


def checkpoint_state(run, state: dict, history: list[dict]) -> dict:
    """Everything a resumed run needs to go on exactly as an uninterrupted one would."""
    random_states = {"torch": torch.get_rng_state(), "generator": run.generator.get_state()}
    if run.device.type == "cuda":
        random_states["cuda"] = torch.cuda.get_rng_state(run.device)
    return {
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scaler": run.scaler.state_dict(),
        "schedule": run.schedule.state_dict(),
        "epoch": state["epoch"],
        "step": state["step"],
        "first_loss": state["first_loss"],
        "train_time_s": state["train_time_s"],
        "resumes": state["resumes"],
        "history": history,
        "random_states": random_states,
        "callbacks": {name: callback.state_dict() for name, callback in stateful_callbacks(run)},
    }


def restore(run, state: dict, checkpoint: dict) -> list[dict]:
    """Put a run back where its checkpoint left it: weights, optimizer, schedule, counters and every random
    state, so the epochs that follow repeat those of an uninterrupted run exactly. Returns the epochs'
    metrics rows the checkpoint holds."""
    run.model.load_state_dict(checkpoint["model"])
    run.optimizer.load_state_dict(checkpoint["optimizer"])
    run.schedule.load_state_dict(checkpoint["schedule"])
    if run.scaler.is_enabled() and checkpoint.get("scaler"):
        run.scaler.load_state_dict(checkpoint["scaler"])
    for key in ("epoch", "step", "first_loss", "train_time_s"):
        state[key] = checkpoint[key]
    state["resumes"] = checkpoint.get("resumes", 0) + 1
    saved = checkpoint.get("callbacks", {})
    for name, callback in stateful_callbacks(run):
        if name in saved:
            callback.load_state_dict(saved[name])
    random_states = checkpoint["random_states"]
    torch.set_rng_state(random_states["torch"])
    run.generator.set_state(random_states["generator"])
    if "cuda" in random_states and run.device.type == "cuda":
        torch.cuda.set_rng_state(random_states["cuda"], run.device)
    return list(checkpoint["history"])
