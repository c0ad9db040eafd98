"""Figures of the robustness results: curves, the analysis panels, receptive fields."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from bioplastic.experiments._figures import COLORS, new_figure, save_figure
from bioplastic.experiments.robustness.analysis import reference_attack
from bioplastic.experiments.robustness.data import INTERVENTIONS
from bioplastic.representation import receptive_field_grid

_ATTACK_TITLES = {
    "fgsm": "FGSM (L-inf)",
    "pgd": "PGD (L-inf)",
    "pgd_l2": "PGD (L2)",
    "apgd_dlr": "APGD-DLR (L-inf, scale-invariant)",
    "linf_ensemble": "worst of PGD and APGD-DLR (L-inf)",
}


def plot_robustness_curves(
    results: Mapping[str, Any], path: str | Path, *, include_interventions: bool = False
) -> Path:
    """Accuracy vs epsilon per attack: mean over seeds with a ±1 std band per rule; the legend
    gives each rule's clean test accuracy. Writes a PNG and returns its path."""
    cfg = results["config"]
    summary = results["summary"]
    keys = [r for r in cfg["rules"] if r in summary]
    if include_interventions:
        keys += [k for k in INTERVENTIONS if k in summary]
    attacks = cfg["attacks"]
    ncols = min(3, len(attacks))
    nrows = math.ceil(len(attacks) / ncols)
    fig = new_figure(4.4 * ncols, 3.6 * nrows + 0.4)
    axes = fig.subplots(nrows, ncols, squeeze=False).reshape(-1)
    for ax in axes[len(attacks) :]:
        ax.set_visible(False)
    n_seeds = len(cfg["seeds"])
    clean = [summary[k]["clean_accuracy"]["mean"] or 0.0 for k in keys]
    top = min(1.0, max(0.2, 1.1 * max(clean, default=1.0)))
    from matplotlib.ticker import MaxNLocator

    for ax, attack in zip(axes, attacks, strict=False):
        eps = cfg["epsilons"][attack]
        for key in keys:
            s = summary[key]
            mean = [m["mean"] for m in s["accuracy"][attack]]
            std = [m["std"] for m in s["accuracy"][attack]]
            color = COLORS.get(key)
            style = "--" if key in INTERVENTIONS else "-"
            label = f"{key} (clean {s['clean_accuracy']['mean']:.3f})"
            ax.plot(eps, mean, style, marker="o", ms=3, color=color, label=label)
            ax.fill_between(
                eps,
                [m - d for m, d in zip(mean, std, strict=True)],
                [m + d for m, d in zip(mean, std, strict=True)],
                color=color,
                alpha=0.18,
                linewidth=0,
            )
        ax.axhline(0.1, color="k", lw=0.8, ls=":", label="chance (0.1)")
        unit = "L2 norm, input scaled to [0, 1]" if attack == "pgd_l2" else "fraction of range"
        ax.set_xlabel(f"epsilon ({unit})")
        ax.set_ylabel("robust test accuracy")
        ax.set_ylim(0, top)
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.set_title(_ATTACK_TITLES.get(attack, attack))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="upper right")
    fig.suptitle(
        f"{cfg['dataset']}: accuracy under attack at matched clean accuracy "
        f"(target {cfg['target_accuracy']}), mean ± std over {n_seeds} seeds"
    )
    return save_figure(fig, path)


def plot_robustness_analysis(results: Mapping[str, Any], path: str | Path) -> Path:
    """Three panels: robust accuracy (mean over eps > 0 of the reference attack) per run against
    connectivity and against the linearised L-inf radius, and the intervention effects."""
    cfg = results["config"]
    attack = results.get("analysis", {}).get("attack") or reference_attack(results)
    fig = new_figure(13.0, 3.9)
    ax1, ax2, ax3 = fig.subplots(1, 3)
    for rule in cfg["rules"]:
        rows = [r for r in results["runs"] if r["rule"] == rule]
        y = [r["robust_mean"][attack] for r in rows]
        ax1.scatter([r["connectivity"] for r in rows], y, color=COLORS.get(rule), label=rule)
        ax2.scatter(
            [r["gradients"]["linearized_radius_linf"] for r in rows],
            y,
            color=COLORS.get(rule),
            label=rule,
        )
    for kind in INTERVENTIONS:
        rows = [r for r in results.get("interventions", []) if r["kind"] == kind]
        if rows:
            y = [r["robust_mean"][attack] for r in rows]
            ax1.scatter(
                [r["connectivity"] for r in rows],
                y,
                marker="x",
                color=COLORS.get(kind),
                label=kind,
            )
            ax2.scatter(
                [r["gradients"]["linearized_radius_linf"] for r in rows],
                y,
                marker="x",
                color=COLORS.get(kind),
                label=kind,
            )
    ylab = "robust accuracy, mean over eps > 0"
    ax1.set_xlabel("connectivity (fraction of synapses present)")
    ax1.set_ylabel(ylab)
    ax1.set_title("robustness vs connectivity")
    ax2.set_xlabel("linearised L-inf radius (fraction of input range)")
    ax2.set_ylabel(ylab)
    ax2.set_title("robustness vs margin / input gradient")
    ax1.legend(fontsize=7)
    labels, values, errors, colors = [], [], [], []
    summary = results["summary"]
    for key in ["bio", "adam", *INTERVENTIONS]:
        if key in summary:
            labels.append(key.replace("_", "\n"))
            values.append(summary[key]["robust_mean"][attack]["mean"])
            errors.append(summary[key]["robust_mean"][attack]["std"])
            colors.append(COLORS.get(key, "k"))
    ax3.bar(range(len(values)), values, yerr=errors, color=colors, capsize=3)
    ax3.set_xticks(range(len(values)), labels, fontsize=7)
    ax3.set_ylabel(ylab)
    ax3.set_title("interventions (mean ± std over seeds)")
    for ax in (ax1, ax2, ax3):
        ax.grid(alpha=0.3)
    fig.suptitle(
        f"{cfg['dataset']}: is robustness explained by connectivity or weight scale? "
        f"(attack: {_ATTACK_TITLES.get(attack, attack)}; one point per run)"
    )
    return save_figure(fig, path)


def receptive_field_grids(results: Mapping[str, Any]) -> dict[str, Tensor]:
    """:func:`~bioplastic.representation.receptive_field_grid` of each rule's stored filters."""
    grids = {}
    for rule, rf in results.get("receptive_fields", {}).items():
        if rf.get("filters"):
            grids[rule] = receptive_field_grid(torch.tensor(rf["filters"]), rf["image_shape"])
    return grids
