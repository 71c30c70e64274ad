"""The checks of the composed config, before any work starts: every value against its declared rule, every
setting against what reads it, and the network, optimizer and schedule built on the meta device.

Hydra already rejects unknown options and keys that were not added with ``+``; this catches values a run
cannot use (a negative learning rate, a dropout probability of 1.5, a ResNet depth that is not 6n + 2) and
settings nothing reads, and names the full key, the value and what is allowed, instead of failing minutes
later deep inside PyTorch. Every numeric or enumerated setting in ``conf/`` has its rule in ``RULES``
(``tests/test_validate.py`` walks every key of every YAML file to keep it so).
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
import re
from collections.abc import Callable

import torch
from hydra.errors import InstantiationException
from hydra.utils import get_object
from omegaconf import DictConfig, ListConfig, OmegaConf

from runner.catalogue import read_catalogue
from runner.device import AUTOCAST_TYPES
from runner.errors import (
    RunnerError,
    boolean,
    is_number,
    list_of,
    non_negative,
    not_allowed,
    one_of,
    optional,
    positive,
    probability,
    probability_below_one,
    whole_at_least,
)
from runner.optim import LEARNING_RATE_ADJUSTMENTS, SCALING_RULES, build_optimizer
from runner.run import make


def between(low: float, high: float, low_open: bool = False, high_open: bool = False) -> Callable:
    """A finite number in the interval from ``low`` to ``high``, each end open or closed."""

    def rule(value) -> bool:
        if not is_number(value):
            return False
        above = value > low if low_open else value >= low
        below = value < high if high_open else value <= high
        return above and below

    return rule


def ordered_pair(rule: Callable) -> Callable:
    """Two values, each passing ``rule``, the first at most the second (a range such as [0.35, 1.0])."""
    return lambda value: list_of(rule, length=2)(value) and value[0] <= value[1]


WHOLE = whole_at_least(1)
OPEN_UNIT = between(0, 1, low_open=True, high_open=True)
DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
METRICS = ("test_acc", "best_test_acc", "val_acc", "train_acc", "test_loss", "val_loss", "train_loss")
SUMMARY_METRICS = (*METRICS, "ema_test_acc", "ema_val_acc", "snapshot_ensemble_acc")

# (key pattern, rule, what is allowed). Patterns use fnmatch on the full dotted key; the first match decides.
RULES: list[tuple[str, Callable, str]] = [
    # Settings outside the groups (conf/config.yaml, conf/diagnose.yaml).
    ("seed", whole_at_least(0), "a whole number >= 0"),
    ("optimized_metric", one_of(*SUMMARY_METRICS), "one of " + ", ".join(SUMMARY_METRICS)),
    ("trainer.epochs", whole_at_least(0), "a whole number >= 0 (0 builds everything and trains nothing)"),
    ("trainer.time_budget", optional(positive), "null (off) or a number of seconds > 0"),
    ("trainer.device", lambda v: isinstance(v, str) and DEVICE.fullmatch(v), "auto, cpu, mps, cuda or cuda:N"),
    ("trainer.precision", one_of("auto", *AUTOCAST_TYPES), "one of auto, " + ", ".join(AUTOCAST_TYPES)),
    ("trainer.device_warmup", lambda v: v == "auto" or boolean(v), "one of auto, true, false"),
    ("trainer.eval_batch_size", lambda v: v == "auto" or WHOLE(v), "auto or a whole number >= 1"),
    ("trainer.threads", lambda v: v == "auto" or WHOLE(v), "auto or a whole number >= 1"),
    ("trainer.log_every", WHOLE, "a whole number >= 1"),
    ("trainer.eval_every", WHOLE, "a whole number >= 1"),
    ("trainer.checkpoint_every", WHOLE, "a whole number >= 1"),
    ("trainer.divergence_factor", lambda v: is_number(v) and v > 1, "a factor > 1"),
    ("trainer.*", boolean, "true or false"),  # channels_last, compile, progress, auto_resume
    ("finetune.freeze", one_of("none", "backbone"), "one of none, backbone"),
    ("finetune.new_head", lambda v: v == "auto" or boolean(v), "auto, true or false"),
    ("finetune.head_lr_multiplier", positive, "a number > 0"),
    ("sweep.*", WHOLE, "a whole number >= 1"),
    ("diagnose.input", one_of("gaussian", "data"), "gaussian or data"),
    ("diagnose.figure", boolean, "true or false"),
    ("diagnose.loss_tolerance", positive, "a tolerance > 0"),
    ("diagnose.overfit", whole_at_least(0), "a whole number >= 0 (0: no overfitting check)"),
    ("diagnose.*", WHOLE, "a whole number >= 1"),  # batch_size, histogram_values, overfit_steps
    # data
    ("data.source", one_of("cifar10", "folder", "synthetic"), "cifar10, folder or synthetic"),
    ("data.batch_size", WHOLE, "a whole number >= 1"),
    ("data.subset", optional(WHOLE), "null or a whole number >= 1"),
    ("data.test_subset", optional(WHOLE), "null or a whole number >= 1"),
    ("data.val_size", whole_at_least(0), "a whole number >= 0"),
    ("data.num_classes", whole_at_least(2), "a whole number >= 2"),
    ("data.image_size", lambda v: whole_at_least(4)(v) and v % 4 == 0, "a multiple of 4, at least 4"),
    ("data.noise", non_negative, "a pixel noise >= 0"),
    ("data.generator_seed", whole_at_least(0), "a whole number >= 0"),
    ("data.*_size", WHOLE, "a whole number >= 1"),  # train_size, test_size
    # activation
    ("activation.approximate", one_of("none", "tanh"), "none or tanh"),
    ("activation.init", is_number, "a number (the slope a PReLU starts from)"),
    ("activation.negative_slope", non_negative, "a slope >= 0"),
    ("activation.num_parameters", WHOLE, "a whole number >= 1"),
    ("activation.pieces", WHOLE, "a whole number >= 1"),
    ("activation.*", positive, "a number > 0"),  # alpha, beta, threshold
    # init
    ("init.mode", one_of("fan_in", "fan_out", "fan_avg"), "fan_in, fan_out or fan_avg"),
    ("init.distribution", one_of("normal", "uniform"), "normal or uniform"),
    ("init.bias", optional(is_number), "null (keep each layer's) or a number"),
    ("init.gain", optional(positive), "null (the activation's gain) or a gain > 0"),
    ("init.value", is_number, "a number"),
    ("init.epsilon", non_negative, "an epsilon >= 0"),
    ("init.max_iterations", WHOLE, "a whole number >= 1"),
    ("init.std", positive, "a standard deviation > 0"),
    ("init.tolerance", positive, "a tolerance > 0"),
    ("init.*", boolean, "true or false"),  # freeze, freeze_bias, identity, zero_residual
    # norm
    ("norm.eps", positive, "an epsilon > 0"),
    ("norm.momentum", optional(probability), "null (a cumulative average) or a momentum in [0, 1]"),
    ("norm.groups", WHOLE, "a whole number >= 1"),
    ("norm.lr_multiplier", positive, "a learning-rate multiplier > 0"),
    ("norm.learn_scale", boolean, "true or false"),
    # preprocess
    ("preprocess.epsilon", non_negative, "an epsilon >= 0"),
    # model
    ("model.depth", whole_at_least(0), "a whole number >= 0"),
    ("model.hidden_layers", whole_at_least(0), "a whole number >= 0"),
    ("model.compression", between(0, 1, low_open=True), "a compression in (0, 1]"),
    ("model.head_scale", positive, "a scale > 0"),
    ("model.bottleneck", boolean, "true or false"),
    ("model.residual", boolean, "true or false"),
    ("model.convs_per_stage", lambda v: WHOLE(v) or list_of(WHOLE)(v), "a whole number >= 1, or a list of them"),
    ("model.widths", list_of(WHOLE), "a list of whole numbers >= 1"),
    ("model.blocks", list_of(WHOLE), "a list of whole numbers >= 1"),
    ("model.*", WHOLE, "a whole number >= 1"),  # width, growth, hidden, stem_kernel, stem_width, widen_factor
    # regularizer
    ("regularizer.*.weight_decay", non_negative, "a weight decay >= 0"),
    ("regularizer.*.strength", non_negative, "a strength >= 0"),
    ("regularizer.*.l1", non_negative, "a strength >= 0"),
    ("regularizer.*.l2", non_negative, "a strength >= 0"),
    ("regularizer.*.p", probability_below_one, "a drop probability in [0, 1)"),
    ("regularizer.*.smoothing", probability_below_one, "a smoothing in [0, 1)"),
    ("regularizer.*.survival_last", between(0, 1, low_open=True), "a survival probability in (0, 1]"),
    ("regularizer.*.output_ratio", OPEN_UNIT, "a ratio in (0, 1)"),
    ("regularizer.*.kernel_size", WHOLE, "a whole number >= 1"),
    ("regularizer.*.test_samples", WHOLE, "a whole number >= 1"),
    ("regularizer.*.layer.mode", one_of("row", "batch"), "row or batch"),
    ("regularizer.*", boolean, "true or false"),  # include_all, decay_all, decoupled, spatial
    # augmentation
    ("augmentation.*.probability", probability, "a probability in [0, 1]"),
    ("augmentation.*.padding", whole_at_least(0), "a whole number of pixels >= 0"),
    ("augmentation.*.padding_mode", one_of("constant", "reflect"), "constant or reflect"),
    ("augmentation.*.size", WHOLE, "a whole number of pixels >= 1"),
    ("augmentation.*.alpha", positive, "an alpha > 0"),
    ("augmentation.*.translation", probability, "a fraction of the image size in [0, 1]"),
    ("augmentation.*.rotation", between(0, 180), "degrees in [0, 180]"),
    ("augmentation.*.shear", between(0, 90, high_open=True), "degrees in [0, 90)"),
    ("augmentation.*.stretch", probability_below_one, "a fraction in [0, 1)"),
    ("augmentation.*.strength", between(0, 1), "a strength in [0, 1]"),
    ("augmentation.*.scale", ordered_pair(between(0, 1, low_open=True)), "two area fractions in (0, 1], low first"),
    ("augmentation.*.ratio", ordered_pair(positive), "two aspect ratios > 0, low first"),
    ("augmentation.*.alternate", boolean, "true or false"),
    ("augmentation.*.inside", boolean, "true or false"),
    ("augmentation.*", non_negative, "a number >= 0"),  # brightness, contrast, saturation, std
    # optimizer
    ("optimizer.lr", positive, "a learning rate > 0"),
    ("optimizer.momentum", probability_below_one, "a momentum in [0, 1)"),
    ("optimizer.alpha", probability_below_one, "a smoothing constant in [0, 1)"),
    ("optimizer.betas", list_of(probability_below_one, length=2), "two betas in [0, 1)"),
    ("optimizer.eps", positive, "an epsilon > 0"),
    ("optimizer.weight_decay", non_negative, "a weight decay >= 0"),
    ("optimizer.scale_lr", one_of(*SCALING_RULES), " or ".join(SCALING_RULES)),
    ("optimizer.nesterov", boolean, "true or false"),
    # optimizer=muon: Muon's own settings, and those of its second optimizer (optimizer.other)
    ("optimizer.ns_steps", lambda v: WHOLE(v) and v < 100, "a whole number of Newton-Schulz steps in [1, 99]"),
    (
        "optimizer.adjust_lr_fn",
        optional(one_of(*LEARNING_RATE_ADJUSTMENTS)),
        "null or one of " + ", ".join(LEARNING_RATE_ADJUSTMENTS),
    ),
    ("optimizer.normalize_weights", boolean, "true or false"),
    ("optimizer.other.lr", positive, "a learning rate > 0"),
    ("optimizer.other.momentum", probability_below_one, "a momentum in [0, 1)"),
    ("optimizer.other.alpha", probability_below_one, "a smoothing constant in [0, 1)"),
    ("optimizer.other.betas", list_of(probability_below_one, length=2), "two betas in [0, 1)"),
    ("optimizer.other.eps", positive, "an epsilon > 0"),
    ("optimizer.other.weight_decay", non_negative, "a weight decay >= 0"),
    ("optimizer.other.nesterov", boolean, "true or false"),
    # schedule
    ("schedule.warmup_epochs", non_negative, "a number of epochs >= 0"),
    ("schedule.anneal", one_of("cos", "linear"), "cos or linear"),
    ("schedule.factor", OPEN_UNIT, "a factor in (0, 1)"),
    ("schedule.final", probability, "a fraction of the base rate in [0, 1]"),
    ("schedule.milestone_fractions", list_of(OPEN_UNIT), "a list of fractions of the run in (0, 1)"),
    ("schedule.peak_fraction", OPEN_UNIT, "a fraction of the run in (0, 1)"),
    ("schedule.cycle_momentum", boolean, "true or false"),
    ("schedule.*_momentum", probability_below_one, "a momentum in [0, 1)"),  # base_momentum, max_momentum
    ("schedule.patience", whole_at_least(0), "a whole number of epochs >= 0"),
    ("schedule.cooldown", whole_at_least(0), "a whole number of epochs >= 0"),
    ("schedule.threshold", non_negative, "a threshold >= 0"),
    ("schedule.min_lr", non_negative, "a learning rate >= 0"),
    ("schedule.*", positive, "a number > 0"),  # cycle_epochs, step_epochs, timescale_epochs, divisions, multiplier
    # averaging
    ("averaging.*.decay", OPEN_UNIT, "a decay in (0, 1)"),
    ("averaging.*.every", WHOLE, "a whole number of steps >= 1"),
    ("averaging.*.power", non_negative, "a power >= 0"),
    ("averaging.*.start", probability, "a fraction of the run in [0, 1]"),
    ("averaging.*.batches", WHOLE, "a whole number of batches >= 1"),
    # tta
    ("tta.shift", WHOLE, "a whole number of pixels >= 1"),
    ("tta.padding", one_of("constant", "reflect"), "constant or reflect"),
    # diagnostics
    ("diagnostics.first_steps", whole_at_least(0), "a whole number >= 0"),
    ("diagnostics.*_fraction", probability, "a fraction in [0, 1]"),
    ("diagnostics.collapsed_std", non_negative, "a standard deviation >= 0"),
    ("diagnostics.flat_tolerance", probability_below_one, "a tolerance in [0, 1)"),
    ("diagnostics.update_ratio_low", non_negative, "a ratio >= 0"),
    ("diagnostics.update_ratio_high", positive, "a ratio > 0"),
    ("diagnostics.loss_tolerance", positive, "a tolerance > 0"),
    ("diagnostics.*", WHOLE, "a whole number >= 1"),  # batch_size, every, flat_epochs
    # logger
    ("logger.log_checkpoint", boolean, "true or false"),
    # python -m runner.gradcheck
    ("gradcheck.images", WHOLE, "a whole number >= 1"),
    ("gradcheck.entries", WHOLE, "a whole number >= 1"),
    ("gradcheck.step", positive, "a step > 0"),
]

# Names and paths: their kind is checked here, whether they exist where they are used.
TEXT = (lambda value: isinstance(value, str) and value != "", "a path or name")
CLASSES = optional(list_of(lambda value: isinstance(value, str) or whole_at_least(0)(value)))
RULES += [
    ("data.classes", CLASSES, "null or a list of class names or indices, such as [cat,dog] or [3,5]"),
    ("data.root", *TEXT),
    ("data.name", *TEXT),
    ("logger.folder", *TEXT),
    ("resume", optional(TEXT[0]), "null or the path of a run folder"),
    ("finetune.checkpoint", optional(TEXT[0]), "null or the path of a run folder or checkpoint.pt"),
    ("preprocess.cache_dir", optional(TEXT[0]), "null or a folder path"),
    ("logger.tracking_uri", optional(TEXT[0]), "null or a tracking URI, such as sqlite:///runs.db"),
    ("logger.experiment", optional(TEXT[0]), "null or an experiment name"),
]
FREE_FORM: tuple[str, ...] = ()  # every setting has a rule


def rule_for(key: str) -> tuple[str, Callable, str] | None:
    return next((entry for entry in RULES if fnmatch.fnmatchcase(key, entry[0])), None)


def flatten(node, prefix: str = "") -> dict:
    """Dotted keys to values, without resolving anything that is not already resolved; a mandatory value
    that was never given (``???``) is ``MISSING``."""
    items = {}
    if isinstance(node, DictConfig):
        for key in node.keys():
            child = node._get_node(key)
            if OmegaConf.is_missing(node, key):
                items[f"{prefix}{key}"] = MISSING
            elif isinstance(child, (DictConfig, ListConfig)):
                items.update(flatten(child, f"{prefix}{key}."))
            else:
                items[f"{prefix}{key}"] = node[key]
    elif isinstance(node, ListConfig):
        items[prefix[:-1]] = list(OmegaConf.to_container(node, resolve=True))
    else:
        items[prefix[:-1]] = node
    return items


MISSING = object()


def check_values(config: DictConfig, unread: set[str] = frozenset()) -> list[str]:
    """Every value against its key's rule; ``unread`` keys (added with ``+``, read by nothing) have no rule to
    meet: they are refused as unread, not judged by a neighbour's rule."""
    problems = []
    for key, value in flatten(config).items():
        if key in unread:
            continue
        if value is MISSING:
            problems.append(f"{key} must be set: add {key}=VALUE to the command (see docs/options.md).")
            continue
        entry = None if key.rsplit(".", 1)[-1].startswith("_") else rule_for(key)  # _target_ is for Hydra
        if entry is None:
            continue
        try:
            good = bool(entry[1](value))
        except (TypeError, ValueError):
            good = False
        if not good:
            problems.append(str(not_allowed(key, value, entry[2])))
    return problems


