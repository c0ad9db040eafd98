"""Argument validation shared by the whole package: one copy of each check.

Every check raises a one-line ``ValueError`` that names the argument and the allowed range
(never ``assert``), and returns the value in its canonical type.
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Sequence
from typing import Any

__all__ = [
    "check_bool",
    "check_choice",
    "check_fraction",
    "check_int",
    "check_number",
    "check_optional_int",
]


def check_int(name: str, value: Any, minimum: int = 1, maximum: int | None = None) -> int:
    """``value`` as an int; ValueError naming ``name`` unless ``minimum <= value <= maximum``."""
    allowed = f"an integer >= {minimum}" + ("" if maximum is None else f" and <= {maximum}")
    if isinstance(value, bool):
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    try:
        number = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be {allowed}, got {value!r}") from None
    if number < minimum or (maximum is not None and number > maximum):
        raise ValueError(f"{name} must be {allowed}, got {number}")
    return number


def check_optional_int(name: str, value: Any, minimum: int = 1) -> int | None:
    """Like :func:`check_int`, but ``None`` passes through (meaning "no limit")."""
    return None if value is None else check_int(name, value, minimum)


def check_number(
    name: str,
    value: Any,
    lo: float = -math.inf,
    hi: float = math.inf,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
) -> float:
    """``value`` as a float if it is a finite real number in the interval; else ValueError.

    Any real scalar counts (Python or NumPy ints and floats); bools and strings do not.
    """
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > lo if lo_open else value >= lo) and (value < hi if hi_open else value <= hi)
    if not ok:
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        raise ValueError(
            f"{name} must be a finite number in {left}{lo}, {hi}{right}, got {value!r}"
        )
    return float(value)


def check_fraction(name: str, value: Any, *, lo_open: bool = True, hi_open: bool = True) -> float:
    """``value`` as a float in (0, 1) (ends included where ``lo_open``/``hi_open`` are False)."""
    return check_number(name, value, 0.0, 1.0, lo_open=lo_open, hi_open=hi_open)


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> Any:
    """``value`` if it is one of ``choices``; otherwise a ValueError listing them."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def check_bool(name: str, value: Any) -> bool:
    """``value`` if it is a bool (not merely truthy, so ``"no"`` is refused)."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value
