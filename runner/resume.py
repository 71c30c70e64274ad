"""What an invocation does in its output folder: a fresh run, a resumed one, or nothing (a finished run), and
the checkpoint that carries a run across an interruption.

A run folder is data, maybe from someone else: opening it must be as safe as opening a JSON file. Its
``config.json`` is read as plain values (an interpolation is refused, never evaluated) and every ``_target_``
in it must be one that some option of the project names, or one the resuming command names itself; its
checkpoint is loaded with ``weights_only=True``; nothing in it is run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import yaml
from omegaconf import DictConfig, OmegaConf

from runner.catalogue import read_catalogue
from runner.errors import ConfigError
from runner.files import parse_json, read_json_or_none, write_json

# Statuses of a run that has nothing left to train.
FINISHED = ("completed", "diverged")


def project_targets() -> set[str]:
    """Every ``_target_`` some option of the project's ``conf/`` names."""
    return {
        target
        for group in read_catalogue().groups
        if not group.name.startswith("hydra")
        for option in group.options
        for target in option.targets
    }


def named_targets(overrides: list[str]) -> set[str]:
    """The ``_target_`` values a command line sets itself (``activation._target_=my_layers.MyReLU``)."""
    return {text.split("=", 1)[1] for text in overrides if "=" in text and text.split("=", 1)[0].endswith("_target_")}


def foreign_targets(node, prefix: str, allowed: set[str]) -> list[str]:
    """``key=target`` for every ``_target_`` in ``node`` that is not in ``allowed``."""
    found = []
    if isinstance(node, dict):
        target = node.get("_target_")
        if target is not None and target not in allowed:
            found.append(f"{prefix}_target_={target!r}")
        for key, value in node.items():
            found += foreign_targets(value, f"{prefix}{key}.", allowed)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += foreign_targets(value, f"{prefix}{index}.", allowed)
    return found


def stored_config(folder: Path, also_allowed: set[str] = frozenset(), defaults: DictConfig | None = None) -> DictConfig:
    """The resolved config a run saved in ``config.json``, checked as data before anything reads it: plain
    values only, no ``_target_`` but the project's own and ``also_allowed``, and the shape of a run's config.
    A setting outside the groups that a newer version of the project added is taken from ``defaults``."""
    path = folder / "config.json"
    try:
        stored = parse_json(path.read_text())
    except (OSError, ValueError) as error:
        raise ConfigError(f"{path} is missing or unreadable ({error}): cannot resume that run.") from None
    if not isinstance(stored, dict):
        raise ConfigError(f"{path} holds no config (a JSON object is expected): cannot resume that run.")
    if "${" in json.dumps(stored):
        raise ConfigError(f"{path} holds an interpolation ('${{...}}'); a resumed config must be plain values.")
    foreign = foreign_targets(stored, "", project_targets() | set(also_allowed))
    if foreign:
        raise ConfigError(
            f"{path} names {', '.join(foreign)}, which no option of this project names. A run folder is data: "
            "resuming it never builds what its files name. If that class is your own, name it on the command "
            "line again (for example activation._target_=my_layers.MyReLU)."
        )
    config = OmegaConf.create(stored)
    settings, shared = required_settings()
    missing = [key for key in shared if not present(stored, key)]
    for key in settings:
        if present(stored, key):
            continue
        value = OmegaConf.select(defaults, key) if defaults is not None else None
        if value is None or not isinstance(select_parent(stored, key), dict | type(None)):
            missing.append(key)
        else:
            OmegaConf.update(config, key, value, force_add=True)  # a setting added since that run started
    if missing:
        raise ConfigError(
            f"{path} is not the config of a run of this project: it lacks or misshapes {', '.join(missing[:6])}"
            f"{' ...' if len(missing) > 6 else ''}. Cannot resume that run."
        )
    return config


def required_settings() -> tuple[list[str], list[str]]:
    """The settings of conf/config.yaml, and those every option of a single-choice group has: what every
    run's config holds."""
    catalogue = read_catalogue()
    shared = []
    for group in catalogue.groups:
        options = [option for option in group.options if not option.is_recipe]
        if options and not group.name.startswith("hydra") and not group.is_list:
            shared += sorted(set.intersection(*({knob.key for knob in option.knobs} for option in options)))
    return [knob.key for knob in catalogue.settings.knobs], shared


def select_parent(stored: dict, key: str):
    node = stored
    for part in key.split(".")[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
    return node


def present(stored: dict, key: str) -> bool:
    parent = select_parent(stored, key)
    return isinstance(parent, dict) and key.rsplit(".", 1)[-1] in parent


def check_checkpoint(checkpoint: dict, model: torch.nn.Module, path: Path) -> None:
    """A checkpoint that loads must also fit the run before anything of the run is written: every entry the
    loop restores, and the weights of this very network (names and shapes)."""
    needed = ("model", "optimizer", "schedule", "epoch", "step", "first_loss", "train_time_s", "history")
    absent = [key for key in (*needed, "random_states") if key not in checkpoint]
    if absent or not isinstance(checkpoint.get("model"), dict):
        raise ConfigError(f"{path} is not a checkpoint of a run (it has no {', '.join(absent) or 'weights'}).")
    own = model.state_dict()
    weights = checkpoint["model"]
    differing = sorted(set(own) ^ set(weights)) + sorted(
        key for key in set(own) & set(weights) if getattr(weights[key], "shape", None) != own[key].shape
    )
    if differing:
        raise ConfigError(
            f"{path} holds the weights of another network ({', '.join(differing[:4])}"
            f"{' ...' if len(differing) > 4 else ''} differ from this run's): it is not this run's checkpoint."
        )


def original_command(folder: Path) -> dict:
    """The choices and overrides of the command that started the run in ``folder``: from its summary, or from
    Hydra's own record of that command (``.hydra/hydra.yaml``, read as data) when the summary is damaged."""
    summary = read_json_or_none(folder / "summary.json") or {}
    if isinstance(summary.get("choices"), dict) and isinstance(summary.get("overrides"), list):
        return {"choices": summary["choices"], "overrides": summary["overrides"]}
    try:
        hydra = yaml.safe_load((folder / ".hydra" / "hydra.yaml").read_text())["hydra"]
        choices = {key: value for key, value in hydra["runtime"]["choices"].items() if not key.startswith("hydra")}
        return {"choices": choices, "overrides": list(hydra["overrides"]["task"])}
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError):
        return {}


