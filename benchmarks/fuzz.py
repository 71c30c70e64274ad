"""Fuzzer of the runner's robustness promises: hostile config overrides and damaged files, a bounded number of cases.

    python benchmarks/fuzz.py --cases 300 --seed 0
    python benchmarks/fuzz.py --cases 300 --seed 0 --subprocess --sample 30 --save ""   # 30 of them, fresh processes
    python benchmarks/fuzz.py --cases 300 --seed 0 --only 12,40 --verbose --save ""     # cases 12 and 40 again

It checks what docs/robustness.md promises:

- every bad input ends with exit code 2 and one paragraph on stderr that names the key or the file, and no
  ``Traceback``;
- a refused start never changes a file of a folder that already holds a run (completed or interrupted), byte for
  byte, ignoring only the runner's own ``.lock`` file and ``.hydra-attempts/`` folder;
- good inputs still run (exit 0).

The cases (reproducible from ``--seed``):

- ``value``: a knob of ``conf/`` (read with ``runner.catalogue``; its option selected) set to a hostile value of
  its kind: negative, zero, 1e30, nan, inf, -inf, a string, ``[]``, a list, a bool, a number for a string;
- ``added_key``: a typo'd key added with ``+`` (``+trainer.epoch=30``); ``typo_key``: the same without ``+``, or
  a typo'd group name; ``option``: an option that does not exist (``activation=gleu``);
- ``folder``: a copy of a real tiny run folder, completed or interrupted, with one file damaged (``config.json``,
  ``checkpoint.pt``, ``summary.json``, ``metrics.jsonl``, ``.hydra/hydra.yaml``), then ``resume=FOLDER``, or the
  training command again in that folder with another value (which must be refused as another config); some
  damages try to run code (a foreign ``_target_``, a pickle, a YAML tag): a marker file must not appear and a
  victim file must keep its bytes;
- ``data``: ``data=folder`` with a damaged image tree or archive (truncated, a symlink loop, a non-image ``.png``);
- ``records``: ``runner.ensemble`` and ``runner.compare`` over run folders with a damaged ``test_logits.npy``,
  ``test_labels.npy``, ``summary.json`` or ``metrics.jsonl``.

Every case runs with the base overrides that keep a run tiny (synthetic data, 200 images, one epoch on the CPU,
a two-stage ConvNet), in a forked child of this process, which has imported ``runner.train`` already (a start
costs a fraction of a second instead of seconds); ``--subprocess`` runs each case as ``python -m ...`` instead,
to check the fork mode's figures on a sample. A case passes when a bad input gets exit 2 with a clean paragraph
and no changed record, or an input that is valid after all runs (exit 0) or is refused cleanly (exit 2). A
traceback, another exit code, a changed earlier record, a marker file or a hang (``--timeout``, 120 s) fails it.
Failing cases are run once more in a fresh process (the runner may be changing under the fuzzer); a failure is
counted when it repeats. Prints each failure and a table of counts by kind, writes benchmarks/results/fuzz.json,
and exits 1 when any case failed.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import importlib
import io
import json
import os
import pickle
import random
import re
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from common import device_name, save, table
from PIL import Image

import runner.train
from runner import project_path
from runner.catalogue import Catalogue, Knob, read_catalogue

# What keeps every run tiny; a case's own overrides come after these and win.
BASE = {
    "data": "synthetic",
    "data.train_size": "200",
    "data.test_size": "100",
    "data.batch_size": "50",
    "trainer.epochs": "1",
    "trainer.device": "cpu",
    "trainer.progress": "false",
    "model": "convnet",
    "model.widths": "[8,16]",
}
# Small settings for the other networks, so that a case that picks one still trains in seconds on the CPU.
TINY_MODELS = {
    "convnet": {"model.widths": "[8,16]"},
    "densenet": {"model.depth": "10", "model.growth": "4"},
    "fastnet": {"model.widths": "[8,16,16]", "model.stem_width": "8"},
    "mlp": {"model.depth": "2", "model.width": "32"},
    "preact_resnet18": {"model.width": "4", "model.blocks": "[1,1,1,1]"},
    "resnet": {"model.depth": "8", "model.width": "4"},
    "vgg": {"model.widths": "[8,8,16,16,16]", "model.hidden": "16", "model.hidden_layers": "1"},
    "wide_resnet": {"model.depth": "10", "model.widen_factor": "1"},
}
SYNTHETIC_ONLY = ("data.train_size", "data.test_size")

# What a case expects: a bad input must be refused, a good one must run, and either is fine for a hostile value
# that may be valid after all (0 warmup epochs, a huge learning rate).
BAD, GOOD, EITHER = "bad", "good", "either"
KINDS = ("value", "added_key", "typo_key", "option", "folder", "data", "records")

# Hostile values in command-line syntax, by name.
HOSTILE = {
    "negative": "-1",
    "zero": "0",
    "huge": "1e30",
    "nan": "nan",
    "inf": "inf",
    "-inf": "-inf",
    "string": "banana",
    "empty list": "[]",
    "list": "[1,2]",
    "bool": "true",
    "number": "3",
    "list of negatives": "[-1]",
    "list of nan": "[nan]",
    "list of strings": "[banana]",
}
# Which hostile values each kind of knob gets, and which of them no setting of that kind can take.
MENU = {
    "number": ["negative", "zero", "huge", "nan", "inf", "-inf", "string", "empty list", "list", "bool"],
    "bool": ["string", "number", "zero", "nan", "empty list"],
    "list": ["empty list", "string", "number", "huge", "bool", "list of negatives", "list of nan", "list of strings"],
    "choice": ["number", "string", "empty list", "bool", "nan", "zero"],
    "path": ["string", "number", "empty list", "bool"],
    "null": ["negative", "zero", "huge", "nan", "string", "empty list", "list", "bool", "number"],
}
NEVER_VALID = {
    "number": {"nan", "inf", "-inf", "string", "empty list", "bool"},
    "bool": set(MENU["bool"]),
    "list": {"empty list", "string", "huge", "bool", "list of negatives", "list of nan", "list of strings"},
}
IGNORED = (".lock", ".hydra-attempts")  # the runner's own bookkeeping in a run folder
TRACEBACK = "Traceback (most recent call last)"
FINISHED = ("completed", "diverged")


@dataclass
class Case:
    kind: str
    detail: str  # what is hostile, in words: "optimizer.lr=nan", "config.json truncated (interrupted run)"
    module: str  # runner.train, runner.ensemble or runner.compare
    arguments: list[str]
    work: Path  # the case's own folder: its outputs, its copies of run folders and data
    expect: str = EITHER
    names: list[str] = field(default_factory=list)  # a refusal must name one of these
    held: Path | None = None  # a folder of earlier runs whose records a refused start must leave as they are
    read_only: bool = False  # the command only reads records: nothing of ``held`` may change whatever its exit
    setup: Callable[[Path], None] | None = field(default=None, repr=False)  # builds the case's files in ``work``
    number: int = 0

    @property
    def outputs(self) -> Path:
        return self.work / "outputs"

    @property
    def command(self) -> str:
        return f"cd {self.work} && RUNNER_OUTPUTS={self.outputs} python -m {self.module} {shlex.join(self.arguments)}"


@dataclass
class Outcome:
    exit_code: int | None  # None: killed after the timeout
    stderr: str
    seconds: float


# ------------------------------------------------------------------------------------------- running a command


def exit_status(code) -> int:
    """The exit status ``sys.exit(code)`` gives a process, as Python computes it."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def child_main(module: str, arguments: list[str]) -> int:
    """What ``python -m module arguments`` does, in a forked child of a process that imported ``runner.train``
    (and torch) already: an uncaught exception prints its traceback and exits 1."""
    import torch

    torch.set_num_threads(1)  # 2 shared cores; also what OMP_NUM_THREADS=1 gives the subprocess mode
    sys.argv = [project_path(*module.split(".")) + ".py", *arguments]
    try:
        if module == "runner.train":
            runner.train.main()
            return 0
        # compare and ensemble import no torch: imported here, they run the code as it is on disk now.
        return exit_status(importlib.import_module(module).main(arguments))
    except SystemExit as stop:
        return exit_status(stop.code)
    except BaseException:  # noqa: BLE001 - the interpreter's own behaviour for anything uncaught
        traceback.print_exc()
        return 1