def check_device(config: DictConfig) -> list[str]:
    requested = str(config.trainer.device)
    if requested.startswith("cuda") and not torch.cuda.is_available():
        return [f"trainer.device={requested!r} is not available: this machine has no CUDA device; use auto or cpu."]
    return []


# Settings the build stage reads itself instead of passing them to the group's target.
BUILD_KEYS = {"optimizer": {"scale_lr"}}


def targets(node, prefix: str = ""):
    """(dotted key, node) for every node of the config that names a ``_target_``."""
    if not isinstance(node, DictConfig):
        return
    if "_target_" in node:
        yield prefix[:-1], node
    for key in node.keys():
        yield from targets(node._get_node(key), f"{prefix}{key}.")


def suggestion(name: str, candidates) -> str:
    """ " (did you mean trainer.epochs?)" for a near miss, else nothing."""
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""


def check_arguments(config: DictConfig) -> list[str]:
    """Every setting of a ``_target_`` must be one of its arguments. A setting left from another option of the
    group (an experiment's ``schedule.anneal`` under ``schedule=linear``) is named here, before any work."""
    problems = []
    for key, node in targets(config):
        try:
            parameters = inspect.signature(get_object(str(node._target_))).parameters
        except (ImportError, AttributeError, ValueError, TypeError):
            continue  # an unknown target fails at instantiation with Hydra's own message
        if any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters.values()):
            continue
        unknown = [
            str(name)
            for name in node.keys()
            if not str(name).startswith("_") and name not in parameters and name not in BUILD_KEYS.get(key, ())
        ]
        if unknown:
            hints = "".join(suggestion(name, parameters) for name in unknown)
            problems.append(
                f"{key}: {node._target_} has no setting {', '.join(unknown)}{hints} (it takes "
                f"{', '.join(parameters)}). Were they set for another option of the {key.split('.')[0]} group, "
                "by an experiment?"
            )
    return problems


