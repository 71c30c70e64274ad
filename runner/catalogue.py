"""The catalogue of options: what every YAML file in ``conf/`` offers, read from the files themselves.

Each option file says what it does in its header (the ``#`` lines at its top) and what its knobs mean in
inline comments. This module reads them with PyYAML and plain text parsing, without Hydra or torch, so that
the option reference ``docs/options.md`` (written by ``docs/make_options.py``) and the training command's
``--help`` stay fast and cannot disagree with ``conf/``:

    from runner.catalogue import read_catalogue, render_listing
    print(render_listing(read_catalogue()))      # group: option - description, one line each

Conventions of the files: a first header line ``# @package X`` is Hydra's directive (the option's knobs then
live under ``X``; without one, under the group's path; ``_global_`` files set keys anywhere, as recipes do);
a header line indented after its ``#`` is a command example; keys starting with ``_`` (``_target_``,
``_partial_``) are instructions to Hydra, not knobs.
"""

from __future__ import annotations

import difflib
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from runner.errors import USER_ERROR_EXIT

CONF = Path(__file__).resolve().parent.parent / "conf"

# What each group is about, in a few words; a group missing here is shown by its name alone.
GROUP_TITLES = {
    "data": "the data set",
    "model": "the network",
    "activation": "the nonlinearity of the hidden layers",
    "init": "weight initialization",
    "norm": "normalization layers",
    "preprocess": "input preprocessing, fitted on the training split",
    "regularizer": "regularization",
    "augmentation": "data augmentation in training",
    "optimizer": "the optimizer",
    "schedule": "the learning-rate schedule",
    "averaging": "weight averaging and snapshot ensembles",
    "tta": "test-time augmentation",
    "diagnostics": "babysitting statistics and warnings",
    "logger": "where the metrics go besides the run folder",
    "experiment": "recipes",
    "hparams_search": "hyper-parameter searches",
    "hydra/launcher": "how the jobs of a sweep run",
}
SWEEP_PREFIX = "hydra.sweeper.params."  # a recipe's keys under this are the values its -m sweep goes over


@dataclass(frozen=True)
class Knob:
    """A setting a user can override on the command line: ``key=default`` as the file has it."""

    key: str  # the dotted override path, e.g. regularizer.l2.weight_decay
    default: str  # the value in override syntax, e.g. 0.0005, [64,128,256], null
    comment: str = ""  # the inline comment on its line (and on the comment lines continuing it)


@dataclass(frozen=True)
class Option:
    """One YAML file of a group: ``group=name`` selects it."""

    group: str  # e.g. activation, hydra/launcher; "" for the top-level config files
    name: str  # its path inside the group's folder without .yaml, e.g. relu, lecture/activations
    package: str  # where its keys land: Hydra's @package directive or the group's path; "" for _global_
    header: tuple[str, ...]  # the header's lines without '#' and without the @package directive
    knobs: tuple[Knob, ...] = ()
    targets: tuple[str, ...] = ()  # what its _target_ keys name: the classes or functions implementing it
    picks: tuple[tuple[str, str], ...] = ()  # (group, choice) from its defaults list, e.g. ("model", "fastnet")
    bases: tuple[str, ...] = ()  # configs its defaults list builds on, e.g. lecture/ensembles
    # Inline comments on keys that hold other keys (``finetune:  # transfer learning``), by dotted key.
    section_comments: dict[str, str] = field(default_factory=dict)

    @property
    def description(self) -> str:
        return describe(self.header)

    @property
    def is_recipe(self) -> bool:
        """A ``_global_`` file sets keys anywhere in the config: an experiment or a search, not a component."""
        return self.package == ""


@dataclass(frozen=True)
class Group:
    name: str
    options: tuple[Option, ...]
    default: str | None = None  # the choice in config.yaml's defaults list as a command line writes it
    is_list: bool = False  # the defaults list gives a list (regularizer: [l2]): several options at once

    @property
    def is_recipes(self) -> bool:
        return all(option.is_recipe for option in self.options)

    @property
    def title(self) -> str:
        return GROUP_TITLES.get(self.name, "")


@dataclass(frozen=True)
class Catalogue:
    groups: tuple[Group, ...]  # in the order of config.yaml's defaults list, then the others by name
    settings: Option  # conf/config.yaml: its defaults list and the settings outside the groups
    diagnose: Option  # conf/diagnose.yaml: the diagnose.* settings of python -m runner.diagnose
    gradcheck: Option  # conf/gradcheck.yaml: the gradcheck.* settings of python -m runner.gradcheck