def redirect(descriptor: int, path: Path, mode: int) -> None:
    opened = os.open(path, mode, 0o644)
    os.dup2(opened, descriptor)
    os.close(opened)


def run_forked(module: str, arguments: list[str], work: Path, timeout: float) -> Outcome:
    """Run the command in a forked child, its output in files; the parent has imported torch but run no torch op,
    so the child starts without an inherited thread pool."""
    stderr_path = work / "stderr.txt"
    sys.stdout.flush()
    sys.stderr.flush()  # or the child would write the parent's buffered text again
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setpgid(0, 0)  # its own process group, so that a hung child goes with any process it started
            os.chdir(work)
            os.environ["RUNNER_OUTPUTS"] = str(work / "outputs")
            os.environ.pop("HYDRA_FULL_ERROR", None)
            redirect(0, Path(os.devnull), os.O_RDONLY)
            redirect(1, work / "stdout.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            redirect(2, stderr_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            code = child_main(module, arguments)
        except BaseException:  # noqa: BLE001 - whatever happens, the child must not return into the parent's loop
            traceback.print_exc()
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)
    code = wait_for(pid, timeout)
    return Outcome(code, read_text(stderr_path), time.perf_counter() - started)


def wait_for(pid: int, timeout: float) -> int | None:
    """The child's exit status (negative: killed by that signal), or None when it ran past ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            kill_group(pid)  # a worker it left behind
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            kill_group(pid)
            os.waitpid(pid, 0)
            return None
        time.sleep(0.02)


def kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def run_subprocess(module: str, arguments: list[str], work: Path, timeout: float) -> Outcome:
    """Run the command as ``python -m module arguments`` in a fresh interpreter."""
    environment = {**os.environ, "RUNNER_OUTPUTS": str(work / "outputs"), "OMP_NUM_THREADS": "1"}
    environment.pop("HYDRA_FULL_ERROR", None)
    started = time.perf_counter()
    with open(work / "stdout.txt", "wb") as stdout, open(work / "stderr.txt", "wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", module, *arguments],
            cwd=work,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            code = None
        kill_group(process.pid)
        process.wait()
    return Outcome(code, read_text(work / "stderr.txt"), time.perf_counter() - started)


def read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


# ----------------------------------------------------------------------------------- the shared files of the cases


@dataclass
class Fixtures:
    """What the folder, data and records cases copy and damage, made once."""

    root: Path
    completed: Path  # a real tiny completed run folder
    interrupted: Path  # the same, its summary saying interrupted and its config asking for one more epoch
    other_checkpoint: Path  # the checkpoint of a run of another network
    foreign_checkpoint: Path  # torch.save of a dict that is no checkpoint
    malicious_checkpoint: Path  # torch.save of an object whose unpickling runs a command
    images: Path  # a good image tree, train/<class>/*.png and test/<class>/*.png
    shared_images: Path  # a copy the config cases train on (its cache is written beside it)
    archive: Path  # the same as a .tar.gz

    @property
    def marker(self) -> Path:
        """A file that code run from a damaged file would create: it must never appear."""
        return self.root / "MARKER"

    @property
    def victim(self) -> Path:
        """A file that code run from a damaged file would write over: it must keep its bytes."""
        return self.root / "victim.txt"


VICTIM_TEXT = b"the victim's own bytes\n"


class Touch:
    """Unpickling this runs ``touch PATH``: what a weights-only loader must refuse."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return os.system, (f"touch {self.path}",)


def in_child(work: Path, function: Callable[[], None]) -> None:
    """Run ``function`` in a forked child: it may use torch without starting a thread pool in this process."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            redirect(2, work / "child-stderr.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            function()
            code = 0
        except BaseException:  # noqa: BLE001
            traceback.print_exc()
        finally:
            os._exit(code)
    if wait_for(pid, 120) != 0:
        raise SystemExit(f"making the fixtures failed:\n{read_text(work / 'child-stderr.txt')}")


def make_run(folder: Path, overrides: list[str], execute, timeout: float) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    outcome = execute("runner.train", [*overrides, f"hydra.run.dir={folder}"], folder.parent, timeout)
    if outcome.exit_code != 0:
        raise SystemExit(f"the template run {folder} failed (exit {outcome.exit_code}):\n{outcome.stderr}")
    (folder / ".lock").unlink(missing_ok=True)


def make_fixtures(root: Path, execute, timeout: float) -> Fixtures:
    templates = root / "templates"
    fixtures = Fixtures(
        root=root,
        completed=templates / "completed",
        interrupted=templates / "interrupted",
        other_checkpoint=templates / "other" / "checkpoint.pt",
        foreign_checkpoint=templates / "foreign.pt",
        malicious_checkpoint=templates / "malicious.pt",
        images=templates / "images",
        shared_images=templates / "shared-images",
        archive=templates / "images.tar.gz",
    )
    fixtures.victim.write_bytes(VICTIM_TEXT)
    make_run(fixtures.completed, overrides_line({}), execute, timeout)
    make_run(fixtures.other_checkpoint.parent, overrides_line({"model.widths": "[4,8]"}), execute, timeout)
    shutil.copytree(fixtures.completed, fixtures.interrupted)
    edit_json(fixtures.interrupted / "summary.json", lambda summary: {**summary, "status": "interrupted"})
    edit_json(fixtures.interrupted / "config.json", lambda config: set_in(config, ("trainer", "epochs"), 2))

    def save_checkpoints() -> None:
        import torch

        torch.save({"epoch": 1, "note": "not a checkpoint of this project"}, fixtures.foreign_checkpoint)
        torch.save({"model": Touch(fixtures.marker)}, fixtures.malicious_checkpoint)

    in_child(templates, save_checkpoints)
    make_image_tree(fixtures.images, random.Random(0))
    shutil.copytree(fixtures.images, fixtures.shared_images)
    with tarfile.open(fixtures.archive, "w:gz") as archive:
        for split in ("train", "test"):
            archive.add(fixtures.images / split, arcname=split)
    return fixtures


def make_image_tree(folder: Path, chooser: random.Random, size: int = 32) -> None:
    """Two classes, a colour each: 30 training and 10 test images per class."""
    for split, count in (("train", 30), ("test", 10)):
        for label, name in enumerate(("cat", "dog")):
            (folder / split / name).mkdir(parents=True, exist_ok=True)
            for index in range(count):
                pixels = np.full((size, size, 3), 60 + 120 * label, dtype=np.uint8)
                pixels += np.uint8(chooser.randrange(40))
                Image.fromarray(pixels).save(folder / split / name / f"{index}.png")


# ------------------------------------------------------------------------------------------- command lines


def override_key(text: str) -> str:
    return text.split("=", 1)[0].lstrip("+~")


def overrides_line(settings: dict[str, str], last: list[str] = (), images: Path | None = None) -> list[str]:
    """The base overrides with a case's ``settings`` (group choices, knobs) merged in, then ``last``: a setting
    of the case replaces the base's; a network or data set other than the base's drops the base's knobs of it."""
    line = dict(BASE)
    model = settings.get("model", BASE["model"])
    if model != BASE["model"]:
        line = {key: value for key, value in line.items() if not key.startswith("model.")}
        line.update(TINY_MODELS.get(model, {}))
    data = settings.get("data", BASE["data"])
    if data != BASE["data"]:
        line = {key: value for key, value in line.items() if key not in SYNTHETIC_ONLY}
        if data == "folder" and images is not None:
            line["data.root"] = str(images)
    line.update(settings)
    replaced = {override_key(text) for text in last}
    return [f"{key}={value}" for key, value in line.items() if key not in replaced] + list(last)


