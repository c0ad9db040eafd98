"""Metrics of one continual-learning run: ACC, forgetting, BWT, weights, task encoding."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from bioplastic import probes as P

__all__ = ["ENCODING_KEYS", "continual_metrics"]

#: Task-encoding probes summarised per experience (``probe/task/<name>``).
ENCODING_KEYS: tuple[str, ...] = (
    "capacity_used",
    "capacity_free",
    "free_present_fraction",
    "synapse_overlap_mean",
    "unit_overlap_mean",
    "selectivity_mean",
)

_ACC_KEY = re.compile(r"^Top1_Acc_Exp/eval_phase/test_stream/Task\d+/Exp(\d+)$")


def continual_metrics(matrix: Sequence[Sequence[float | None]]) -> dict[str, float | None]:
    """Final average accuracy, average forgetting and BWT of an accuracy matrix.

    Args:
        matrix: ``T x T`` accuracies in [0, 1], ``matrix[i][j]`` on experience ``j`` after
            training experience ``i`` (only ``j <= i`` is used).

    Returns:
        ``{"final_average_accuracy", "average_forgetting", "bwt"}`` (module docstring for the
        definitions); forgetting and BWT are ``None`` for a single experience.

    Raises:
        ValueError: the matrix is not square, or a used entry is missing or outside [0, 1].
    """
    n = len(matrix)
    if n == 0 or any(len(row) != n for row in matrix):
        raise ValueError(
            f"matrix must be square T x T with T >= 1, got rows {[len(r) for r in matrix]}"
        )
    for i, row in enumerate(matrix):
        for j in range(i + 1):
            value = row[j]
            if value is None or not (0.0 <= float(value) <= 1.0):
                raise ValueError(f"matrix[{i}][{j}] must be an accuracy in [0, 1], got {value!r}")
    last = n - 1
    acc = sum(float(matrix[last][j]) for j in range(n)) / n
    if n == 1:
        return {"final_average_accuracy": acc, "average_forgetting": None, "bwt": None}
    forgetting = [
        max(float(matrix[l][j]) for l in range(j, last)) - float(matrix[last][j])
        for j in range(last)
    ]
    bwt = [float(matrix[last][j]) - float(matrix[j][j]) for j in range(last)]
    return {
        "final_average_accuracy": acc,
        "average_forgetting": sum(forgetting) / last,
        "bwt": sum(bwt) / last,
    }


def _weights_summary(model: torch.nn.Module) -> dict[str, float | int]:
    report = P.weight_report(model)
    total = sum(int(row["n_synapses"]) for row in report.values())
    present = sum(int(row["n_present"]) for row in report.values())
    return {
        "connectivity": present / total if total else math.nan,
        "dale_violations": sum(int(row["dale_violations"]) for row in report.values()),
        "n_synapses": total,
    }


def _run_summary(records: Mapping[str, Any], n_experiences: int) -> dict[str, Any]:
    """Accuracy matrix, sign flips and task encoding from a run's :class:`JSONResultsLogger`."""
    experiences = records["experiences"]
    if len(experiences) < n_experiences:
        raise RuntimeError(
            f"the run's metrics cover {len(experiences)} of {n_experiences} experiences"
        )
    matrix: list[list[float | None]] = []
    encoding = []
    sign_flips = None
    for i, exp in enumerate(experiences[:n_experiences]):
        metrics = exp["metrics"]
        row: list[float | None] = [None] * n_experiences
        for key, value in metrics.items():
            match = _ACC_KEY.match(key)
            if match and int(match.group(1)) < n_experiences:
                row[int(match.group(1))] = value
        matrix.append(row)
        enc = {k: metrics.get(f"probe/task/{k}") for k in ENCODING_KEYS}
        enc["recruited_synapse_fraction"] = metrics.get(
            f"probe/task/recruited_synapse_fraction/Exp{i:03d}"
        )
        enc["recruited_units"] = metrics.get(f"probe/task/recruited_units/Exp{i:03d}")
        encoding.append(enc)
        sign_flips = metrics.get("probe/weights/sign_flips", sign_flips)
    return {"accuracy_matrix": matrix, "task_encoding": encoding, "sign_flips": sign_flips}
