"""Reading run folders into records, whatever state each folder is in: a half-written or garbled folder is a
record with its status (``partial``, ``unreadable``), never a crash.

A run is a folder that ``runner.train`` wrote a ``config.json`` (the resolved config, written when the run
starts) or a ``summary.json`` into. Its settings are that resolved config, flattened (``optimizer.lr=0.1``), so
a value shows whatever set it: the command line, an ``experiment=`` file or a sweep; beside them the option
chosen in each config group (``activation=gelu``), from the summary.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from runner.errors import RecordError, is_number
from runner.files import natural_key, read_json

# The records runner.train writes into a run's folder, and nothing else does.
RUN_RECORDS = ("config.json", "summary.json")
# A setting a run's resolved config does not have (a knob of another option), and one a folder does not tell.
ABSENT = "-"
UNKNOWN = "?"
# Keys of the resolved config that say which object Hydra builds (the group choice already names it), or where
# files go: they identify a run rather than set it.
BUILD_KEYS = ("_target_", "_partial_", "_recursive_", "_convert_", "_args_")
NOT_SETTINGS = ("resume",)


@dataclass
class RunRecord:
    """What one folder tells about its run, however far it got."""

    folder: Path
    status: str
    metrics: dict[str, float | None]
    choices: dict[str, str] | None = None  # the option of each config group; None: the folder does not say
    config: dict[str, str] | None = None  # the flattened resolved config; None: no readable config.json
    overrides: dict[str, str] = field(default_factory=dict)  # the command line's settings, when no config says more
    summary: dict = field(default_factory=dict)
    note: str = ""
    label: str = ""
    loaded_history: list[dict] | None = None  # metrics.jsonl's rows once read; None: not read yet
    # Every setting the folder tells, choices first; None when it tells none. Made once: every column asks.
    settings: dict[str, str] | None = field(init=False)

    def __post_init__(self) -> None:
        if self.choices is None and self.config is None and not self.overrides:
            self.settings = None
        else:
            self.settings = {**(self.choices or {}), **(self.config if self.config is not None else self.overrides)}

    @property
    def history(self) -> list[dict]:
        """The rows of ``metrics.jsonl``, read when first asked for: the table of runs with a summary needs
        none of them, only the figures do."""
        if self.loaded_history is None:
            self.loaded_history = read_history(self.folder / "metrics.jsonl")
        return self.loaded_history

    @property
    def refused(self) -> bool:
        """A start that runner.train refused (a value it cannot use): recorded as failed, with ``refused``."""
        return self.status == "failed" and self.summary.get("refused") is True

    def setting(self, key: str, is_choice: bool) -> str:
        """The value of a setting as text; ``ABSENT`` when the run's config lacks it, ``UNKNOWN`` when the
        folder does not tell."""
        if is_choice:
            known = self.choices
        else:
            known = self.config if self.config is not None else None
            if known is None and key in self.overrides:
                return self.overrides[key]
        if known is None:
            return UNKNOWN
        return known.get(key, ABSENT)

    def lookup(self, key: str) -> str | None:
        """A choice, a setting or a summary field as text (for ``--where``); None when the run has no such key."""
        if key == "status":
            return self.status
        if key == "refused":
            return setting_text(self.refused)
        settings = self.settings or {}
        if key in settings:
            return settings[key]
        if key in self.summary and not isinstance(self.summary[key], (dict, list)):
            return setting_text(self.summary[key])
        if self.metrics.get(key) is not None:
            return setting_text(self.metrics[key])
        return None


def number(value) -> float | None:
    """A finite number, or None for anything else an untrusted file may hold (null, text, NaN)."""
    return float(value) if is_number(value) else None


def setting_text(value) -> str:
    """A config value as a user types it on the command line: ``0.1``, ``true``, ``null``, ``[8,16]``."""
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ",".join(setting_text(item) for item in value) + "]"
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def is_setting_name(name: str) -> bool:
    """Whether a key's last part names a setting, not what Hydra builds or where files go."""
    return name not in BUILD_KEYS and name != "dir" and not name.endswith("_dir")


def is_setting(key: str) -> bool:
    return key not in NOT_SETTINGS and is_setting_name(key.rsplit(".", 1)[-1])


def flatten(node: dict) -> dict[str, str]:
    """``{"optimizer": {"lr": 0.1}}`` -> ``{"optimizer.lr": "0.1"}``, leaving out what is not a setting. With a
    stack, not recursion: a config.json nested a thousand deep is data, not a crash."""
    flat: dict[str, str] = {}
    stack: list[tuple[str, dict]] = [("", node)]
    while stack:
        prefix, current = stack.pop()
        for key, value in current.items():
            name = prefix + str(key)
            if isinstance(value, dict):
                stack.append((name + ".", value))
            elif is_setting_name(str(key)) and (prefix or name not in NOT_SETTINGS):
                flat[name] = setting_text(value)
    return flat


