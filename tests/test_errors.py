"""The problems a user can fix (runner.errors): one message shape for every refused value, predicates that are
false rather than an exception for a value of the wrong type, and exit code 2 with no traceback from every
command."""

import pytest

from runner.errors import (
    USER_ERROR_EXIT,
    ConfigError,
    DataError,
    RecordError,
    RunnerError,
    boolean,
    is_number,
    list_of,
    not_allowed,
    one_of,
    optional,
    positive,
    probability,
    probability_below_one,
    whole_at_least,
)
from tests.conftest import SMOKE, run_entrypoint


def test_a_refused_value_names_the_key_the_value_and_what_is_allowed():
    assert str(not_allowed("optimizer.lr", -0.1, "a learning rate > 0")) == (
        "optimizer.lr=-0.1 is not allowed: it must be a learning rate > 0."
    )
    assert all(issubclass(kind, RunnerError) for kind in (ConfigError, DataError, RecordError))


@pytest.mark.parametrize("value", ["0.1", None, True, float("nan"), float("inf"), [1]])
def test_predicates_are_false_for_values_of_the_wrong_type(value):
    assert not any(rule(value) for rule in (is_number, positive, probability, probability_below_one))
    assert not whole_at_least(0)(value)


def test_predicates_draw_their_lines_where_they_say():
    assert positive(1e-9) and not positive(0)
    assert probability(1) and not probability_below_one(1) and probability_below_one(0)
    assert whole_at_least(1)(1) and not whole_at_least(1)(0) and not whole_at_least(1)(1.0)
    assert optional(positive)(None) and not optional(positive)(-1)
    assert boolean(False) and not boolean(0) and not boolean("true")
    assert one_of("cos", "linear")("cos") and not one_of("cos", "linear")("step") and not one_of("1")(1)
    assert list_of(positive)([1, 2]) and not list_of(positive)([]) and not list_of(positive)([1, -2])
    assert list_of(positive, length=2)((0.5, 1.0)) and not list_of(positive, length=2)([1.0])


@pytest.mark.parametrize(
    ("module", "arguments", "expected"),
    [
        ("runner.train", [*SMOKE, "optimizer.lr=-1"], "optimizer.lr=-1 is not allowed"),  # ConfigError
        ("runner.train", ["data=folder", "data.root=/no/such/folder", "trainer.epochs=1"], "does not exist"),
        ("runner.compare", ["/no/such/folder"], "no such file or folder"),  # RecordError
        ("runner.ensemble", ["/no/such/folder"], "no such run folder"),
        ("runner.diagnose", ["data=folder", "data.root=/no/such/folder"], "does not exist"),  # DataError
    ],
)
@pytest.mark.slow
def test_every_command_ends_a_users_problem_with_exit_2_and_one_paragraph(module, arguments, expected, tmp_path):
    result = run_entrypoint(arguments, tmp_path, module=module, timeout=180)
    assert result.returncode == USER_ERROR_EXIT, result.stderr
    assert expected in result.stderr and "Traceback" not in result.stderr
