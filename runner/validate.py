"""Checks of the composed config's values, before any work starts.

Hydra already rejects unknown options and keys; this catches values a run cannot use (a negative learning
rate, a dropout probability of 1.5, a ResNet depth that is not 6n + 2) and names the full key, the value and
what is allowed, instead of failing minutes later deep inside PyTorch.
"""

from __future__ import annotations

import fnmatch
import inspect
import math
from collections.abc import Callable

import torch
from hydra.errors import InstantiationException
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from runner.augment import PADDING_MODES, TestTimeAugmentation
from runner.device import AUTOCAST_TYPES


class ConfigError(ValueError):
    """A config value a run cannot use; the message is for the user, printed without a traceback."""


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def positive(value) -> bool:
    return _number(value) and value > 0


def non_negative(value) -> bool:
    return _number(value) and value >= 0


def whole_at_least(minimum: int) -> Callable:
    return lambda value: isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def probability_below_one(value) -> bool:
    return _number(value) and 0 <= value < 1


def probability(value) -> bool:
    return _number(value) and 0 <= value <= 1


def optional(rule: Callable) -> Callable:
    return lambda value: value is None or rule(value)


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
    ("trainer.divergence_factor", lambda v: _number(v) and v > 1, "a factor > 1"),
    ("trainer.device_warmup", lambda v: v == "auto" or isinstance(v, bool), "one of auto, true, false"),
    ("trainer.precision", lambda v: v == "auto" or v in AUTOCAST_TYPES, "one of auto, " + ", ".join(AUTOCAST_TYPES)),
    ("regularizer.*.weight_decay", non_negative, "a weight decay >= 0"),
    ("regularizer.*.strength", non_negative, "a strength >= 0"),
    ("regularizer.*.l1", non_negative, "a strength >= 0"),
    ("regularizer.*.l2", non_negative, "a strength >= 0"),
    ("regularizer.*.p", probability_below_one, "a drop probability in [0, 1)"),
    ("regularizer.*.smoothing", probability_below_one, "a smoothing in [0, 1)"),
    ("regularizer.*.survival_last", lambda v: _number(v) and 0 < v <= 1, "a survival probability in (0, 1]"),
    ("augmentation.*.alpha", positive, "an alpha > 0"),
    ("augmentation.*.probability", probability, "a probability in [0, 1]"),
    ("augmentation.*.padding", whole_at_least(0), "a whole number of pixels >= 0"),
    ("norm.lr_multiplier", positive, "a learning-rate multiplier > 0"),
    ("schedule.anneal", lambda v: v in ("cos", "linear"), "cos or linear"),
    ("eval.tta", lambda v: v in TestTimeAugmentation.MODES, "one of " + ", ".join(TestTimeAugmentation.MODES)),
    ("eval.tta_shift", whole_at_least(1), "a whole number of pixels >= 1"),
    ("eval.tta_padding", lambda v: v in PADDING_MODES, " or ".join(PADDING_MODES)),
    ("augmentation.*.padding_mode", lambda v: v in PADDING_MODES, " or ".join(PADDING_MODES)),
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
                    problems.append(f"{key}={value!r} is not allowed: it must be {allowed}.")
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
            instantiate(
                config.model,
                num_classes=10,
                input_shape=(3, 32, 32),
                activation=instantiate(config.activation),
                norm=instantiate(config.norm),
            )
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
