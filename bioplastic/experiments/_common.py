"""Helpers shared by the experiment drivers: summary statistics and JSON files.

One copy of each: the drivers (compare, stream, robustness, report, ...) summarise seeds with
:func:`mean_std`, compare rules with :func:`paired_difference`, and write results with
:func:`write_json` (atomic, strict JSON).
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

from bioplastic._io import write_atomic

__all__ = [
    "jsonable",
    "mean_std",
    "n_seeds",
    "paired_difference",
    "read_json",
    "spearman",
    "t_critical",
    "without_spread",
    "write_json",
]


# --------------------------------------------------------------------------- statistics


def mean_std(
    values: Sequence[float | None], *, count: bool = False, skip_missing: bool = True
) -> dict[str, float | int | None]:
    """Mean and sample standard deviation (0 for a single value) of ``values``.

    Args:
        values: numbers; with ``skip_missing`` (default) ``None`` and non-finite values are
            left out, and an empty remainder gives ``{"mean": None, "std": None}``; without
            it every value counts (a NaN propagates into the mean).
        count: also return ``"n"``, the number of values used.
    """
    if skip_missing:
        vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    else:
        vals = [float(v) for v in values]
    out: dict[str, float | int | None] = {"mean": None, "std": None}
    if vals:
        out["mean"] = statistics.fmean(vals)
        out["std"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
    if count:
        out["n"] = len(vals)
    return out


def t_critical(n: int) -> float:
    """Two-sided 95% critical value of Student's t with ``n - 1`` degrees of freedom.

    The one t-based interval helper (with :func:`paired_difference`). It is written here
    because the libraries we depend on have none: torchmetrics computes metrics, not
    intervals over runs (its ``BootStrapper`` gives bootstrap quantiles, which with the 3-5
    seeds we compare are too coarse to use), Avalanche has none, and scipy gives only the
    quantile, used below. The few-shot tables' interval over 600 episodes is the normal one
    few-shot papers report (:func:`strategies.fewshot.mean_ci`).
    """
    from scipy import stats

    return float(stats.t.ppf(0.975, n - 1)) if n > 1 else math.inf


def paired_difference(diffs: Sequence[float]) -> dict[str, Any]:
    """Mean paired difference with a t-based 95% CI over seeds (CI None if n < 2); see
    :func:`t_critical` for why it is not a library's."""
    n = len(diffs)
    mean = statistics.fmean(diffs)
    if n < 2:
        return {"mean_diff": mean, "ci95_low": None, "ci95_high": None, "n": n}
    half = t_critical(n) * statistics.stdev(diffs) / math.sqrt(n)
    return {"mean_diff": mean, "ci95_low": mean - half, "ci95_high": mean + half, "n": n}


def spearman(x: Sequence[float | None], y: Sequence[float | None]) -> dict[str, float | None]:
    """Spearman rho and p-value over the pairs where both values are present (None when
    fewer than 3 pairs or either side is constant)."""
    pairs = [(a, b) for a, b in zip(x, y, strict=True) if a is not None and b is not None]
    if len(pairs) < 3 or len({a for a, _ in pairs}) < 2 or len({b for _, b in pairs}) < 2:
        return {"rho": None, "p": None, "n": len(pairs)}
    from scipy import stats

    rho, p = stats.spearmanr([a for a, _ in pairs], [b for _, b in pairs])
    return {"rho": float(rho), "p": float(p), "n": len(pairs)}


# --------------------------------------------------------------------------- JSON


def jsonable(value: Any) -> Any:
    """Plain JSON: tuples to lists, tensors to numbers, non-finite floats to None."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, Tensor):
        return jsonable(value.tolist())
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value


def write_json(path: str | Path, data: Any) -> None:
    """Write ``data`` as strict JSON (no NaN), indent 1, atomically."""
    write_atomic(path, json.dumps(data, indent=1, allow_nan=False) + "\n")


def read_json(path: Path) -> Any:
    """Parsed JSON of ``path``, or None when it is missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def without_spread(data: Any) -> Any:
    """``data`` with every ``{"mean", "std"}`` entry's std set to ``None``: a single seed has
    no spread to show, so its tables print the value alone instead of "± 0.000"."""
    if isinstance(data, Mapping):
        out = {k: without_spread(v) for k, v in data.items()}
        if "mean" in out and "std" in out:
            out["std"] = None
        return out
    if isinstance(data, list):
        return [without_spread(v) for v in data]
    return data


def n_seeds(seeds: Any) -> int:
    """The number of seeds of a config entry that holds a count or a list."""
    return seeds if isinstance(seeds, int) else len(seeds)
