"""Metrics of one continual-learning run: ACC, forgetting, BWT, weights, task encoding.

BWT and Avalanche's forgetting come from Avalanche's metrics (``StreamBWT``,
``StreamForgetting``, logged by :func:`strategies.avalanche.make_evaluator`); ACC and the
max-based forgetting, which Avalanche does not compute, from the accuracy matrix whose entries
are Avalanche's ``Top1_Acc_Exp``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from bioplastic import probes as P
from strategies.avalanche.metrics import unit_dale_violations

__all__ = [
    "AVALANCHE_BWT_KEY",
    "AVALANCHE_FORGETTING_KEY",
    "ENCODING_KEYS",
    "avalanche_metrics",
    "continual_metrics",
    "forgetting_max",
]

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


#: Avalanche's stream-level metrics read from a run's last evaluation (``make_evaluator``).
AVALANCHE_FORGETTING_KEY = "StreamForgetting/eval_phase/test_stream"
AVALANCHE_BWT_KEY = "StreamBWT/eval_phase/test_stream"


def continual_metrics(matrix: Sequence[Sequence[float | None]]) -> dict[str, float | None]:
    """Final average accuracy and the max-based forgetting of an accuracy matrix.

    These are the two metrics Avalanche 0.6.0 has no equivalent for: its stream accuracy
    (``Top1_Acc_Stream``) weights experiences by their number of test samples, where ``ACC``
    (Lopez-Paz & Ranzato 2017) gives every task the same weight, and its ``StreamForgetting``
    subtracts from the accuracy right after training on a task, not from the best one. BWT and
    Avalanche's forgetting are read from Avalanche's own metrics (:func:`avalanche_metrics`).

    Args:
        matrix: ``T x T`` accuracies in [0, 1], ``matrix[i][j]`` on experience ``j`` after
            training experience ``i`` (only ``j <= i`` is used).

    Returns:
        ``{"final_average_accuracy", "forgetting_max"}`` (module docstring of
        :mod:`bioplastic.experiments.stream` for the definitions); ``forgetting_max`` is
        ``None`` for a single experience.

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
        return {"final_average_accuracy": acc, "forgetting_max": None}
    forgetting = [
        max(float(matrix[l][j]) for l in range(j, last)) - float(matrix[last][j])
        for j in range(last)
    ]
    return {"final_average_accuracy": acc, "forgetting_max": sum(forgetting) / last}


def avalanche_metrics(records: Mapping[str, Any]) -> dict[str, float | None]:
    """Avalanche's forgetting and BWT of a run, as its metrics logged them.

    Args:
        records: a :class:`strategies.avalanche.loggers.JSONResultsLogger`'s results (or
            ``metrics.json``); the values of the last experience are those of the final
            evaluation.

    Returns:
        ``{"avalanche_forgetting", "bwt"}``: ``StreamForgetting`` (accuracy right after
        training on a task minus the final one, averaged over all tasks but the last; on the
        accuracy matrix ``-BWT``) and ``StreamBWT``; ``None`` where the run did not log them.
    """
    experiences = records.get("experiences") or [{}]
    last = experiences[-1].get("metrics", {})
    return {
        "avalanche_forgetting": last.get(AVALANCHE_FORGETTING_KEY),
        "bwt": last.get(AVALANCHE_BWT_KEY),
    }


def forgetting_max(entry: Mapping[str, Any]) -> Any:
    """The max-based forgetting of a run or summary entry; results written before it was
    renamed store it as ``average_forgetting``."""
    return entry.get("forgetting_max", entry.get("average_forgetting"))


def _weights_summary(model: torch.nn.Module) -> dict[str, float | int]:
    report = P.weight_report(model)
    total = sum(int(row["n_synapses"]) for row in report.values())
    present = sum(int(row["n_present"]) for row in report.values())
    return {
        "connectivity": present / total if total else math.nan,
        "dale_violations": unit_dale_violations(model),  # a multi-head model's heads together
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