def read_record(path: Path) -> dict | None:
    """A JSON object from a run folder, or None when it is missing or damaged (nested too deep included)."""
    try:
        return read_json(path)
    except (OSError, ValueError, RecursionError):
        return None


def read_history(path: Path) -> list[dict]:
    """The JSON-object lines of ``metrics.jsonl``, parsed in one call (a thousand runs of 30 epochs each are
    30,000 lines); line by line, skipping a torn last line, only when that fails."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    lines = [line for line in text.splitlines() if line.strip()]
    try:
        rows = json.loads("[" + ",".join(lines) + "]")
        if len(rows) == len(lines) and all(isinstance(row, dict) for row in rows):
            return rows
    except (ValueError, RecursionError):
        pass
    return [row for row in map(json_object, lines) if row is not None]


def json_object(line: str) -> dict | None:
    """One line as a JSON object; None for a torn, garbled or too deeply nested line, or another value."""
    try:
        row = json.loads(line)
    except (ValueError, RecursionError):
        return None
    return row if isinstance(row, dict) else None


# The summary numbers that metrics.jsonl also tells (history_metrics): a summary without one of them (a run
# still running, or killed) gets it from there.
HISTORY_KEYS = (
    "test_acc",
    "best_test_acc",
    "val_acc",
    "epochs_completed",
    "train_time_s",
    "images_per_s",
    "test_loss",
    "train_loss",
    "train_acc",
    "val_loss",
)


def history_metrics(history: list[dict]) -> dict[str, float | None]:
    """The summary's numbers as far as ``metrics.jsonl`` tells them, for a run that wrote no summary."""
    if not history:
        return {}
    tested = [number(row.get("test_acc")) for row in history]
    tested = [value for value in tested if value is not None]
    times = [number(row.get("epoch_time_s")) for row in history]
    rates = [number(row.get("images_per_s")) for row in history]
    timed = [(time, rate) for time, rate in zip(times, rates, strict=True) if time and rate is not None]
    total_time = sum(time for time in times if time is not None)
    last = history[-1]
    return {
        "test_acc": number(last.get("test_acc")),
        "best_test_acc": max(tested) if tested else None,
        "val_acc": number(last.get("val_acc")),
        "epochs_completed": number(last.get("epoch")) or float(len(history)),
        "train_time_s": total_time or None,
        "images_per_s": sum(time * rate for time, rate in timed) / sum(time for time, _ in timed) if timed else None,
        "test_loss": number(last.get("test_loss")),
        "train_loss": number(last.get("train_loss")),
        "train_acc": number(last.get("train_acc")),
        "val_loss": number(last.get("val_loss")),
    }


def override_key(text: str) -> str:
    """``+trainer.x@pkg=1`` -> ``trainer.x``: the config key a command-line override sets."""
    return text.split("=", 1)[0].lstrip("+~").split("@", 1)[0].strip()


def command_settings(overrides, choices: dict) -> dict[str, str]:
    """The command line's settings, for a run without a readable config (a refused start): every override but
    the group selections (their choice says it) and Hydra's own settings, and the seed."""
    settings: dict[str, str] = {}
    for text in overrides if isinstance(overrides, list) else []:
        if not isinstance(text, str) or "=" not in text:
            continue
        key = override_key(text)
        if key in choices or key == "hydra" or key.startswith(("hydra.", "hydra/")) or not is_setting(key):
            continue
        settings[key] = text.split("=", 1)[1]
    return settings


def hydra_command(folder: Path) -> tuple[dict | None, list]:
    """The choices and overrides of Hydra's own record of the command (``.hydra/hydra.yaml``, read as data),
    for a run whose summary is missing or damaged."""
    path = folder / ".hydra" / "hydra.yaml"
    if not path.is_file():
        return None, []
    import yaml  # only here: most runs have a summary, and the import costs what reading a hundred runs does

    try:
        hydra = yaml.safe_load(path.read_text())["hydra"]
        choices = {
            str(key): value
            for key, value in hydra["runtime"]["choices"].items()
            if not str(key).startswith("hydra") and (value is None or isinstance(value, (str, int, float)))
        }
        overrides = hydra.get("overrides", {}).get("task") or []
        return choices, [text for text in overrides if isinstance(text, str)]
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError, RecursionError):
        return None, []