# ---------------------------------------------------------------------------------------------- reading


def is_example(line: str) -> bool:
    """A header line indented after its '#', like ``#   python -m runner.train ...``, is a command example."""
    return line.startswith("  ")


# A sentence ends at '.', '!' or '?' before a capital or at the end of a header line; "et al. 2016" and
# "e.g. Adam" do not end one.
SENTENCE_END = re.compile(r"[.!?](?:\n| +(?=[A-Z]))")
ABBREVIATIONS = (" i.e.", " e.g.", " et al.", " a.k.a.", " vs.", " cf.")
LONG, SHORTEST = 120, 20  # characters: a description longer than LONG is cut, but not to under SHORTEST


def describe(header: tuple[str, ...] | list[str]) -> str:
    """The one-line description: the first sentence of the header's prose before any command example."""
    prose = []
    for line in header:
        if is_example(line):
            break
        if line.strip():
            prose.append(line.strip() + ("\n" if line.strip().endswith(".") else ""))
    text = " ".join(prose)
    sentence = text
    for end in SENTENCE_END.finditer(text):
        if not text[: end.start() + 1].endswith(ABBREVIATIONS):
            sentence = text[: end.start() + 1]
            break
    sentence = " ".join(sentence.split())
    if len(sentence) > LONG:
        # One line should stay one line: a long sentence stops at its first clause break outside brackets
        # that leaves more than a title ("Lecture claim: ..." goes on to its next break).
        depth = 0
        for index, character in enumerate(sentence):
            depth += (character in "([") - (character in ")]")
            if depth == 0 and index >= SHORTEST and sentence.startswith((": ", "; "), index):
                sentence = sentence[:index]
                break
    # Without its final stop, as a listing shows it; a header leading into its examples ends with a colon.
    return sentence.rstrip(":").removesuffix(".")


def comment_start(text: str) -> int:
    """Where the comment of a line starts, or -1: a '#' inside quotes or glued to a word is part of the value."""
    quote = ""
    for index, character in enumerate(text):
        if quote:
            quote = "" if character == quote else quote
        elif character in "'\"":
            quote = character
        elif character == "#" and (index == 0 or text[index - 1].isspace()):
            return index
    return -1


def split_comment(text: str) -> tuple[str, str]:
    """``value  # comment`` -> (value, comment)."""
    start = comment_start(text)
    return (text.rstrip(), "") if start < 0 else (text[:start].rstrip(), text[start + 1 :].strip())


# A mapping key at the start of a line: "  weight_decay: 5e-4  # ..."; not a sequence item ("- l2").
KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[^\s#'\"-][^#]*?|\"[^\"]*\"|'[^']*'):(?:\s|$)")


def inline_comments(text: str) -> dict[tuple[str, ...], str]:
    """The inline comment of every key line, by the key's path. A comment-only line whose '#' is in the column
    of the comment above continues that comment: YAML has no other way to wrap one."""
    comments: dict[tuple[str, ...], str] = {}
    stack: list[tuple[int, str]] = []  # (indentation, key) of the mappings around the current line
    continued: tuple[tuple[str, ...], int] | None = None  # the path and '#' column the next line may continue
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") and continued and line.index("#") == continued[1]:
            comments[continued[0]] += " " + stripped[1:].strip()
            continue
        continued = None
        match = KEY_LINE.match(line)
        if not match:  # blank, a comment of its own, a sequence item or a wrapped value: no key here
            continue
        indent, key = len(match["indent"]), match["key"].strip("'\"")
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key))
        path = tuple(key for _, key in stack)
        start = comment_start(line)
        if start >= 0:
            comments[path] = line[start + 1 :].strip()
            continued = (path, start)
    return comments


def show(value: Any) -> str:
    """A value as a command line writes it: null, true, [64,128,256]."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ",".join(show(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{key}:{show(item)}" for key, item in value.items()) + "}"
    return str(value)


def leaves(mapping: dict, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """(path, value) of every setting in ``mapping``, skipping Hydra's own keys (``_target_``, ``_partial_``)."""
    for key, value in mapping.items():
        if str(key).startswith("_"):
            continue
        if isinstance(value, dict) and value:
            yield from leaves(value, (*path, str(key)))
        else:
            yield (*path, str(key)), value


