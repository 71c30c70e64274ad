"""The problems a user can fix: each is printed as one paragraph without a traceback, and ends the command with
exit code 2.

Every refused setting is worded by ``not_allowed``, so every refusal reads the same way: the full key, the value,
and what is allowed; the predicates below are the rules ``runner.validate`` declares for each setting.
"""

from __future__ import annotations

import math
from collections.abc import Callable

# The exit code of a command stopped by a problem the user can fix (as argparse uses for a bad command line).
USER_ERROR_EXIT = 2


class RunnerError(Exception):
    """A problem the user can fix; its message is for them, printed without a traceback."""


class ConfigError(RunnerError, ValueError):
    """A config value or combination of values a run cannot use."""


class DataError(RunnerError):
    """A missing or damaged data set, cache or download."""


class RecordError(RunnerError):
    """A run folder or record file that is missing, damaged or does not fit (``compare``, ``ensemble``)."""


def not_allowed(key: str, value, allowed: str) -> ConfigError:
    """The error for ``key=value``: "optimizer.lr=-0.1 is not allowed: it must be a learning rate > 0."."""
    return ConfigError(f"{key}={value!r} is not allowed: it must be {allowed}.")


# What a setting may be: predicates that are false, never an exception, for a value of the wrong type.


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def positive(value) -> bool:
    return is_number(value) and value > 0


def non_negative(value) -> bool:
    return is_number(value) and value >= 0


def whole_at_least(minimum: int) -> Callable:
    return lambda value: isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def probability(value) -> bool:
    return is_number(value) and 0 <= value <= 1


def probability_below_one(value) -> bool:
    return is_number(value) and 0 <= value < 1


def boolean(value) -> bool:
    return isinstance(value, bool)


def one_of(*allowed) -> Callable:
    return lambda value: isinstance(value, str) and value in allowed


def list_of(rule: Callable, length: int | None = None) -> Callable:
    """A non-empty list (of ``length`` items, when given) whose every item passes ``rule``."""

    def check(value) -> bool:
        if not isinstance(value, (list, tuple)) or not value or (length is not None and len(value) != length):
            return False
        return all(rule(item) for item in value)

    return check


def optional(rule: Callable) -> Callable:
    return lambda value: value is None or rule(value)
