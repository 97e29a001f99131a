"""checks: the one validation of numbers and choices, with the texts every flag shares."""

import math

import pytest

from cnnlab.checks import check_choice, check_number, counted


@pytest.mark.parametrize("value, options, message", [
    (0, {"integer": True, "minimum": 1}, "--x must be at least 1, got 0"),
    (2.5, {"integer": True}, "--x must be an integer, got 2.5"),
    (True, {}, "--x must be a number, got True"),
    (math.inf, {}, "--x must be a number, got inf"),
    ("3", {}, "--x must be a number, got '3'"),
    (-1.0, {"positive": True}, "--x must be positive, got -1.0"),
    (None, {}, "--x must be a number, got None"),
    (7, {"minimum": 0, "maximum": 6}, "--x must lie in 0..6, got 7"),
    (7, {"maximum": 6}, "--x must be at most 6, got 7"),
])
def test_a_bad_number_is_an_error_naming_the_flag_the_rule_and_the_value(value, options, message):
    with pytest.raises(ValueError) as caught:
        check_number("--x", value, **options)
    assert str(caught.value) == message


def test_good_numbers_and_an_optional_none_pass():
    check_number("--x", 3, integer=True, minimum=1, maximum=3)
    check_number("--x", 0.5, positive=True)
    check_number("--x", None, integer=True, minimum=1, optional=True)


def test_a_choice_outside_the_choices_lists_them():
    check_choice("--optimizer", "sgd", ("sgd", "adam"))
    with pytest.raises(ValueError, match="--optimizer must be one of sgd, adam, got 'lbfgs'"):
        check_choice("--optimizer", "lbfgs", ("sgd", "adam"))


def test_counted_says_one_epoch_and_two_epochs():
    assert counted(1, "epoch") == "1 epoch"
    assert counted(0, "epoch") == "0 epochs"
    assert counted(2, "step") == "2 steps"