def find_targets(value: Any) -> list[str]:
    """Every ``_target_`` in ``value``, outermost first."""
    if not isinstance(value, dict):
        return []
    found = [str(value["_target_"])] if "_target_" in value else []
    for item in value.values():
        found += find_targets(item)
    return found


def parse_option(text: str, group: str, name: str, skip: tuple[str, ...] = ("defaults",)) -> Option:
    """An option file's text -> its header, knobs and targets; ``skip`` names the top-level keys that hold no
    knobs (the defaults list; the ``hydra:`` block of the top-level configs)."""
    header = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        header.append(line[2:] if line.startswith("# ") else line[1:])
    package = group.replace("/", ".")  # Hydra's default package: the group's path
    if header and header[0].startswith("@package"):
        package = header.pop(0).split(maxsplit=1)[1].strip()
    package = "" if package == "_global_" else package
    prefix = (package,) if package else ()

    data = yaml.safe_load(text) or {}
    comments = inline_comments(text)
    settings = {key: value for key, value in data.items() if key not in skip}
    knobs = [Knob(".".join((*prefix, *path)), show(value), comments.get(path, "")) for path, value in leaves(settings)]
    leaf_paths = {path for path, _ in leaves(settings)}
    section_comments = {
        ".".join((*prefix, *path)): comment
        for path, comment in comments.items()
        if path[0] not in skip and path not in leaf_paths
    }
    picks, bases = [], []
    for entry in data.get("defaults") or []:
        if isinstance(entry, dict):
            picks += [(key.removeprefix("override ").lstrip("/"), show(value)) for key, value in entry.items()]
        elif entry != "_self_":
            bases.append(entry)
    return Option(
        group=group,
        name=name,
        package=package,
        header=tuple(header),
        knobs=tuple(knobs),
        targets=tuple(find_targets(settings)),
        picks=tuple(picks),
        bases=tuple(bases),
        section_comments=section_comments,
    )


def read_option(path: Path, conf: Path = CONF) -> Option:
    """The option file at ``path``. Its group is the nearest folder above it that holds option files itself:
    experiment/lecture/snapshot.yaml is the option lecture/snapshot of experiment, hydra/launcher/gpus.yaml the
    option gpus of hydra/launcher."""
    parts = path.relative_to(conf).with_suffix("").parts
    depth = next(depth for depth in range(1, len(parts)) if any(conf.joinpath(*parts[:depth]).glob("*.yaml")))
    return parse_option(path.read_text(), "/".join(parts[:depth]), "/".join(parts[depth:]))


def read_catalogue(conf: Path = CONF) -> Catalogue:
    """Every option of every group under ``conf``, and the settings of its two top-level files."""
    settings = parse_option((conf / "config.yaml").read_text(), "", "config", skip=("defaults", "hydra"))
    diagnose = parse_option((conf / "diagnose.yaml").read_text(), "", "diagnose", skip=("defaults", "hydra"))
    gradcheck = parse_option((conf / "gradcheck.yaml").read_text(), "", "gradcheck", skip=("defaults", "hydra"))
    found: dict[str, list[Option]] = {}
    for path in sorted(conf.rglob("*.yaml")):
        # conf/claims/ holds the lectures' claims (runner.claims), not options of the training command.
        if path.parent != conf and path.relative_to(conf).parts[0] != "claims":
            option = read_option(path, conf)
            found.setdefault(option.group, []).append(option)
    defaults = dict(settings.picks)
    order = [group for group in defaults if group in found] + sorted(set(found) - set(defaults))
    groups = tuple(
        Group(
            name=group,
            # The group's own files first, then those of its subfolders (experiment's lecture/...).
            options=tuple(sorted(found[group], key=lambda option: (option.name.count("/"), option.name))),
            default=defaults.get(group),
            is_list=defaults.get(group, "").startswith("["),
        )
        for group in order
    )
    return Catalogue(groups=groups, settings=settings, diagnose=diagnose, gradcheck=gradcheck)


# -------------------------------------------------------------------------------------------- rendering


def render_listing(catalogue: Catalogue | None = None) -> str:
    """A compact plain-text listing, one ``group: option - description`` line per option (for ``--help``)."""
    catalogue = catalogue or read_catalogue()
    lines = [
        f"{group.name}: {option.name} - {option.description}" for group in catalogue.groups for option in group.options
    ]
    return "\n".join(lines) + "\n"


