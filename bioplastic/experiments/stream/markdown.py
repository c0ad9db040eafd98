"""The stream comparison as markdown."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bioplastic.experiments._common import n_seeds, without_spread
from bioplastic.experiments.stream.metrics import forgetting_max

__all__ = ["format_markdown"]


def _num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _val(value: float | int | None) -> str:
    return str(value) if isinstance(value, int) else _num(value)


def _pm(ms: Mapping[str, float | None], digits: int = 3) -> str:
    if ms.get("mean") is None:
        return "n/a"
    if ms.get("std") is None:  # one seed: no spread
        return f"{ms['mean']:.{digits}f}"
    return f"{ms['mean']:.{digits}f} ± {ms['std']:.{digits}f}"


def format_markdown(results: Mapping[str, Any]) -> str:
    """The comparison as markdown: the main table, task encoding, targets, accuracy matrices."""
    cfg = results["config"]
    one_seed = n_seeds(cfg["seeds"]) == 1
    summary = without_spread(results["summary"]) if one_seed else results["summary"]
    kwargs = ", ".join(f"{k}={v}" for k, v in cfg["stream_kwargs"].items())
    lines = [
        f"## {cfg['stream']}, {cfg['scenario']}-incremental",
        "",
        f"{cfg['n_experiences']} experiences, {cfg['epochs']} epochs per experience, seeds "
        f"{cfg['seeds']}{', quick' if cfg['quick'] else ''}{', ' + kwargs if kwargs else ''}. "
        f"{'One seed' if one_seed else 'Mean ± std over seeds'}. "
        "ACC: final average accuracy (tasks weigh the same); Avalanche F: Avalanche's "
        "StreamForgetting (accuracy right after training on a task minus the final one, = -BWT); "
        "F (max): forgetting from the best accuracy a task had (Chaudhry et al. 2018); BWT: "
        "backward transfer (Avalanche's StreamBWT); connectivity and Dale violations of the "
        "final model (whole model, heads included).",
        "",
        "| strategy | ACC | Avalanche F | F (max) | BWT | connectivity | Dale violations (max) "
        "| Dale-typed | s / run |",
        "|---|---|---|---|---|---|---:|---|---:|",
    ]
    for name, s in summary.items():
        lines.append(
            f"| {name} | {_pm(s['final_average_accuracy'])} "
            f"| {_pm(s.get('avalanche_forgetting', {}))} | {_pm(forgetting_max(s))} "
            f"| {_pm(s['bwt'])} | {_pm(s['connectivity'], 2)} | {s['dale_violations']['max']} "
            f"| {'yes' if s['dale_typed'] else 'no'} | {_num(s['wall_seconds']['mean'], 1)} |"
        )
    lines += [
        "",
        "Backprop baselines that are not Dale-typed count as violations every unit whose "
        "outgoing weights have mixed signs.",
        "",
        "Task encoding after the last experience (means over seeds): capacity used/free "
        "(fraction of potential synapses some task recruited / left), mean Jaccard overlap of "
        "the synapses and of the units two tasks recruited, mean unit task-selectivity.",
        "",
        "| strategy | capacity used | capacity free | synapse overlap | unit overlap "
        "| selectivity |",
        "|---|---|---|---|---|---|",
    ]
    for name, s in summary.items():
        last = s["task_encoding"][-1]
        lines.append(
            f"| {name} | {_num(last.get('capacity_used'))} | {_num(last.get('capacity_free'))} "
            f"| {_num(last.get('synapse_overlap_mean'))} | {_num(last.get('unit_overlap_mean'))} "
            f"| {_num(last.get('selectivity_mean'))} |"
        )
    targets = results.get("targets") or {}
    if targets:
        lines += ["", "Targets:", ""]
        for label, check in targets.items():
            value, ref = check["value"], check["threshold"]
            mark = "pass" if check["pass"] else "MISS"
            lines.append(f"- {label}: {_val(value)} vs {_val(ref)} ({mark})")
    lines += [
        "",
        "Accuracy matrices R[i][j] (rows: after training experience i; columns: "
        "test experience j; means over seeds):",
        "",
    ]
    n = cfg["n_experiences"]
    for name, s in summary.items():
        lines += [
            f"{name}:",
            "",
            "| i \\ j | " + " | ".join(str(j) for j in range(n)) + " |",
            "|---" * (n + 1) + "|",
        ]
        for i, row in enumerate(s["accuracy_matrix"]):
            lines.append(f"| {i} | " + " | ".join(_num(v) for v in row) + " |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