# ------------------------------------------------------------------------------------------- config cases


@dataclass(frozen=True)
class Setting:
    """A knob as a case reaches it: the option that must be selected for it to exist, if any."""

    knob: Knob
    group: str = ""
    option: str = ""
    is_list: bool = False

    @property
    def selection(self) -> dict[str, str]:
        if not self.group:
            return {}
        return {self.group: f"[{self.option}]" if self.is_list else self.option}


def knob_kind(knob: Knob) -> str:
    """number, bool, list, choice (a word), path (an interpolation or a required value) or null."""
    default = knob.default
    if default == "null":
        return "null"
    if default in ("true", "false"):
        return "bool"
    if default.startswith("["):
        return "list"
    if "${" in default or default == "???":
        return "path"
    try:
        float(default)
    except ValueError:
        return "choice"
    return "number"


def settings_of(catalogue: Catalogue) -> list[Setting]:
    """Every knob a command line can reach: the top-level settings and every option's knobs, each with its option.
    The recipes only set other knobs; hydra/launcher is for sweeps; data=cifar10 would download and train on
    50,000 images, and its knobs are those of the other data sets."""
    found = [Setting(knob) for knob in catalogue.settings.knobs]
    for group in catalogue.groups:
        if group.name.startswith("hydra") or group.is_recipes:
            continue
        for option in group.options:
            if (group.name, option.name) == ("data", "cifar10"):
                continue
            found += [Setting(knob, group.name, option.name, group.is_list) for knob in option.knobs]
    return found


def extra_settings(setting: Setting, work: Path) -> dict[str, str]:
    """Settings a case adds so that it stays in its own folder: a whitening cache of its own."""
    if setting.group == "preprocess" and setting.option in ("pca_whiten", "zca_whiten"):
        return {"preprocess.cache_dir": str(work / "cache")}
    return {}


def hostile_text(name: str, knob: Knob) -> str:
    if name == "negative" and knob_kind(knob) == "number" and "." in knob.default:
        return "-0.5"
    return HOSTILE[name]


def name_patterns(*names: str) -> list[str]:
    """What a refusal may name: the full key, its last part when that is a word, the option."""
    return [name for name in dict.fromkeys(names) if name and len(name) >= 3]


def value_case(setting: Setting, chooser: random.Random, work: Path, fixtures: Fixtures) -> Case:
    knob, kind = setting.knob, knob_kind(setting.knob)
    hostile = chooser.choice(MENU[kind])
    override = f"{knob.key}={hostile_text(hostile, knob)}"
    settings = {**setting.selection, **extra_settings(setting, work)}
    return Case(
        kind="value",
        detail=f"{override} ({hostile} for a {kind} knob)",
        module="runner.train",
        arguments=overrides_line(settings, [override], fixtures.shared_images),
        work=work,
        expect=BAD if hostile in NEVER_VALID.get(kind, ()) else EITHER,
        names=name_patterns(knob.key, knob.key.rsplit(".", 1)[-1], setting.option if setting.is_list else ""),
    )


def misspell(word: str, chooser: random.Random) -> str:
    """A typo: a letter dropped, two swapped or one doubled, or a plural made singular (or the reverse)."""
    for _ in range(20):
        how, index = chooser.choice(["drop", "swap", "double", "plural"]), chooser.randrange(len(word))
        if how == "drop" and len(word) > 3:
            typo = word[:index] + word[index + 1 :]
        elif how == "swap" and len(word) > 1:
            index = min(index, len(word) - 2)
            typo = word[:index] + word[index + 1] + word[index] + word[index + 2 :]
        elif how == "double":
            typo = word[:index] + word[index] + word[index:]
        else:
            typo = word[:-1] if word.endswith("s") else word + "s"
        if typo != word and typo.strip("_"):
            return typo
    return word + "x"


def typo_case(setting: Setting, chooser: random.Random, work: Path, declared: set[str], added: bool) -> Case:
    section, _, leaf = setting.knob.key.rpartition(".")
    key = setting.knob.key
    while key in declared:
        key = f"{section}.{misspell(leaf, chooser)}" if section else misspell(leaf, chooser)
    value = setting.knob.default if knob_kind(setting.knob) not in ("path", "null") else "5"
    override = f"{'+' if added else ''}{key}={value}"
    return Case(
        kind="added_key" if added else "typo_key",
        detail=f"{override} (for {setting.knob.key})",
        module="runner.train",
        arguments=overrides_line(setting.selection, [override]),
        work=work,
        expect=BAD,
        names=name_patterns(key, key.rsplit(".", 1)[-1]),
    )


def group_typo_case(catalogue: Catalogue, chooser: random.Random, work: Path) -> Case:
    """A typo'd group name: ``activaton=gelu``."""
    group = chooser.choice([group for group in catalogue.groups if not group.name.startswith("hydra")])
    names = {other.name for other in catalogue.groups}
    typo = group.name
    while typo in names:
        typo = misspell(group.name, chooser)
    option = chooser.choice(group.options).name
    override = f"{typo}={f'[{option}]' if group.is_list else option}"
    return Case(
        kind="typo_key",
        detail=f"{override} (for the group {group.name})",
        module="runner.train",
        arguments=overrides_line({}, [override]),
        work=work,
        expect=BAD,
        names=name_patterns(typo),
    )


