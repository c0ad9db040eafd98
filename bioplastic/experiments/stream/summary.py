"""Aggregates of a stream comparison over seeds, and the issue's targets."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bioplastic.experiments._common import mean_std
from bioplastic.experiments.stream.metrics import forgetting_max

__all__ = ["TARGETS", "check_targets"]

#: The issue's targets (see :func:`check_targets`).
TARGETS: dict[str, float] = {
    "task_max_forgetting": 0.03,
    "task_max_connectivity": 0.30,
    "task_max_dale_violations": 0,
}


def _mean_matrix(matrices: Sequence[Sequence[Sequence[float | None]]]) -> list[list[float | None]]:
    n = len(matrices[0])
    return [[mean_std([m[i][j] for m in matrices])["mean"] for j in range(n)] for i in range(n)]


def _aggregate(runs: Sequence[Mapping[str, Any]], names: Sequence[str]) -> dict[str, Any]:
    summary = {}
    for name in names:
        mine = [r for r in runs if r["config"]["strategy"] == name]
        n_exp = len(mine[0]["accuracy_matrix"])
        entry: dict[str, Any] = {"n_seeds": len(mine), "dale_typed": mine[0]["dale_typed"]}
        for key in (
            "final_average_accuracy",
            "avalanche_forgetting",
            "forgetting_max",
            "bwt",
            "connectivity",
            "dale_violations",
            "sign_flips",
            "wall_seconds",
        ):
            entry[key] = mean_std(
                [forgetting_max(r) if key == "forgetting_max" else r.get(key) for r in mine]
            )
        entry["dale_violations"]["max"] = max(int(r["dale_violations"]) for r in mine)
        entry["accuracy_matrix"] = _mean_matrix([r["accuracy_matrix"] for r in mine])
        entry["task_encoding"] = [
            {
                k: mean_std([r["task_encoding"][i][k] for r in mine])["mean"]
                for k in mine[0]["task_encoding"][i]
            }
            for i in range(n_exp)
        ]
        summary[name] = entry
    return summary


def check_targets(results: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The issue's targets that apply to ``results`` (those whose strategies were run).

    Task-incremental: ``bio``'s final average accuracy at least that of ``packnet``, ``ewc``
    and ``si`` (means over seeds), its max-based forgetting ("F (max)", the stricter of the
    two definitions) <= 0.03, 0 Dale violations (every
    seed) and connectivity <= 0.30. Class-incremental: ``bio+replay`` above ``replay``.

    Returns:
        ``{target: {"value": ..., "threshold": ..., "pass": bool}}``.
    """
    summary = results["summary"]
    scenario = results["config"]["scenario"]
    checks: dict[str, dict[str, Any]] = {}

    def mean(name: str, key: str) -> float | None:
        return summary[name][key]["mean"]

    if scenario == "task" and "bio" in summary:
        acc = mean("bio", "final_average_accuracy")
        for other in ("packnet", "ewc", "si"):
            if other in summary:
                ref = mean(other, "final_average_accuracy")
                checks[f"bio accuracy >= {other}"] = {
                    "value": acc,
                    "threshold": ref,
                    "pass": acc >= ref,
                }
        forgetting = forgetting_max(summary["bio"])["mean"]
        if forgetting is not None:
            limit = TARGETS["task_max_forgetting"]
            checks["bio F (max) <= 0.03"] = {
                "value": forgetting,
                "threshold": limit,
                "pass": forgetting <= limit,
            }
        violations = summary["bio"]["dale_violations"]["max"]
        checks["bio Dale violations == 0"] = {
            "value": violations,
            "threshold": TARGETS["task_max_dale_violations"],
            "pass": violations <= TARGETS["task_max_dale_violations"],
        }
        conn = mean("bio", "connectivity")
        limit = TARGETS["task_max_connectivity"]
        checks["bio connectivity <= 0.30"] = {
            "value": conn,
            "threshold": limit,
            "pass": conn <= limit,
        }
    if scenario == "class" and "bio+replay" in summary and "replay" in summary:
        value = mean("bio+replay", "final_average_accuracy")
        ref = mean("replay", "final_average_accuracy")
        checks["bio+replay accuracy > replay"] = {
            "value": value,
            "threshold": ref,
            "pass": value > ref,
        }
    return checks