EXAMPLES = """\
  python -m runner.train data.subset=2000 data.test_subset=1000 trainer.epochs=1   # a first try, a minute on a CPU
  python -m runner.train experiment=cpu_quick                 # a real result in minutes on a CPU
  python -m runner.train activation=gelu init=kaiming         # pick options
  python -m runner.train regularizer=[l2,dropout] regularizer.dropout.p=0.3     # list groups and their knobs
  python -m runner.train -m activation=relu,gelu seed=0,1,2   # a sweep: every combination
  python -m runner.compare outputs/multirun/<date>/<time> --group-seeds         # compare a sweep's runs
  python -m runner.train --cfg job activation=selu            # print the composed config, train nothing
  python -m runner.train resume=outputs/runs/<date>/<time>    # continue an interrupted run"""

# Launchers of Hydra's plugins (the [sweep] extra) besides the project's own in conf/hydra/launcher.
PLUGIN_LAUNCHERS = {
    "basic": "one job after another (the default)",
    "joblib": "several jobs at once on this machine (hydra.launcher.n_jobs=N)",
    "submitit_local": "the jobs through submitit on this machine, to try a cluster's settings",
    "submitit_slurm": "each job as a SLURM job (hydra.launcher.partition=...)",
}


def render_help(catalogue: Catalogue | None = None) -> str:
    """The training command's ``--help``: examples, every option of every group with its one line, the
    launchers; Hydra's own flags follow (``$FLAGS_HELP`` in Hydra's help template)."""
    catalogue = catalogue or read_catalogue()
    lines = [
        "python -m runner.train: train a network on CIFAR-10; every choice the lectures teach is a config group.",
        "",
        EXAMPLES,
        "",
        "Groups and their options (group=option; * the default; every knob: docs/options.md):",
    ]
    for group in catalogue.groups:
        if group.name.startswith("hydra"):
            continue
        default = (group.default or "").strip("[]")
        lines.append(f"  {group.name}{': ' + group.title if group.title else ''}")
        for option in group.options:
            mark = "*" if option.name in default.split(",") else " "
            lines.append(f"    {mark} {option.name:<22} {option.description}")
    lines += ["", "Launchers for sweeps (-m hydra/launcher=NAME):"]
    launchers = dict(PLUGIN_LAUNCHERS)
    for group in catalogue.groups:
        if group.name == "hydra/launcher":
            launchers.update((option.name, option.description) for option in group.options)
    lines += [f"    {name:<24} {text}" for name, text in launchers.items()]
    lines += ["", "Settings outside the groups: trainer.*, data.*, seed, resume (conf/config.yaml)."]
    # Hydra fills $FLAGS_HELP in, reading the text as a string.Template: any other $ must be doubled.
    return "\n".join(lines).replace("$", "$$") + "\n\nHydra's own flags:\n$FLAGS_HELP"


def override_problems(arguments: list[str], catalogue: Catalogue | None = None) -> list[str]:
    """Mistyped keys and options on a command line, each with the nearest valid names ("did you mean
    trainer.epochs?"), before Hydra composes anything: a group's unknown option, and a key no file of
    ``conf/`` declares when a declared one is close. Keys added with ``+`` are checked once composed
    (``runner.validate``); anything else unknown is left to Hydra's own message."""
    catalogue = catalogue or read_catalogue()
    groups = {group.name: group for group in catalogue.groups}
    commands = (catalogue.settings, catalogue.diagnose, catalogue.gradcheck)
    keys = {knob.key for option in commands for knob in option.knobs}
    keys.update(knob.key for group in catalogue.groups for option in group.options for knob in option.knobs)
    if any(argument.startswith(("hydra.searchpath", "--config-dir", "-cd")) for argument in arguments):
        return []  # options may come from config folders of the user's own, which this catalogue does not read
    problems = []
    for argument in arguments:
        key, equals, value = argument.partition("=")
        if not equals or argument.startswith("-") or key.startswith(("+", "~", "hydra")):
            continue
        key = key.split("@", 1)[0]
        if key in groups:
            names = [option.name for option in groups[key].options]
            for wanted in re.split(r"[,\[\]]", value):
                wanted = wanted.strip()
                if wanted and "(" not in value and wanted not in names and wanted != "null":
                    problems.append(
                        f"{key}={wanted}: no such option{nearest(wanted, names)}. The options: {', '.join(names)}."
                    )
        elif "." not in key and key not in keys:
            # Neither a group nor a setting outside the groups: a group's name mistyped (optimizers=adam).
            problems.append(f"{key}: no such group or setting{nearest(key, [*groups, *keys])}.")
        elif key not in keys and "." in key and not key.rsplit(".", 1)[-1].startswith("_"):
            hint = nearest(key, keys)
            if hint:
                problems.append(f"{key}: no such setting{hint}.")
    return problems