def option_case(catalogue: Catalogue, chooser: random.Random, work: Path) -> Case:
    """An option that does not exist: ``activation=gleu``, ``regularizer=[l2,dropuot]``."""
    group = chooser.choice([group for group in catalogue.groups if not group.name.startswith("hydra")])
    options = {option.name for option in group.options}
    real = chooser.choice(sorted(options))
    typo = real
    while typo in options:
        typo = misspell(real, chooser)
    if group.is_list:
        chosen = f"[{typo}]" if chooser.random() < 0.5 else f"[{group.default.strip('[]')},{typo}]"
    else:
        chosen = typo
    override = f"{group.name}={chosen}"
    return Case(
        kind="option",
        detail=f"{override} (for {group.name}={real})",
        module="runner.train",
        arguments=overrides_line({}, [override]),
        work=work,
        expect=BAD,
        names=name_patterns(typo),
    )


def config_cases(catalogue: Catalogue, chooser: random.Random, count: int, place, fixtures: Fixtures) -> list[Case]:
    """``count`` cases of hostile command lines: mostly values, then typo'd keys and options that do not exist."""
    settings = settings_of(catalogue)
    declared = {setting.knob.key for setting in settings} | {knob.key for knob in catalogue.diagnose.knobs}
    cases = []
    for _ in range(count):
        draw = chooser.random()
        if draw < 0.70:
            cases.append(value_case(chooser.choice(settings), chooser, place("value"), fixtures))
        elif draw < 0.82:
            cases.append(typo_case(chooser.choice(settings), chooser, place("added_key"), declared, added=True))
        elif draw < 0.87:
            cases.append(typo_case(chooser.choice(settings), chooser, place("typo_key"), declared, added=False))
        elif draw < 0.90:
            cases.append(group_typo_case(catalogue, chooser, place("typo_key")))
        else:
            cases.append(option_case(catalogue, chooser, place("option")))
    return cases


# ------------------------------------------------------------------------------------------- damaging files


def edit_json(path: Path, change: Callable[[object], object]) -> None:
    path.write_text(json.dumps(change(json.loads(path.read_text())), indent=2))


def set_in(data: dict, keys: tuple[str, ...], value) -> dict:
    node = data
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value
    return data


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def replace_with(data: bytes | str) -> Callable[[Path], None]:
    def apply(path: Path) -> None:
        path.write_bytes(data.encode() if isinstance(data, str) else data)

    return apply


def json_edit(change: Callable[[dict], object]) -> Callable[[Path], None]:
    return lambda path: edit_json(path, change)


