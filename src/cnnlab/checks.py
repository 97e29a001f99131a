"""Checking an option where it enters, with one error text for every flag that takes it.

    check_number("--lr", lr, positive=True)               # "--lr must be positive, got -1.0"
    check_number("--epochs", epochs, integer=True, minimum=1)
    check_number("--index", index, integer=True, minimum=0, maximum=count - 1)
    check_choice("--optimizer", optimizer, OPTIMIZERS)    # "--optimizer must be one of ..."

Each raises ValueError naming the flag, what it expects and what it got; the command line
reports it as one line.
"""

import math


def check_choice(flag: str, value, choices) -> None:
    """`value` must be one of `choices` (any collection of names)."""
    if value not in choices:
        raise ValueError(f"{flag} must be one of {', '.join(choices)}, got {value!r}")


def check_number(flag: str, value, integer=False, minimum=None, maximum=None, positive=False,
                 optional=False) -> None:
    """`value` must be a finite number (an int with `integer`; bool is neither), > 0 with
    `positive`, and within `minimum`..`maximum` where given; None passes with `optional`."""
    if value is None and optional:
        return
    kind = "an integer" if integer else "a number"
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if not is_number or (integer and not isinstance(value, int)) or not math.isfinite(value):
        raise ValueError(f"{flag} must be {kind}, got {value!r}")
    if positive and not value > 0:
        raise ValueError(f"{flag} must be positive, got {value}")
    if minimum is not None and maximum is not None and not minimum <= value <= maximum:
        raise ValueError(f"{flag} must lie in {minimum}..{maximum}, got {value}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{flag} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{flag} must be at most {maximum}, got {value}")


def counted(number: int, noun: str) -> str:
    """`number` and `noun`, plural unless it is one: "1 epoch", "3 epochs"."""
    return f"{number} {noun}{'' if number == 1 else 's'}"