def read_summary(folder: Path, record: RunRecord) -> tuple[dict, str, str]:
    """The summary, the run's status and a note on what is missing or went wrong."""
    path = folder / "summary.json"
    if not path.exists():
        history = record.history
        return {}, "partial", "no summary.json" + (f"; {len(history)} epochs in metrics.jsonl" if history else "")
    try:
        summary = read_json(path)
    except (OSError, ValueError, RecursionError) as error:
        return {}, "unreadable", f"summary.json cannot be read ({error})"
    status = str(summary.get("status") or "unknown")
    note = ""
    if status == "failed" and isinstance(summary.get("error"), str):
        lines = [line for line in summary["error"].strip().splitlines() if line.strip()]
        note = lines[-1].strip() if lines else ""
    return summary, status, note


def load_run(folder: Path, extra: tuple[str, ...] = ()) -> RunRecord:
    """Read one run folder, whatever state it is in. Its metrics are the summary's numbers, or as far as
    ``metrics.jsonl`` tells them for a run that wrote no summary; ``extra``: further keys that may also come
    from the last epoch's row."""
    record = RunRecord(folder, "", {})
    summary, status, note = read_summary(folder, record)

    metrics: dict[str, float | None] = {key: number(value) for key, value in summary.items()}
    if any(key not in summary for key in HISTORY_KEYS):
        for key, value in history_metrics(record.history).items():
            if metrics.get(key) is None:
                metrics[key] = value
    for key in extra:
        if metrics.get(key) is None and record.history:
            metrics[key] = number(record.history[-1].get(key))
    warnings = summary.get("warnings")
    metrics["warnings"] = float(len(warnings)) if isinstance(warnings, list) else (0.0 if summary else None)

    choices, overrides = summary.get("choices"), summary.get("overrides")
    if not isinstance(choices, dict):
        choices, overrides = hydra_command(folder)
    choices = None if choices is None else {str(key): setting_text(value) for key, value in choices.items()}
    if choices is not None:
        choices = {key: "none" if value == "null" else value for key, value in choices.items()}
    stored = read_record(folder / "config.json")
    config = flatten(stored) if stored is not None else None
    command = command_settings(overrides, choices or {})
    if config is None and summary.get("seed") is not None:
        command["seed"] = setting_text(summary["seed"])
    return RunRecord(folder, status, metrics, choices, config, command, summary, note, "", record.loaded_history)


@dataclass
class Found:
    """The run folders at or below some paths, and how many folders there held something else."""

    runs: list[Path]
    others: list[Path]  # a Hydra job or another command's output (runner.diagnose, runner.ensemble): not a run


def holds_other_output(names: list[str], subfolders: list[str]) -> bool:
    return ".hydra" in subfolders or any(name.endswith((".json", ".jsonl")) for name in names)


def find_runs(paths: list[Path]) -> Found:
    """Every run folder at or below ``paths``, in natural order; hidden folders are not searched."""
    runs: dict[Path, None] = {}
    others: dict[Path, None] = {}
    for path in paths:
        if not path.exists():
            raise RecordError(f"{path}: no such file or folder.")
        if path.is_file():
            path = path.parent
        # Resolved once: os.walk's folders below a resolved root are resolved too (it follows no links).
        for folder, subfolders, files in os.walk(path.resolve()):
            here = Path(folder)
            if any(name in files for name in RUN_RECORDS):
                runs.setdefault(here)
            elif holds_other_output(files, subfolders):
                others.setdefault(here)
            subfolders[:] = sorted((name for name in subfolders if not name.startswith(".")), key=natural_key)
    return Found(list(runs), [folder for folder in others if folder not in runs])


@dataclass
class Loaded:
    records: list[RunRecord]
    others: int  # folders skipped: not training runs


def load_runs(paths: list[Path], extra: tuple[str, ...] = ()) -> Loaded:
    """Every run at or below ``paths``, labelled by its folder relative to their common root."""
    found = find_runs(paths)
    if not found.runs:
        skipped = f" ({len(found.others)} folders there are not training runs)" if found.others else ""
        raise RecordError(
            f"No run folders (with config.json or summary.json from runner.train) under "
            f"{', '.join(map(str, paths))}{skipped}."
        )
    records = [load_run(folder, extra) for folder in found.runs]
    root = Path(os.path.commonpath(found.runs))
    for record in records:
        relative = record.folder.relative_to(root).as_posix()
        record.label = record.folder.name if relative == "." else relative
    return Loaded(records, len(found.others))


# Selecting runs: --where KEY=VALUE, and completed runs only unless --all.

