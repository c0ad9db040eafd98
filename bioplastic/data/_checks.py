"""Validation specific to the data loaders and streams (general checks: ``bioplastic._checks``)."""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import Any

SCENARIOS: tuple[str, ...] = ("class", "task", "domain")


def check_fraction(name: str, value: Any) -> float:
    """Return ``value`` as a float strictly inside (0, 1), or raise ValueError naming ``name``."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} must be a number in the open interval (0, 1), got {value!r}"
        ) from None
    if not (math.isfinite(number) and 0.0 < number < 1.0):
        raise ValueError(f"{name} must be a number in the open interval (0, 1), got {value!r}")
    return number


def check_scenario(value: Any, allowed: Sequence[str] = SCENARIOS) -> str:
    """``value`` if it is one of ``allowed``; otherwise a ValueError listing them."""
    if value not in allowed:
        raise ValueError(f"scenario must be one of {', '.join(map(repr, allowed))}; got {value!r}")
    return value


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
