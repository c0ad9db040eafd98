"""The robustness results as markdown."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bioplastic.experiments.robustness.analysis import PREDICTORS
from bioplastic.experiments.robustness.data import INTERVENTIONS


def _fmt(ms: Mapping[str, Any] | None, digits: int = 3) -> str:
    if not ms or ms.get("mean") is None:
        return "n/a"
    return f"{ms['mean']:.{digits}f} ± {ms['std']:.{digits}f}"


def format_markdown(results: Mapping[str, Any]) -> str:
    """The results as markdown: protocol, matched-accuracy training, robust accuracy per attack
    and epsilon (mean ± std over seeds, with clean accuracy in every row), masking checks,
    weight scale and gradients, interventions, correlations and findings."""
    cfg = results["config"]
    summary = results["summary"]
    rules = [r for r in cfg["rules"] if r in summary]
    lines = [
        f"# Robustness at matched clean accuracy: {cfg['dataset']}",
        "",
        f"Model {cfg['model']}; rules {', '.join(rules)}; seeds {cfg['seeds']} "
        f"(mean ± std over seeds). Protocol: {cfg['protocol']} (target validation accuracy "
        f"{cfg['target_accuracy']}). Test set: {cfg['n_test']} samples; epsilon units: "
        f"{cfg['eps_units']}; input range {[round(v, 3) for v in cfg['input_range']]}. PGD: "
        f"{cfg['pgd_steps']} steps, step {cfg['pgd_step_size']}, {cfg['restarts']} restart(s). "
        "Robust accuracy counts a sample only if it is also correct when clean.",
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
    for attack in cfg["attacks"]:
        eps = cfg["epsilons"][attack]
        lines += [
            "",
            f"## {attack}: robust accuracy vs epsilon",
            "",
            "| rule | clean | " + " | ".join(f"eps={e:g}" for e in eps) + " | mean (eps>0) |",
            "|---|---|" + "---|" * (len(eps) + 1),
        ]
        for key in rules + [k for k in INTERVENTIONS if k in summary]:
            s = summary[key]
            cells = " | ".join(_fmt(ms) for ms in s["accuracy"][attack])
            lines.append(
                f"| {key} | {_fmt(s['clean_accuracy'])} | {cells} "
                f"| {_fmt(s['robust_mean'][attack])} |"
            )
    lines += [
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
    lines += [
        "",
        "## Weight scale and input sensitivity",
        "",
        "| model | clean | connectivity | Lipschitz bound | logit margin | loss-gradient L1 "
        "| linearised L-inf radius |",
        "|---|---|---|---|---|---|---|",
    ]
    for key in rules + [k for k in INTERVENTIONS if k in summary]:
        s = summary[key]
        g = s["gradients"]
        lines.append(
            f"| {key} | {_fmt(s['clean_accuracy'])} | {_fmt(s['connectivity'])} "
            f"| {_fmt(s['lipschitz_bound'], 1)} | {_fmt(g['logit_margin'], 2)} "
            f"| {_fmt(g['ce_grad_l1'], 2)} | {_fmt(g['linearized_radius_linf'], 4)} |"
        )
    activity_rows = []
    for rule in rules:
        act = summary[rule].get("activity", {})
        for layer, stats in act.items():
            if "population_sparseness" in stats:
                activity_rows.append(
                    f"| {rule} | {layer} | {_fmt(stats['population_sparseness'])} "
                    f"| {_fmt(stats['lifetime_sparseness'])} | {_fmt(stats['silent_fraction'])} "
                    f"| {_fmt(stats['participation_ratio'], 1)} | {_fmt(stats['skewness'], 2)} |"
                )
    if activity_rows:
        lines += [
            "",
            "## Hidden activity (test set)",
            "",
            "| rule | layer | population sparseness | lifetime sparseness | silent fraction "
            "| participation ratio | skewness |",
            "|---|---|---|---|---|---|---|",
            *activity_rows,
        ]
    analysis = results.get("analysis", {})
    if analysis.get("correlations"):
        lines += [
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
    if analysis.get("findings"):
        lines += ["", "## Findings (computed by `analyse`, rules in its docstring)", ""]
        lines += [f"- {f}" for f in analysis["findings"]]
    if results.get("command"):
        lines += ["", f"Produced by `{results['command']}` in {results.get('seconds', 0):.0f} s."]
    return "\n".join(lines) + "\n"