def load_checkpoint(path: Path) -> dict | None:
    if not path.exists():
        return None
    try:
        # weights_only: a checkpoint is data, and loading it must not run code from the file.
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - a torn or foreign file, whatever the exception
        text = str(error).strip()
        # torch's refusal of a pickle with code in it comes with advice to load it unsafely: not given here.
        reason = (
            "it holds objects other than tensors and numbers"
            if "Weights only load failed" in text
            else (f"{type(error).__name__}: {text.splitlines()[0] if text else 'unreadable'}")
        )
        raise ConfigError(
            f"{path} is not a readable checkpoint ({reason}). Delete it to start that run again from scratch, or "
            "resume from a copy that is intact."
        ) from None


def prepare(config: DictConfig, output_dir: Path, context: dict) -> tuple[DictConfig, dict | None, dict | None]:
    """Decide what this invocation does in ``output_dir``: a fresh run, a resumed one, or nothing.

    Returns the config to run, the checkpoint to continue from, and, for a run already finished (a sweep
    started again over the same folder, a resume of a finished run), its summary, in which case nothing is
    trained again. Writes nothing into a folder that already holds a run.
    """
    if config.get("resume"):
        folder = Path(str(config.resume)).expanduser().resolve()
        if folder != output_dir.resolve():
            raise ConfigError(f"resume={config.resume}: the run folder could not be used as the output folder.")
        config = stored_config(folder, named_targets(context["overrides"]), defaults=config)
        context.update(original_command(folder))
        previous = read_json_or_none(folder / "summary.json") or {}
        if previous.get("status") in FINISHED:
            return config, None, previous
        return config, load_checkpoint(folder / "checkpoint.pt"), None
    resolved = OmegaConf.to_container(config, resolve=True)
    if (output_dir / "config.json").exists():
        if not config.trainer.auto_resume:
            raise ConfigError(
                f"{output_dir} holds a run, and trainer.auto_resume=false starts runs only in a new folder: use "
                "another output folder, or resume=FOLDER to continue that run."
            )
        if stored_config(output_dir, named_targets(context["overrides"])) != OmegaConf.create(resolved):
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
        "budget": state.get("budget"),  # the length a time budget chose, kept so that a resume keeps it
        "history": history,
        "random_states": random_states,
        "callbacks": {name: callback.state_dict() for name, callback in stateful_callbacks(run)},
    }


def restore(run, state: dict, checkpoint: dict) -> list[dict]:
    """Put a run back where its checkpoint left it: weights, optimizer, schedule, counters and every random
    state, so the epochs that follow repeat those of an uninterrupted run exactly. Returns the epochs'
    metrics rows the checkpoint holds. The callbacks' own states come back with ``restore_callbacks``, once
    they have set themselves up for the restored run."""
    run.model.load_state_dict(checkpoint["model"])
    run.optimizer.load_state_dict(checkpoint["optimizer"])
    run.schedule.load_state_dict(checkpoint["schedule"])
    if run.scaler.is_enabled() and checkpoint.get("scaler"):
        run.scaler.load_state_dict(checkpoint["scaler"])
    for key in ("epoch", "step", "first_loss", "train_time_s"):
        state[key] = checkpoint[key]
    state["resumes"] = checkpoint.get("resumes", 0) + 1
    random_states = checkpoint["random_states"]
    torch.set_rng_state(random_states["torch"])
    run.generator.set_state(random_states["generator"])
    if "cuda" in random_states and run.device.type == "cuda":
        torch.cuda.set_rng_state(random_states["cuda"], run.device)
    return list(checkpoint["history"])


def restore_callbacks(run, checkpoint: dict) -> None:
    """What each callback kept (an average of the weights, the warnings so far) back into it."""
    saved = checkpoint.get("callbacks", {})
    for name, callback in stateful_callbacks(run):
        if name in saved:
            callback.load_state_dict(saved[name])


class FolderLock:
    """One run per folder at a time: an exclusive lock on ``<folder>/.lock`` (``fcntl.flock``) for as long as
    the run goes on. The kernel drops it when its process dies, so a killed run's lock never blocks a resume;
    the file holds the PID of the process that holds it, for the message a second process gets."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / ".lock"
        self.handle = None

    def __enter__(self) -> FolderLock:
        import fcntl  # POSIX only; imported here so that the rest of this module loads everywhere

        self.handle = open(self.path, "a+")
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.handle.seek(0)
            holder = self.handle.read().strip() or "unknown"
            self.handle.close()
            raise ConfigError(
                f"{self.path.parent} is in use by another run (PID {holder}): wait for it to end, or give this run "
                "another output folder (hydra.run.dir=PATH)."
            ) from None
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write(f"{os.getpid()}\n")
        self.handle.flush()
        return self

    def __exit__(self, *exc) -> None:
        self.handle.close()


def remove_stale_temporaries(folder: Path) -> None:
    """Half-written files a killed process left (``.<name>.<pid>.tmp``): with the folder's lock held, no
    other process is writing there, so every one of them is stale."""
    for path in Path(folder).glob(".*.tmp"):
        path.unlink(missing_ok=True)