def tear_last_line(path: Path) -> None:
    text = path.read_text()
    path.write_text(text + text.splitlines()[-1][: len(text.splitlines()[-1]) // 2])


def append(text: str) -> Callable[[Path], None]:
    def apply(path: Path) -> None:
        with open(path, "a") as handle:
            handle.write(text)

    return apply


DEEP = "[" * 100_000  # nesting that no JSON parser should be asked to recurse into
GARBAGE_LINES = '\x00\xff not json\n[1, 2, 3]\n{"epoch": "banana", "test_acc": "x"}\n\n'


@dataclass(frozen=True)
class Damage:
    """One file of a run folder damaged in one way."""

    file: str  # relative to the run folder
    how: str
    apply: Callable[[Path], None]  # called with the file's path
    must_refuse: bool = False  # resuming an interrupted run with this damage must be refused
    also: tuple[str, Callable[[Path], None]] | None = None  # a second file damaged with it


def run_damages(fixtures: Fixtures, chooser: random.Random) -> list[Damage]:
    marker, victim = str(fixtures.marker), str(fixtures.victim)
    system = {"_target_": "os.system", "command": f"touch {marker}"}
    opener = {"_target_": "builtins.open", "file": victim, "mode": "w"}
    other_checkpoint = fixtures.other_checkpoint.read_bytes()
    yaml_tag = replace_with(f"hydra: !!python/object/apply:os.system ['touch {marker}']\n")
    return [
        # config.json: what a resume reads and builds from
        Damage("config.json", "truncated", truncate, True),
        Damage("config.json", "empty", replace_with(b""), True),
        Damage("config.json", "not JSON", replace_with("this is not JSON {"), True),
        Damage("config.json", "not UTF-8", replace_with(b"\xff\xfe\x00{\x81"), True),
        Damage("config.json", "a list", replace_with("[1, 2, 3]"), True),
        Damage("config.json", "nested 100,000 deep", replace_with(DEEP), True),
        Damage(
            "config.json",
            "an interpolation ${oc.env:HOME}",
            json_edit(lambda c: set_in(c, ("data", "name"), "${oc.env:HOME}")),
            True,
        ),
        Damage("config.json", "the whole file a _target_ os.system", replace_with(json.dumps(system)), True),
        Damage("config.json", "activation: _target_ os.system", json_edit(lambda c: {**c, "activation": system}), True),
        Damage(
            "config.json",
            "norm: _target_ builtins.open mode w on a victim",
            json_edit(lambda c: {**c, "norm": opener}),
            True,
        ),
        Damage(
            "config.json",
            "model.widths: a list holding _target_ os.system",
            json_edit(lambda c: set_in(c, ("model", "widths"), [system])),
            True,
        ),
        Damage(
            "config.json", "optimizer.lr a string", json_edit(lambda c: set_in(c, ("optimizer", "lr"), "banana")), True
        ),
        Damage(
            "config.json",
            "trainer.epochs NaN",
            json_edit(lambda c: set_in(c, ("trainer", "epochs"), float("nan"))),
            True,
        ),
        Damage("config.json", "model.widths a number", json_edit(lambda c: set_in(c, ("model", "widths"), 8)), True),
        Damage(
            "config.json",
            "the optimizer section missing",
            json_edit(lambda c: {k: v for k, v in c.items() if k != "optimizer"}),
            True,
        ),
        Damage("config.json", "trainer a list", json_edit(lambda c: {**c, "trainer": [1, 2]}), True),
        # checkpoint.pt: what a resume of an unfinished run loads
        Damage("checkpoint.pt", "truncated", truncate, True),
        Damage("checkpoint.pt", "zero bytes", replace_with(b""), True),
        Damage("checkpoint.pt", "random bytes", replace_with(chooser.randbytes(4096)), True),
        Damage("checkpoint.pt", "a plain pickle of a dict", replace_with(pickle.dumps({"model": "not weights"})), True),
        Damage(
            "checkpoint.pt", "a pickle that runs touch MARKER", replace_with(pickle.dumps(Touch(fixtures.marker))), True
        ),
        Damage(
            "checkpoint.pt",
            "torch.save of an object that runs touch MARKER",
            replace_with(fixtures.malicious_checkpoint.read_bytes()),
            True,
        ),
        Damage(
            "checkpoint.pt",
            "torch.save of a dict that is no checkpoint",
            replace_with(fixtures.foreign_checkpoint.read_bytes()),
            True,
        ),
        Damage("checkpoint.pt", "the checkpoint of another network", replace_with(other_checkpoint), True),
        # summary.json: what says whether the run finished
        Damage("summary.json", "truncated", truncate),
        Damage("summary.json", "not JSON", replace_with("not JSON {")),
        Damage("summary.json", "a list", replace_with("[]")),
        Damage("summary.json", "nested 100,000 deep", replace_with(DEEP)),
        Damage("summary.json", "status interrupted", json_edit(lambda s: {**s, "status": "interrupted"})),
        Damage("summary.json", "status a dict", json_edit(lambda s: {**s, "status": {"completed": True}})),
        # metrics.jsonl: the rows of the epochs
        Damage("metrics.jsonl", "a torn last line", tear_last_line),
        Damage("metrics.jsonl", "garbage lines", append(GARBAGE_LINES)),
        Damage("metrics.jsonl", "a line nested 100,000 deep", append(DEEP + "\n")),
        # .hydra/hydra.yaml: read when the summary cannot say which command started the run
        Damage(".hydra/hydra.yaml", "garbage", replace_with("::: not: yaml: [\n\t- {")),
        Damage(".hydra/hydra.yaml", "a YAML tag that runs touch MARKER", yaml_tag),
        Damage(
            "summary.json",
            "not JSON, and .hydra/hydra.yaml a YAML tag that runs touch MARKER",
            replace_with("not JSON"),
            also=(".hydra/hydra.yaml", yaml_tag),
        ),
        Damage(".hydra/hydra.yaml", "a list", replace_with("- 1\n- 2\n")),
    ]


def folder_case(fixtures: Fixtures, damage: Damage | None, state: str, again: bool, work: Path) -> Case:
    """A run folder (completed or interrupted) with one damaged file, then ``resume=FOLDER`` or the training
    command again in that folder with another seed (another config: it must be refused)."""
    template = fixtures.completed if state == "completed" else fixtures.interrupted
    folder = work / "run"

    def setup(_: Path) -> None:
        shutil.copytree(template, folder)
        if damage is not None:
            damage.apply(folder / damage.file)
            if damage.also is not None:
                damage.also[1](folder / damage.also[0])

    if again:
        arguments = overrides_line({}, ["seed=1", f"hydra.run.dir={folder}"])
        expect = BAD
    else:
        arguments = [f"resume={folder}"]
        expect = GOOD if damage is None else BAD if damage.must_refuse and state == "interrupted" else EITHER
    how = "intact" if damage is None else f"{damage.file} {damage.how}"
    command = "the same command again with seed=1" if again else "resume"
    return Case(
        kind="folder",
        detail=f"{how} ({state} run), {command}",
        module="runner.train",
        arguments=arguments,
        work=work,
        expect=expect,
        names=name_patterns(str(folder), *([Path(damage.file).name] if damage else [])),
        held=folder,
        setup=setup,
    )


def folder_cases(fixtures: Fixtures, chooser: random.Random, place) -> list[Case]:
    cases = []
    for state in ("completed", "interrupted"):
        cases.append(folder_case(fixtures, None, state, False, place("folder")))
        cases.append(folder_case(fixtures, None, state, True, place("folder")))
        for damage in run_damages(fixtures, chooser):
            cases.append(folder_case(fixtures, damage, state, False, place("folder")))
            if damage.file in ("config.json", "summary.json") or chooser.random() < 0.4:
                cases.append(folder_case(fixtures, damage, state, True, place("folder")))
    return cases


# ------------------------------------------------------------------------------------------- damaged data


def copy_images(fixtures: Fixtures, work: Path) -> Path:
    shutil.copytree(fixtures.images, work / "images", symlinks=True)
    return work / "images"


def png_header(width: int, height: int) -> bytes:
    """A whole PNG whose header claims ``width`` x ``height`` pixels, with a few bytes of image data: PIL opens it
    and meets the size (a decompression bomb) before it decodes anything."""
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


def archive_bytes(files: dict[str, bytes], links: dict[str, str] = (), mode: str = "w:gz") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for name, target in dict(links).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            archive.addfile(info)
    return buffer.getvalue()


def tree_files(fixtures: Fixtures) -> dict[str, bytes]:
    return {
        str(path.relative_to(fixtures.images)): path.read_bytes() for path in sorted(fixtures.images.rglob("*.png"))
    }


def data_damages(fixtures: Fixtures, chooser: random.Random) -> list[tuple[str, str, str, Callable[[Path], None]]]:
    """(expectation, what, root, make): ``make(work)`` builds the data, and data.root is ``work / root``."""
    archive = fixtures.archive.read_bytes()
    files = tree_files(fixtures)

    def in_folder(change: Callable[[Path], object]) -> Callable[[Path], None]:
        return lambda work: change(copy_images(fixtures, work))

    def as_file(data: bytes) -> Callable[[Path], None]:
        return lambda work: (work / "images.tar.gz").write_bytes(data)

    def link(path: Path, target: str) -> None:
        path.unlink(missing_ok=True)
        path.symlink_to(target)

    def flip_middle(data: bytes) -> bytes:
        middle = len(data) // 2
        return data[:middle] + bytes(255 - byte for byte in data[middle : middle + 64]) + data[middle + 64 :]

    def cache_of(data: bytes) -> Callable[[Path], None]:
        return in_folder(lambda images: (images / ".images.runner-cache.npz").write_bytes(data))

    def other_class(images: Path) -> None:
        (images / "test/bird").mkdir()
        Image.new("RGB", (32, 32)).save(images / "test/bird/0.png")

    def replace_class_folder(images: Path) -> None:
        shutil.rmtree(images / "train/cat")
        (images / "train/cat").write_text("not a folder\n")

    def image(name: str, data: bytes) -> Callable[[Path], None]:
        return in_folder(lambda images: (images / name).write_bytes(data))

    pickled_cache, stale_cache = io.BytesIO(), io.BytesIO()
    np.savez(pickled_cache, source_key=np.array([Touch(fixtures.marker)], dtype=object))
    np.savez(stale_cache, source_key=np.array("another tree"), train_images=np.zeros((1, 3, 4, 4), np.uint8))
    tricky_archive = archive_bytes(
        {**files, "../../escape.png": files["train/cat/0.png"]}, {"train/cat/passwd.png": "/etc/passwd"}
    )
    tree, gz = "images", "images.tar.gz"
    return [
        (GOOD, "a good image folder", tree, in_folder(lambda images: None)),
        (GOOD, "a good .tar.gz", gz, as_file(archive)),
        (GOOD, "a good uncompressed tar named .tar.gz", gz, as_file(archive_bytes(files, mode="w"))),
        (BAD, "images.tar.gz truncated to half", gz, as_file(archive[: len(archive) // 2])),
        (BAD, "images.tar.gz truncated to 100 bytes", gz, as_file(archive[:100])),
        (BAD, "images.tar.gz with 64 bytes flipped in the middle", gz, as_file(flip_middle(archive))),
        (BAD, "images.tar.gz random bytes", gz, as_file(chooser.randbytes(5000))),
        (BAD, "images.tar.gz a gzip of text", gz, as_file(gzip.compress(b"not a tar archive\n" * 100))),
        (EITHER, "images.tar.gz with ../ and symlink members", gz, as_file(tricky_archive)),
        (
            BAD,
            "train/cat/loop.png a symlink to itself",
            tree,
            in_folder(lambda d: link(d / "train/cat/loop.png", "loop.png")),
        ),
        (
            BAD,
            "train/cat/a.png and b.png links to each other",
            tree,
            in_folder(lambda d: (link(d / "train/cat/a.png", "b.png"), link(d / "train/cat/b.png", "a.png"))),
        ),
        (
            EITHER,
            "train/cat/again a symlink to its own folder",
            tree,
            in_folder(lambda d: link(d / "train/cat/again", ".")),
        ),
        (BAD, "data.root a symlink to itself", "loop", lambda work: (work / "loop").symlink_to(work / "loop")),
        (BAD, "train/cat/3.png not an image", tree, image("train/cat/3.png", b"hello\n")),
        (BAD, "train/cat/3.png zero bytes", tree, image("train/cat/3.png", b"")),
        (BAD, "train/cat/3.png truncated", tree, in_folder(lambda d: truncate(d / "train/cat/3.png", 0.4))),
        (BAD, "train/cat/3.png claims 100000x100000 pixels", tree, image("train/cat/3.png", png_header(10**5, 10**5))),
        (
            BAD,
            "train/dog/4.png a different size",
            tree,
            in_folder(lambda d: Image.new("RGB", (16, 16)).save(d / "train/dog/4.png")),
        ),
        (BAD, "test/bird/0.png a class with no training images", tree, in_folder(other_class)),
        (BAD, "images an empty folder", tree, lambda work: (work / "images").mkdir()),
        (BAD, "images without test/", tree, in_folder(lambda d: shutil.rmtree(d / "test"))),
        (EITHER, "train/cat a file", tree, in_folder(replace_class_folder)),
        (BAD, "data.root does not exist", "missing", lambda work: None),
        (GOOD, "images/.images.runner-cache.npz garbage", tree, cache_of(b"not a zip archive")),
        (
            GOOD,
            "images/.images.runner-cache.npz a pickle that runs touch MARKER",
            tree,
            cache_of(pickled_cache.getvalue()),
        ),
        (GOOD, "images/.images.runner-cache.npz of another tree", tree, cache_of(stale_cache.getvalue())),
    ]


def data_cases(fixtures: Fixtures, chooser: random.Random, place) -> list[Case]:
    cases = []
    for expect, what, root, make in data_damages(fixtures, chooser):
        work = place("data")
        files = re.findall(r"[\w./-]+\.(?:png|npz|tar\.gz)", what)
        cases.append(
            Case(
                kind="data",
                detail=what,
                module="runner.train",
                arguments=overrides_line({"data": "folder", "data.root": str(work / root)}),
                work=work,
                expect=expect,
                names=name_patterns("data.root", str(work / root), *files, *(Path(name).name for name in files)),
                setup=make,
            )
        )
    return cases


# ------------------------------------------------------------------------------------------- damaged records


def npy_bytes(descr: str, shape: tuple, payload: bytes, version: bytes = b"\x01\x00") -> bytes:
    """A .npy file with any header at all: ``np.save`` would not write a lying one."""
    header = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode()
    padding = (64 - (10 + len(header) + 1) % 64) % 64
    header += b" " * padding + b"\n"
    return b"\x93NUMPY" + version + struct.pack("<H", len(header)) + header + payload


def saved(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def record_damages(fixtures: Fixtures, chooser: random.Random) -> list[tuple[str, str, Callable[[Path], None]]]:
    """(file, how, apply) for the files ``ensemble`` and ``compare`` read."""
    logits_path = fixtures.completed / "test_logits.npy"
    logits = np.load(logits_path, allow_pickle=False)
    original = logits_path.read_bytes()
    nan_logits = logits.copy()
    nan_logits[0, 0] = np.nan
    archive = io.BytesIO()
    np.savez(archive, logits=logits)
    raw = logits.tobytes()
    return [
        (
            "test_logits.npy",
            "a header claiming 10^13 elements",
            replace_with(npy_bytes(logits.dtype.str, (10**12, 10), raw)),
        ),
        ("test_logits.npy", "a string dtype", replace_with(saved(np.array(["banana"] * 100)))),
        ("test_logits.npy", "truncated", truncate),
        ("test_logits.npy", "zero bytes", replace_with(b"")),
        ("test_logits.npy", "random bytes", replace_with(chooser.randbytes(2000))),
        (
            "test_logits.npy",
            "an object array pickling touch MARKER",
            replace_with(npy_bytes("|O", (1,), pickle.dumps(Touch(fixtures.marker)))),
        ),
        ("test_logits.npy", "an .npz archive", replace_with(archive.getvalue())),
        ("test_logits.npy", "format version 9", replace_with(original[:6] + b"\x09\x00" + original[8:])),
        (
            "test_logits.npy",
            "a header that is a list",
            replace_with(b"\x93NUMPY\x01\x00" + struct.pack("<H", 64) + b"[1, 2, 3]".ljust(63) + b"\n"),
        ),
        ("test_logits.npy", "a NaN", replace_with(saved(nan_logits))),
        ("test_logits.npy", "one dimension", replace_with(saved(logits.reshape(-1)))),
        ("test_logits.npy", "half the rows", replace_with(saved(logits[:50]))),
        ("test_labels.npy", "floats", replace_with(saved(np.linspace(0, 9, 100)))),
        ("test_labels.npy", "out of range", replace_with(saved(np.arange(100)))),
        (
            "test_labels.npy",
            "a header claiming 10^13 elements",
            replace_with(npy_bytes("<i8", (10**13,), b"\x00" * 800)),
        ),
        ("summary.json", "truncated", truncate),
        ("summary.json", "not JSON", replace_with("not JSON {")),
        ("summary.json", "a list", replace_with("[1, 2]")),
        ("summary.json", "empty", replace_with(b"")),
        ("summary.json", "nested 100,000 deep", replace_with(DEEP)),
        ("summary.json", "status a dict", json_edit(lambda s: {**s, "status": {"completed": True}})),
        ("summary.json", "test_acc a string", json_edit(lambda s: {**s, "test_acc": "banana", "best_test_acc": [1]})),
        (
            "summary.json",
            "test_acc NaN and 1e999",
            replace_with(original_summary_with(fixtures, '"test_acc": NaN, "best_test_acc": 1e999')),
        ),
        (
            "summary.json",
            "choices a string and overrides a dict",
            json_edit(lambda s: {**s, "choices": "x", "overrides": {"a": 1}}),
        ),
        ("metrics.jsonl", "garbage lines", append(GARBAGE_LINES)),
        ("metrics.jsonl", "a line nested 100,000 deep", append(DEEP + "\n")),
        (
            "metrics.jsonl",
            "epoch and test_acc strings",
            replace_with('{"epoch": "one", "test_acc": "high", "epoch_time_s": "x"}\n'),
        ),
    ]


def original_summary_with(fixtures: Fixtures, fields: str) -> str:
    summary = json.loads((fixtures.completed / "summary.json").read_text())
    for key in ("test_acc", "best_test_acc"):
        summary.pop(key, None)
    return "{" + fields + ", " + json.dumps(summary)[1:]


COMPARE_VARIANTS = [[], ["--format", "json"], ["--group-seeds"], ["--sort", "test_acc", "--metrics", "train_acc"]]


def records_case(fixtures: Fixtures, damage, command: str, variant: list[str], work: Path) -> Case:
    runs = work / "runs"

    def setup(_: Path) -> None:
        for name in ("a", "b"):
            shutil.copytree(fixtures.completed, runs / name, ignore=shutil.ignore_patterns("checkpoint.pt"))
        if damage is not None:
            damage[2](runs / "b" / damage[0])

    if command == "ensemble":
        arguments = [str(runs / "a"), str(runs / "b"), "--output", str(work / "ensemble.json")]
    else:
        arguments = [str(runs), *variant]
    reads = {"ensemble": ("test_logits.npy", "test_labels.npy"), "compare": ("summary.json", "metrics.jsonl")}
    if damage is None:
        expect = GOOD
    else:
        expect = BAD if command == "ensemble" and damage[0] in reads["ensemble"] else EITHER
    how = "intact" if damage is None else f"{damage[0]} {damage[1]}"
    return Case(
        kind="records",
        detail=f"{command} {' '.join(variant)}: run b's {how}".replace("  ", " "),
        module=f"runner.{command}",
        arguments=arguments,
        work=work,
        expect=expect,
        names=name_patterns(str(runs / "b"), *([damage[0]] if damage else [])),
        held=runs,
        read_only=True,
        setup=setup,
    )


def records_cases(fixtures: Fixtures, chooser: random.Random, place) -> list[Case]:
    cases = [records_case(fixtures, None, "ensemble", [], place("records"))]
    cases += [records_case(fixtures, None, "compare", variant, place("records")) for variant in COMPARE_VARIANTS]
    for damage in record_damages(fixtures, chooser):
        if damage[0] != "metrics.jsonl":
            cases.append(records_case(fixtures, damage, "ensemble", [], place("records")))
        if damage[0] != "test_labels.npy":
            cases.append(records_case(fixtures, damage, "compare", chooser.choice(COMPARE_VARIANTS), place("records")))
    return cases


# ------------------------------------------------------------------------------------------- judging a case


def snapshot(folder: Path | None) -> dict[str, str]:
    """Every entry of ``folder`` but the runner's bookkeeping, with a digest of its bytes (or its link target)."""
    if folder is None or not folder.exists():
        return {}
    entries = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if any(part in IGNORED for part in relative.parts):
            continue
        if path.is_symlink():
            entries[str(relative)] = "link to " + os.readlink(path)
        elif path.is_file():
            entries[str(relative)] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            entries[str(relative) + "/"] = "folder"
    return entries


def changes(before: dict[str, str], after: dict[str, str]) -> list[str]:
    changed = [f"changed {name}" for name in before if name in after and before[name] != after[name]]
    changed += [f"removed {name}" for name in before if name not in after]
    changed += [f"added {name}" for name in after if name not in before]
    return changed


def finished_runs(folder: Path | None) -> bool:
    """Whether ``folder`` holds a run whose intact summary says it has nothing left to train."""
    if folder is None:
        return False
    for path in [folder / "summary.json", *folder.glob("*/summary.json")]:
        try:
            if json.loads(path.read_text()).get("status") in FINISHED:
                return True
        except (OSError, ValueError, AttributeError, RecursionError):
            continue
    return False


def names_one(stderr: str, names: list[str]) -> bool:
    return any(re.search(rf"(?<![\w]){re.escape(name)}(?![\w])", stderr) for name in names)


WARNING_LINE = re.compile(r"^\S.*:\d+: \w*Warning: .*\n(?:[ \t]+\S.*\n)?", re.MULTILINE)


def paragraphs(text: str) -> int:
    """How many paragraphs the message has, not counting the warnings Python prints (a line and its source)."""
    message = WARNING_LINE.sub("", text + "\n")
    return len([block for block in re.split(r"\n\s*\n", message.strip()) if block.strip()])


def judge(case: Case, outcome: Outcome, changed: list[str], finished: bool, fixtures: Fixtures) -> dict:
    code, stderr = outcome.exit_code, outcome.stderr
    has_traceback = TRACEBACK in stderr
    clean = bool(stderr.strip()) and not has_traceback and (code != 2 or names_one(stderr, case.names))
    problems = []
    if code is None:
        problems.append(f"hung: killed after {outcome.seconds:.0f} s")
    elif code not in (0, 2):
        problems.append(f"exit code {code}, not 0 or 2")
    if has_traceback:
        problems.append("a Traceback on stderr")
    if code == 2 and not clean:
        problems.append("the refusal is no clean paragraph naming " + " or ".join(case.names))
    if code == 0 and case.expect == BAD:
        problems.append("a bad input was accepted (exit 0)")
    if code == 2 and case.expect == GOOD:
        problems.append("a good input was refused (exit 2)")
    violated = changed if changed and (code != 0 or finished or case.read_only) else []
    if violated:
        problems.append("an earlier record changed: " + ", ".join(violated[:6]))
    marker = fixtures.marker.exists()
    if marker:
        problems.append("the marker file appeared: code from a damaged file ran")
    victim_changed = fixtures.victim.read_bytes() != VICTIM_TEXT if fixtures.victim.exists() else True
    if victim_changed:
        problems.append("the victim file lost its bytes: code from a damaged file ran")
    return {
        "exit_code": code,
        "seconds": round(outcome.seconds, 2),
        "timed_out": code is None,
        "traceback": has_traceback,
        "clean_message": clean if code != 0 else None,
        "paragraphs": paragraphs(stderr),
        "records_changed": violated,
        "changes_after_accepted_start": changed if not violated else [],
        "marker": marker,
        "victim_changed": victim_changed,
        "passed": not problems,
        "problems": problems,
        "stderr_tail": "\n".join(stderr.rstrip().splitlines()[-5:]),
    }


def run_case(case: Case, fixtures: Fixtures, execute, timeout: float) -> dict:
    shutil.rmtree(case.work, ignore_errors=True)
    case.outputs.mkdir(parents=True)
    if case.setup is not None:
        case.setup(case.work)
    before, finished = snapshot(case.held), finished_runs(case.held)
    outcome = execute(case.module, case.arguments, case.work, timeout)
    verdict = judge(case, outcome, changes(before, snapshot(case.held)), finished, fixtures)
    fixtures.marker.unlink(missing_ok=True)  # so that the next case starts clean
    fixtures.victim.write_bytes(VICTIM_TEXT)
    return verdict


# ------------------------------------------------------------------------------------------- the whole run


def draw_cases(fixtures: Fixtures, chooser: random.Random, count: int, scratch: Path) -> list[Case]:
    """``count`` cases: the file cases, at most half of them (a seeded sample when there are more), and hostile
    command lines for the rest."""
    counter = iter(range(1_000_000))

    def place(kind: str) -> Path:
        return scratch / "cases" / f"{kind}-{next(counter):05d}"

    files = folder_cases(fixtures, chooser, place) + data_cases(fixtures, chooser, place)
    files += records_cases(fixtures, chooser, place)
    if len(files) > count // 2:
        files = chooser.sample(files, count // 2)
    cases = files + config_cases(read_catalogue(), chooser, count - len(files), place, fixtures)
    cases.sort(key=lambda case: (KINDS.index(case.kind), case.work.name))
    for number, case in enumerate(cases, start=1):
        case.number = number
    return cases


def counts_by_kind(records: list[dict]) -> list[dict]:
    rows = []
    for kind in [*KINDS, "all"]:
        chosen = [record for record in records if kind in (record["kind"], "all")]
        if not chosen:
            continue
        rows.append(
            {
                "kind": kind,
                "cases": len(chosen),
                "exit 0": sum(record["exit_code"] == 0 for record in chosen),
                "exit 2": sum(record["exit_code"] == 2 for record in chosen),
                "other exit": sum(record["exit_code"] not in (0, 2) for record in chosen),
                "tracebacks": sum(record["traceback"] for record in chosen),
                "records changed": sum(bool(record["records_changed"]) for record in chosen),
                "failures": sum(not record["passed"] for record in chosen),
            }
        )
    return rows


def report_failure(record: dict) -> None:
    print(
        f"FAIL #{record['case']} {record['kind']}: {record['detail']}\n"
        f"  command: {record['command']}\n"
        f"  exit {record['exit_code']}: {'; '.join(record['problems'])}",
        flush=True,
    )
    for line in record["stderr_tail"].splitlines():
        print(f"  | {line}", flush=True)


def source_fingerprint() -> str:
    """The size and time of every file of the runner's code and configs: other people edit them while this runs,
    and a forked child runs the code this process imported, not the code on disk."""
    digest = hashlib.sha256()
    for path in sorted([*Path(project_path("runner")).rglob("*.py"), *Path(project_path("conf")).rglob("*.yaml")]):
        with contextlib.suppress(OSError):
            stat = path.stat()
            digest.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def run_all(cases: list[Case], fixtures: Fixtures, arguments: argparse.Namespace, execute) -> list[dict]:
    """Every case, one after the other; a failing case once more in a fresh process, whose verdict is the final
    one: a fresh interpreter reads the runner's code as it is now, so a failure that does not repeat there was
    fixed under the fuzzer (or came from the fork)."""
    started, fingerprint, records = time.perf_counter(), source_fingerprint(), []
    for index, case in enumerate(cases, start=1):
        record = {"case": case.number, "kind": case.kind, "detail": case.detail, "command": case.command}
        record["expect"] = case.expect
        verdict = run_case(case, fixtures, execute, arguments.timeout)
        if not verdict["passed"] and not arguments.no_rerun:
            record["first_run"] = verdict
            verdict = run_case(case, fixtures, run_subprocess, arguments.timeout)
        records.append(record | verdict)
        if not verdict["passed"]:
            report_failure(records[-1])
        if arguments.verbose:
            print(
                f"#{case.number} {case.kind}: exit {verdict['exit_code']}, {'ok' if verdict['passed'] else 'FAIL'}: "
                f"{case.detail}",
                flush=True,
            )
        if execute is run_forked and fingerprint and source_fingerprint() != fingerprint:
            print(
                f"warning: runner/ or conf/ changed during case {case.number}: the forked cases from here on run "
                "the code imported at the start (a failing case is run again in a fresh process)",
                flush=True,
            )
            fingerprint = ""  # said once
        if execute is run_forked and not fingerprint:
            records[-1]["stale_code"] = True
        if index % 25 == 0:
            failed = sum(not record["passed"] for record in records)
            print(f"... {index}/{len(cases)} cases, {failed} failed, {time.perf_counter() - started:.0f} s", flush=True)
    return records


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=300, help="how many cases (default 300)")
    parser.add_argument("--seed", type=int, default=0, help="the seed of the case list")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds a case may run before it is killed")
    parser.add_argument("--subprocess", action="store_true", help="run every case as python -m ..., not forked")
    parser.add_argument("--sample", type=int, default=0, help="run only this many of the cases, a seeded sample")
    parser.add_argument("--only", default="", metavar="N,M,...", help="run only these cases of the list (numbers)")
    parser.add_argument("--verbose", action="store_true", help="print a line for every case, not only failures")
    parser.add_argument("--no-rerun", action="store_true", help="do not run failing cases again in a fresh process")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder of the cases")
    parser.add_argument("--save", default="fuzz", help="results file name in benchmarks/results ('' to not save)")
    return parser.parse_args()


def main() -> None:
    arguments = parse_arguments()
    execute = run_subprocess if arguments.subprocess else run_forked
    chooser = random.Random(arguments.seed)
    scratch = Path(tempfile.mkdtemp(prefix="fuzz-"))
    started = time.perf_counter()
    fixtures = make_fixtures(scratch, execute, arguments.timeout)
    cases = draw_cases(fixtures, chooser, arguments.cases, scratch)
    if arguments.sample:
        sample = random.Random(arguments.seed).sample(cases, min(arguments.sample, len(cases)))
        cases = sorted(sample, key=lambda case: case.number)
    if arguments.only:
        wanted = {int(number) for number in arguments.only.split(",")}
        cases = [case for case in cases if case.number in wanted]
    records = run_all(cases, fixtures, arguments, execute)
    wall_time = time.perf_counter() - started
    rows = counts_by_kind(records)
    print()
    print(table(rows, list(rows[0])))
    fixed = [record["case"] for record in records if "first_run" in record and record["passed"]]
    if fixed:
        print(f"failed in the first run, passed in a fresh process: cases {fixed}")
    # Refusals that pass (they name the file, no traceback) but run to several paragraphs.
    long = [record["case"] for record in records if record["exit_code"] == 2 and record["paragraphs"] > 1]
    if long:
        print(f"refusals of more than one paragraph: cases {long}")
    print(f"{len(records)} cases in {wall_time:.0f} s; seed {arguments.seed}")
    if arguments.save:
        results = {
            "device": device_name("cpu"),  # here, after the forks: it reads torch's thread count
            "seed": arguments.seed,
            "command": "python benchmarks/fuzz.py " + shlex.join(sys.argv[1:]),
            "mode": "subprocess" if arguments.subprocess else "fork",
            "wall_time_s": round(wall_time, 1),
            "counts": rows,
            "failures": [record for record in records if not record["passed"]],
            "passed_on_rerun": fixed,
            "long_refusals": long,
            "stale_code_cases": [record["case"] for record in records if record.get("stale_code")],
            "cases": records,
        }
        print(f"written: {save(arguments.save, results)}")
    if arguments.keep:
        print(f"scratch folder: {scratch}")
    else:
        shutil.rmtree(scratch, ignore_errors=True)
    sys.exit(1 if any(not record["passed"] for record in records) else 0)


if __name__ == "__main__":
    main()