def refuse_mistyped(arguments: list[str]) -> None:
    """Exit with code 2 and the nearest valid names when ``override_problems`` finds a mistyped key or option:
    the first thing each command (train, diagnose, gradcheck) does, before Hydra composes anything."""
    problems = override_problems(arguments)
    if problems:
        print("\n" + "\n".join(problems) + "\n", file=sys.stderr)
        sys.exit(USER_ERROR_EXIT)


def nearest(name: str, candidates) -> str:
    """ " (did you mean gelu?)" for a near miss, else nothing."""
    close = difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""


def escape(text: str) -> str:
    """Text for a Markdown table cell: '|' escaped everywhere; outside code spans also '<' (it would open an
    HTML tag and hide "<date>"), '~' (two would strike through the text between them), and the '*' and '_'
    that could start emphasis (not "x * y" or "batch_size")."""
    pieces = text.split("`")
    for index in range(0, len(pieces), 2):  # the even pieces lie outside code spans
        piece = pieces[index].replace("<", "&lt;").replace("~", "\\~")
        piece = re.sub(r"(?<! )\*|\*(?! )", r"\\*", piece)
        pieces[index] = re.sub(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])", r"\\_", piece)
    return "`".join(pieces).replace("|", "\\|")


def code(text: str) -> str:
    return f"`{text}`"


def header_blocks(header: tuple[str, ...]) -> list[tuple[bool, str]]:
    """The header as (is_example, text) blocks: prose lines joined into paragraphs, each command example a block
    of its own (with the lines it continues with a trailing backslash)."""
    blocks: list[tuple[bool, str]] = []
    for line in header:
        example, text = is_example(line), line.strip()
        if not text:
            blocks.append((False, ""))  # a blank comment line ends a paragraph
        elif blocks and blocks[-1][1] and blocks[-1][0] == example and (not example or blocks[-1][1].endswith("\\")):
            blocks[-1] = (example, blocks[-1][1].removesuffix("\\").rstrip() + " " + text)
        else:
            blocks.append((example, text))
    return [block for block in blocks if block[1]]


def header_cell(header: tuple[str, ...]) -> str:
    """The header in one table cell: its paragraphs and examples on lines of their own."""
    lines = []
    for example, text in header_blocks(header):
        command, comment = split_comment(text) if example else (text, "")
        lines.append(escape(code(command) + (f" ({comment})" if comment else "")) if example else escape(text))
    return "<br>".join(lines)


def what_it_is(option: Option) -> str:
    cell = header_cell(option.header)
    if option.targets:
        cell += "<br>Implemented by " + ", ".join(code(target) for target in option.targets) + "."
    return cell


def knobs_cell(option: Option) -> str:
    if not option.knobs:
        return "no knobs"
    lines = [
        code(f"{knob.key}={knob.default}") + (f": {knob.comment}" if knob.comment else "") for knob in option.knobs
    ]
    return "<br>".join(escape(line) for line in lines)


def recipe_cell(option: Option) -> str:
    """What a recipe sets: what it builds on, the options it picks and its knobs, then what it sweeps over."""
    settings = [code(f"{group}={choice}") for group, choice in option.picks]
    settings += [code(f"{knob.key}={knob.default}") for knob in option.knobs if not knob.key.startswith(SWEEP_PREFIX)]
    sweeps = [
        code(knob.key.removeprefix(SWEEP_PREFIX) + "=" + knob.default)
        for knob in option.knobs
        if knob.key.startswith(SWEEP_PREFIX)
    ]
    lines = [f"on top of {', '.join(code(base) for base in option.bases)}"] if option.bases else []
    lines += [", ".join(settings)] if settings else []
    lines += [f"sweeps {', '.join(sweeps)}"] if sweeps else []
    return "<br>".join(escape(line) for line in lines)


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def group_intro(group: Group) -> str:
    name, knob = group.name, group.name.replace("/", ".")
    title = group.title[:1].upper() + group.title[1:] + ". " if group.title else ""
    if group.is_recipes:
        chosen = f"default {code(f'{name}={group.default}')}" if group.default not in (None, "null") else "none"
        return (
            f"{title}`{name}=NAME` sets the options and knobs listed beside it at once ({chosen} by default); "
            "overrides on the command line still apply over them, and with `-m` a recipe that sweeps runs its sweep."
        )
    chosen = f"default {code(f'{name}={group.default}')}" if group.default else "none chosen by default"
    if group.is_list:
        return (
            f"{title}A list, {chosen}: `{name}=[A,B]` applies several options, `{name}=[none]` none. "
            f"Each entry's knobs live under its own name, `{knob}.ENTRY.KEY=VALUE`: the keys below."
        )
    return f"{title}One option at a time, {chosen}: pick one with `{name}=NAME`, set a knob with `{knob}.KEY=VALUE`."


