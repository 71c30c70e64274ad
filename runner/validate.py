"""The generic checks of the composed config, before any work starts: every value against the table of
allowed ranges, every setting against its option's arguments, and the network built on the meta device.

Hydra already rejects unknown options and keys; this catches values a run cannot use (a negative learning
rate, a dropout probability of 1.5, a ResNet depth that is not 6n + 2) and names the full key, the value and
what is allowed, instead of failing minutes later deep inside PyTorch. What only one component knows (its
enumerations, what it needs of the model) it checks itself where it is built, through ``runner.errors``.
"""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Callable

import torch
from hydra.errors import InstantiationException
from hydra.utils import get_object
from omegaconf import DictConfig, ListConfig, OmegaConf

from runner.device import AUTOCAST_TYPES
from runner.errors import (
    RunnerError,
    is_number,
    non_negative,
    not_allowed,
    optional,
    positive,
    probability,
    probability_below_one,
    whole_at_least,
)
from runner.run import make

# (key pattern, rule, what is allowed). Patterns use fnmatch on the full dotted key.
RULES: list[tuple[str, Callable, str]] = [
    ("optimizer.lr", positive, "a learning rate > 0"),
    ("optimizer.momentum", probability_below_one, "a momentum in [0, 1)"),
    ("optimizer.weight_decay", non_negative, "a weight decay >= 0"),
    ("optimizer.betas", lambda v: len(v) == 2 and all(map(probability_below_one, v)), "two betas in [0, 1)"),
    ("data.batch_size", whole_at_least(1), "a whole number >= 1"),
    ("data.subset", optional(whole_at_least(1)), "null or a whole number >= 1"),
    ("data.val_size", whole_at_least(0), "a whole number >= 0"),
    ("trainer.epochs", whole_at_least(0), "a whole number >= 0 (0 builds everything and trains nothing)"),
    ("trainer.eval_batch_size", lambda v: v == "auto" or whole_at_least(1)(v), "auto or a whole number >= 1"),
    ("trainer.log_every", whole_at_least(1), "a whole number >= 1"),
    ("trainer.eval_every", whole_at_least(1), "a whole number >= 1"),
    ("trainer.checkpoint_every", whole_at_least(1), "a whole number >= 1"),
    ("trainer.divergence_factor", lambda v: is_number(v) and v > 1, "a factor > 1"),
    ("trainer.device_warmup", lambda v: v == "auto" or isinstance(v, bool), "one of auto, true, false"),
    ("trainer.precision", lambda v: v == "auto" or v in AUTOCAST_TYPES, "one of auto, " + ", ".join(AUTOCAST_TYPES)),
    ("regularizer.*.weight_decay", non_negative, "a weight decay >= 0"),
    ("regularizer.*.strength", non_negative, "a strength >= 0"),
    ("regularizer.*.l1", non_negative, "a strength >= 0"),
    ("regularizer.*.l2", non_negative, "a strength >= 0"),
    ("regularizer.*.p", probability_below_one, "a drop probability in [0, 1)"),
    ("regularizer.*.smoothing", probability_below_one, "a smoothing in [0, 1)"),
    ("regularizer.*.survival_last", lambda v: is_number(v) and 0 < v <= 1, "a survival probability in (0, 1]"),
    ("augmentation.*.alpha", positive, "an alpha > 0"),
    ("augmentation.*.probability", probability, "a probability in [0, 1]"),
    ("augmentation.*.padding", whole_at_least(0), "a whole number of pixels >= 0"),
    ("tta.shift", whole_at_least(1), "a whole number of pixels >= 1"),
    ("schedule.warmup_epochs", non_negative, "a number of epochs >= 0"),
]


def flatten(node, prefix: str = "") -> dict:
    """Dotted keys to values, without resolving anything that is not already resolved."""
    items = {}
    if isinstance(node, DictConfig):
        for key in node.keys():
            child = node._get_node(key)
            value = child if isinstance(child, (DictConfig, ListConfig)) else node[key]
            items.update(flatten(value, f"{prefix}{key}."))
    elif isinstance(node, ListConfig):
        items[prefix[:-1]] = list(OmegaConf.to_container(node, resolve=True))
    else:
        items[prefix[:-1]] = node
    return items


def check_values(config: DictConfig) -> list[str]:
    problems = []
    for key, value in flatten(config).items():
        for pattern, rule, allowed in RULES:
            if fnmatch.fnmatchcase(key, pattern):
                try:
                    good = bool(rule(value))
                except TypeError:
                    good = False
                if not good:
                    problems.append(str(not_allowed(key, value, allowed)))
                break
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
            problems.append(
                f"{key}: {node._target_} has no setting {', '.join(unknown)} (it takes {', '.join(parameters)}). "
                f"Were they set for another option of the {key.split('.')[0]} group, by an experiment?"
            )
    return problems


def check_model(config: DictConfig) -> list[str]:
    """Build the model on the meta device (no memory, no compute) so architecture knobs fail now."""
    try:
        with torch.device("meta"):
            make(
                config.model,
                num_classes=10,
                input_shape=(3, 32, 32),
                activation=make(config.activation),
                norm=make(config.norm),
            )
    except RunnerError as error:  # a layer's own refusal of its setting (norm.lr_multiplier)
        return [str(error)]
    except InstantiationException as error:
        cause = error.__cause__ or error
        if isinstance(cause, (ValueError, TypeError)):
            return [f"model: {cause}"]
        raise
    return []


def check(config: DictConfig) -> list[str]:
    """Every problem found in ``config``; an empty list means it can run."""
    problems = check_values(config) + check_arguments(config) + check_device(config)
    return problems or check_model(config)