def declared_settings() -> set[str]:
    """Every key some file of ``conf/`` declares: the settings outside the groups and every option's knobs."""
    catalogue = read_catalogue()
    keys = {knob.key for option in (catalogue.settings, catalogue.diagnose) for knob in option.knobs}
    for group in catalogue.groups:
        if not group.name.startswith("hydra"):
            keys.update(knob.key for option in group.options for knob in option.knobs)
    return keys


def unread_added_keys(config: DictConfig, overrides: list[str]) -> dict[str, str]:
    """A key added on the command line with ``+`` (or ``++``) that nothing reads, with its message: settings of
    a ``_target_`` are checked against its arguments (``check_arguments``); any other must be one ``conf/``
    declares."""
    added = [text.split("=", 1)[0].lstrip("+") for text in overrides if text.startswith("+") and "=" in text]
    if not added:
        return {}
    declared = declared_settings()
    targeted = [key for key, _ in targets(config) if key]
    problems = {}
    for key in added:
        if key in declared or any(key.startswith(f"{prefix}.") for prefix in targeted):
            continue
        problems[key] = f"+{key}: no part of the run reads a setting of that name{suggestion(key, declared)}."
    return problems


def check_build(config: DictConfig) -> list[str]:
    """Build the model, its optimizer and its schedule on the meta device (no memory, no compute), so that
    architecture knobs and the optimizer's and schedule's own checks fail now, each named by its group."""
    stage = "model"
    try:
        with torch.device("meta"):
            network = make(
                config.model,
                num_classes=10,
                input_shape=(3, 32, 32),
                activation=make(config.activation),
                norm=make(config.norm),
            )
            stage = "optimizer"
            optimizer = build_optimizer(config.optimizer, network, [], torch.device("cpu"), config.data.batch_size)
            stage = "schedule"
            make(config.schedule)(optimizer, steps_per_epoch=10, epochs=max(1, config.trainer.epochs))
    except RunnerError as error:
        return [str(error)]
    except (InstantiationException, ValueError, TypeError) as error:
        cause = error.__cause__ if isinstance(error, InstantiationException) and error.__cause__ else error
        if isinstance(cause, (ValueError, TypeError)):
            return [f"{stage}: {cause}"]
        raise
    return []