def group_table(group: Group) -> list[str]:
    if group.is_recipes:
        lines = ["| recipe | what it is | what it sets |", "|---|---|---|"]
        return lines + [
            f"| {code(option.name)} | {what_it_is(option)} | {recipe_cell(option)} |" for option in group.options
        ]
    chosen = (group.default or "").strip("[]").split(",")
    lines = ["| option | what it is | knobs (defaults) |", "|---|---|---|"]
    for option in group.options:
        marker = " (default)" if option.name in chosen else ""
        lines.append(f"| {code(option.name)}{marker} | {what_it_is(option)} | {knobs_cell(option)} |")
    return lines


def settings_table(option: Option) -> list[str]:
    """The settings of a top-level config file, each section's comment on a row of its own before its keys."""
    lines = ["| setting | default | what it does |", "|---|---|---|"]
    shown: set[str] = set()
    for knob in option.knobs:
        section = knob.key.rpartition(".")[0]
        if section in option.section_comments and section not in shown:
            shown.add(section)
            lines.append(f"| {code(section + '.*')} | | {escape(option.section_comments[section])} |")
        lines.append(f"| {code(knob.key)} | {escape(code(knob.default))} | {escape(knob.comment)} |")
    return lines


INTRO = (
    "This page is generated from the headers and inline comments of the YAML files in `conf/` by "
    "`python docs/make_options.py`: do not edit it by hand; edit the YAML comments and run the script again "
    "(the tests fail while this page and `conf/` disagree). Each group below is a folder of `conf/` and each of "
    "its options a file in it. Pick an option with `group=option`, as in `activation=gelu`; the list groups take "
    "several at once, `regularizer=[l2,dropout]`. Set a knob with `group.key=value`, as in `optimizer.lr=0.05`; "
    "the knobs of a list entry live under its name, `regularizer.l2.weight_decay=1e-4`. Sweep with `-m`: "
    "`python -m runner.train -m activation=relu,gelu init=xavier,kaiming` trains 4 runs, and "
    "`python -m runner.train --cfg job activation=selu` prints the composed config without training."
)


def render_markdown(catalogue: Catalogue | None = None) -> str:
    """The whole catalogue as Markdown: the content of docs/options.md."""
    catalogue = catalogue or read_catalogue()
    settings, diagnose, gradcheck = (
        "Settings outside the groups",
        "python -m runner.diagnose",
        "python -m runner.gradcheck",
    )
    contents = [f"[{settings.lower()}](#{slug(settings)})"]
    contents += [f"[{group.name}](#{slug(group.name)})" for group in catalogue.groups]
    contents += [f"[{title}](#{slug(title)})" for title in (diagnose, gradcheck)]
    lines = ["# Options", "", INTRO, "", "Contents: " + " · ".join(contents), ""]

    lines += [
        f"## {settings}",
        "",
        "The option each group starts from, in the defaults list of `conf/config.yaml`:",
        "",
    ]
    lines += ["| group | default | about |", "|---|---|---|"]
    for group in catalogue.groups:
        chosen = code(f"{group.name}={group.default}") if group.default not in (None, "null") else "none"
        lines.append(f"| [{group.name}](#{slug(group.name)}) | {escape(chosen)} | {escape(group.title)} |")
    lines += ["", "The other settings of `conf/config.yaml`, set with `key=value` like a knob:", ""]
    lines += settings_table(catalogue.settings)
    lines.append("")

    for group in catalogue.groups:
        lines += [f"## {group.name}", "", group_intro(group), ""]
        lines += group_table(group)
        lines.append("")

    for title, option in ((diagnose, catalogue.diagnose), (gradcheck, catalogue.gradcheck)):
        lines += [f"## {title}", "", header_cell(option.header).replace("<br>", " "), ""]
        lines += settings_table(option)
        lines.append("")
    return "\n".join(lines[:-1]) + "\n"