DEFAULT_STATUS = "completed"
BOOLEAN_WORDS = {"true", "false", "null", "none"}


def parse_condition(text: str) -> tuple[str, str]:
    if "=" not in text or not text.split("=", 1)[0].strip():
        raise RecordError(f"--where {text}: expected KEY=VALUE, for example --where activation=gelu.")
    key, value = text.split("=", 1)
    return key.strip(), value.strip()


def same_value(actual: str, wanted: str) -> bool:
    """Values compared as a user types them: numbers as numbers (``0.1`` matches ``1e-1``), ``True`` as ``true``."""
    try:
        return float(actual) == float(wanted)
    except ValueError:
        pass
    if actual.lower() in BOOLEAN_WORDS or wanted.lower() in BOOLEAN_WORDS:
        return actual.lower() == wanted.lower()
    return actual == wanted


def matches(record: RunRecord, conditions: list[tuple[str, str]]) -> bool:
    for key, wanted in conditions:
        actual = record.lookup(key)
        if actual is None or not same_value(actual, wanted):
            return False
    return True


def known_keys(records: list[RunRecord]) -> set[str]:
    keys = {"status", "refused"}
    for record in records:
        keys.update(record.settings or {})
        keys.update(key for key, value in record.summary.items() if not isinstance(value, (dict, list)))
        keys.update(key for key, value in record.metrics.items() if value is not None)
    return keys


def left_out_name(record: RunRecord) -> str:
    return "refused" if record.refused else record.status


@dataclass
class Selection:
    records: list[RunRecord]
    unmatched: int = 0  # runs --where left out
    left_out: Counter = field(default_factory=Counter)  # statuses left out by default (--all shows them)


def select_runs(records: list[RunRecord], conditions: list[tuple[str, str]], everything: bool) -> Selection:
    """The runs that meet every ``--where`` condition and, unless ``everything`` or a condition on the status
    says otherwise, completed ones only."""
    valid = known_keys(records)
    for key, _ in conditions:
        if key not in valid:
            import difflib

            close = difflib.get_close_matches(key, valid, n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise RecordError(f"--where {key}=...: no run has a setting, choice or summary field {key}.{hint}")
    kept = [record for record in records if matches(record, conditions)]
    selection = Selection(kept, unmatched=len(records) - len(kept))
    if not everything and not any(key in ("status", "refused") for key, _ in conditions):
        selection.records = [record for record in kept if record.status == DEFAULT_STATUS]
        selection.left_out = Counter(left_out_name(record) for record in kept if record.status != DEFAULT_STATUS)
    return selection


# A search: the sweeper's parameters, from the sweep folder's multirun.yaml (Hydra's basic sweeper) or from a
# job's .hydra/hydra.yaml (the Optuna sweeper writes no multirun.yaml).

LOG_TAG = re.compile(r"^\s*tag\(([^()]*),\s*\w+\(")


def sweeper_params(path: Path) -> dict[str, str]:
    """``hydra.sweeper.params`` of a Hydra record file, read as data; empty when it has none or is damaged."""
    import yaml

    try:
        params = yaml.safe_load(path.read_text())["hydra"]["sweeper"]["params"]
    except (OSError, yaml.YAMLError, KeyError, TypeError, RecursionError):
        return {}
    if not isinstance(params, dict):
        return {}
    # Search spaces are text ("tag(log, interval(1e-3, 1))"); anything else a file holds is not read as one.
    return {str(key): str(value) for key, value in params.items() if isinstance(value, (str, int, float))}


def is_log_sampled(spec: str) -> bool:
    """``tag(log, interval(1e-3, 1))``: sampled log-uniformly (Hydra's Optuna sweeper syntax)."""
    tags = LOG_TAG.match(spec)
    return bool(tags) and "log" in {tag.strip() for tag in tags.group(1).split(",")}


def search_space(records: list[RunRecord]) -> dict[str, str]:
    """The searched parameters of the sweeps the runs belong to, each with its search space as written."""
    space: dict[str, str] = {}
    by_sweep: dict[Path, list[RunRecord]] = {}
    for record in records:
        by_sweep.setdefault(record.folder.parent, []).append(record)
    for sweep, members in by_sweep.items():
        if (sweep / "multirun.yaml").is_file():
            found = sweeper_params(sweep / "multirun.yaml")
        else:
            job = next(
                (member.folder for member in members if (member.folder / ".hydra" / "hydra.yaml").is_file()), None
            )
            found = sweeper_params(job / ".hydra" / "hydra.yaml") if job else {}
        for key, spec in found.items():
            space.setdefault(key, spec)
    return space