# The images of each split of the sources whose size the config tells, before any data is read.
KNOWN_SIZES = {("cifar10", "train"): 50000, ("cifar10", "test"): 10000}


def known_size(data: DictConfig, split: str) -> int | None:
    """How many images ``split`` has, where the config tells without reading the data: the synthetic set's
    sizes, CIFAR-10's with all its classes."""
    if data.get("classes") is not None:
        return None
    size = data.get(f"{split}_size") if data.source == "synthetic" else KNOWN_SIZES.get((str(data.source), split))
    return size if whole_at_least(1)(size) else None


def check_data_sizes(config: DictConfig) -> list[str]:
    """A validation split or a subset larger than the data, where its size is known (``known_size``)."""
    data = config.data
    train, test = known_size(data, "train"), known_size(data, "test")
    val_size, subset, test_subset = data.get("val_size") or 0, data.get("subset"), data.get("test_subset")
    problems = []
    if train and whole_at_least(0)(val_size):
        if val_size >= train:
            problems.append(f"data.val_size={val_size} must be at least 0 and below the {train} training images.")
        elif whole_at_least(1)(subset) and subset > train - val_size:
            left = f" left after data.val_size={val_size}" if val_size else ""
            problems.append(f"data.subset={subset} must be between 1 and the {train - val_size} training images{left}.")
    if test and whole_at_least(1)(test_subset) and test_subset > test:
        problems.append(f"data.test_subset={test_subset} must be between 1 and the {test} test images.")
    return problems


