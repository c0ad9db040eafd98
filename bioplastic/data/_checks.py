"""Validation specific to the data loaders and streams (general checks: ``bioplastic._checks``)."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

from bioplastic._checks import check_choice

SCENARIOS: tuple[str, ...] = ("class", "task", "domain")


def check_scenario(value: Any, allowed: Sequence[str] = SCENARIOS) -> str:
    """``value`` if it is one of ``allowed``; otherwise a ValueError listing them."""
    return check_choice("scenario", value, allowed)


def check_n_experiences(value: Any, n_classes: int) -> int:
    """Validate the number of experiences of a class split: a divisor of ``n_classes``."""
    divisors = [d for d in range(1, n_classes + 1) if n_classes % d == 0]
    message = (
        f"n_experiences must be a positive integer that divides the number of classes "
        f"({n_classes}), i.e. one of {divisors}; got {value!r}"
    )
    if isinstance(value, bool):
        raise ValueError(message)
    try:
        number = operator.index(value)
    except TypeError:
        raise ValueError(message) from None
    if number not in divisors:
        raise ValueError(message)
    return number
