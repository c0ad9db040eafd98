"""The robustness results as markdown: one function per table, joined by
:func:`format_markdown`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bioplastic.experiments._common import n_seeds, without_spread
from bioplastic.experiments.robustness.analysis import PREDICTORS
from bioplastic.experiments.robustness.data import INTERVENTIONS


def _fmt(ms: Mapping[str, Any] | None, digits: int = 3) -> str:
    if not ms or ms.get("mean") is None:
        return "n/a"
    if ms.get("std") is None:  # one seed: no spread
        return f"{ms['mean']:.{digits}f}"
    return f"{ms['mean']:.{digits}f} ± {ms['std']:.{digits}f}"


def format_markdown(results: Mapping[str, Any]) -> str:
    """The results as markdown: protocol, matched-accuracy training, robust accuracy per attack
    and epsilon (mean ± std over seeds, with clean accuracy in every row), masking checks,
    weight scale and gradients, interventions, correlations and findings."""
    cfg = results["config"]
    one_seed = n_seeds(cfg["seeds"]) == 1
    summary = without_spread(results["summary"]) if one_seed else results["summary"]
    rules = [r for r in cfg["rules"] if r in summary]
    models = rules + [k for k in INTERVENTIONS if k in summary]
    lines = _header(cfg, rules) + _training_table(summary, rules)
    for attack in cfg["attacks"]:
        lines += _attack_table(summary, models, attack, cfg["epsilons"][attack])
    lines += _masking_table(summary, rules)
    lines += _scale_table(summary, models)
    lines += _activity_table(summary, rules)
    analysis = results.get("analysis", {})
    if analysis.get("correlations"):
        lines += _correlation_table(analysis)
    if analysis.get("findings"):
        lines += ["", "## Findings (computed by `analyse`, rules in its docstring)", ""]
        lines += [f"- {f}" for f in analysis["findings"]]
    if results.get("command"):
        lines += ["", f"Produced by `{results['command']}` in {results.get('seconds', 0):.0f} s."]
    return "\n".join(lines) + "\n"


def _header(cfg: Mapping[str, Any], rules: list[str]) -> list[str]:
    return [
        f"# Robustness at matched clean accuracy: {cfg['dataset']}",
        "",
        f"Model {cfg['model']}; rules {', '.join(rules)}; seeds {cfg['seeds']} "
        f"({'one seed' if n_seeds(cfg['seeds']) == 1 else 'mean ± std over seeds'}). "
        f"Protocol: {cfg['protocol']} (target validation accuracy "
        f"{cfg['target_accuracy']}). Test set: {cfg['n_test']} samples; epsilon units: "
        f"{cfg['eps_units']}; input range {[round(v, 3) for v in cfg['input_range']]}. PGD: "
        f"{cfg['pgd_steps']} steps, step {cfg['pgd_step_size']}, {cfg['restarts']} restart(s). "
        "Robust accuracy counts a sample only if it is also correct when clean.",
    ]


def _training_table(summary: Mapping[str, Any], rules: list[str]) -> list[str]:
    lines = [
        "",
        "## Training to the target",
        "",
        "| rule | reached | epochs | validation acc. | clean test acc. | connectivity | "
        "Dale violations |",
        "|---|---|---|---|---|---|---:|",
    ]
    for rule in rules:
        s = summary[rule]
        lines.append(
            f"| {rule} | {s.get('n_reached', 'n/a')}/{s['n_runs']} | {_fmt(s.get('epochs'), 1)} "
            f"| {_fmt(s.get('val_accuracy'))} | {_fmt(s['clean_accuracy'])} "
            f"| {_fmt(s['connectivity'])} | {s['dale_violations_max']} |"
        )
    return lines


def _attack_table(
    summary: Mapping[str, Any], models: list[str], attack: str, eps: list[float]
) -> list[str]:
    lines = [
        "",
        f"## {attack}: robust accuracy vs epsilon",
        "",
        "| rule | clean | " + " | ".join(f"eps={e:g}" for e in eps) + " | mean (eps>0) |",
        "|---|---|" + "---|" * (len(eps) + 1),
    ]
    for key in models:
        s = summary[key]
        cells = " | ".join(_fmt(ms) for ms in s["accuracy"][attack])
        lines.append(
            f"| {key} | {_fmt(s['clean_accuracy'])} | {cells} | {_fmt(s['robust_mean'][attack])} |"
        )
    return lines


def _masking_table(summary: Mapping[str, Any], rules: list[str]) -> list[str]:
    lines = [
        "",
        "## Gradient-masking checks (runs flagged / runs)",
        "",
        "| rule | PGD weaker than FGSM | PGD at eps=1 above chance+0.1 | zero/NaN input grads "
        "| PGD accuracy at eps=1 |",
        "|---|---|---|---|---|",
    ]
    for rule in rules:
        s = summary[rule]
        if "masking_flags" not in s:
            continue
        f = s["masking_flags"]
        lines.append(
            f"| {rule} | {f['pgd_weaker_than_fgsm']}/{s['n_runs']} "
            f"| {f['large_eps_not_near_chance']}/{s['n_runs']} "
            f"| {f['zero_or_nan_gradients']}/{s['n_runs']} | {_fmt(s['large_eps_accuracy'])} |"
        )
    return lines


def _scale_table(summary: Mapping[str, Any], models: list[str]) -> list[str]:
    lines = [
        "",
        "## Weight scale and input sensitivity",
        "",
        "| model | clean | connectivity | Lipschitz bound | logit margin | loss-gradient L1 "
        "| linearised L-inf radius |",
        "|---|---|---|---|---|---|---|",
    ]
    for key in models:
        s = summary[key]
        g = s["gradients"]
        lines.append(
            f"| {key} | {_fmt(s['clean_accuracy'])} | {_fmt(s['connectivity'])} "
            f"| {_fmt(s['lipschitz_bound'], 1)} | {_fmt(g['logit_margin'], 2)} "
            f"| {_fmt(g['ce_grad_l1'], 2)} | {_fmt(g['linearized_radius_linf'], 4)} |"
        )
    return lines


def _activity_table(summary: Mapping[str, Any], rules: list[str]) -> list[str]:
    rows = []
    for rule in rules:
        act = summary[rule].get("activity", {})
        for layer, stats in act.items():
            if "population_sparseness" in stats:
                rows.append(
                    f"| {rule} | {layer} | {_fmt(stats['population_sparseness'])} "
                    f"| {_fmt(stats['lifetime_sparseness'])} | {_fmt(stats['silent_fraction'])} "
                    f"| {_fmt(stats['participation_ratio'], 1)} | {_fmt(stats['skewness'], 2)} |"
                )
    if not rows:
        return []
    return [
        "",
        "## Hidden activity (test set)",
        "",
        "| rule | layer | population sparseness | lifetime sparseness | silent fraction "
        "| participation ratio | skewness |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ]


def _correlation_table(analysis: Mapping[str, Any]) -> list[str]:
    lines = [
        "",
        f"## Correlation with {analysis['attack']} robust accuracy across runs (Spearman)",
        "",
        "| predictor | rho | p | n |",
        "|---|---|---|---|",
    ]
    for name, c in analysis["correlations"].items():
        rho = "n/a" if c["rho"] is None else f"{c['rho']:+.2f}"
        p = "n/a" if c["p"] is None else f"{c['p']:.2g}"
        lines.append(f"| {PREDICTORS.get(name, name)} | {rho} | {p} | {c['n']} |")
    return lines