def check_metric(config: DictConfig) -> list[str]:
    """A run that optimises a validation metric needs a validation split, or every trial would score 0."""
    metric = str(config.get("optimized_metric") or "test_acc")
    if "val_" in metric and not config.data.get("val_size"):
        return [f"optimized_metric={metric} needs a validation split: set data.val_size (e.g. 5000)."]
    return []


def check(config: DictConfig, overrides: list[str] = ()) -> list[str]:
    """Every problem found in ``config`` (composed with the command line's ``overrides``); an empty list means
    it can run."""
    unread = unread_added_keys(config, list(overrides))
    problems = check_values(config, set(unread)) + check_arguments(config) + list(unread.values())
    problems += check_device(config) + check_data_sizes(config) + check_metric(config)
    return problems or check_build(config)


def swept_keys(config: DictConfig) -> set[str]:
    """The keys a sweep sets per job: its command line's sweeps (``a=1,2``, ``glob(*)``) and the sweeper's
    search space (``hydra.sweeper.params``)."""
    keys = set((config.hydra.sweeper.get("params") or {}).keys())
    for text in config.hydra.overrides.task:
        key, _, value = str(text).partition("=")
        if "," in value or "(" in value:
            keys.add(key.lstrip("+~").split("@")[0])
    return keys


def sweep_problems(config: DictConfig) -> list[str]:
    """The problems every job of a sweep would share (its fixed settings), found before the first job starts;
    a problem with a key the sweep sets per job is left to that job."""
    task = OmegaConf.masked_copy(config, [key for key in config.keys() if key != "hydra"])
    swept = swept_keys(config)
    problems = check(task, [str(text) for text in config.hydra.overrides.task if "," not in str(text)])
    return [problem for problem in problems if not any(problem.startswith(key) for key in swept)]
