"""Sections read from the robustness results: robustness and representations."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bioplastic.experiments._common import paired_difference
from bioplastic.experiments.report._context import (
    NOT_RUN,
    Claim,
    ReportContext,
    Section,
    _ci_sign,
    _combine,
    _get,
    _ms,
    _not_run,
    _num,
    _ordered,
)


def _robustness_files(ctx: ReportContext) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for dataset in ("digits", "mnist1d"):
        data = ctx.load(f"robustness_{dataset}.json")
        if data is not None:
            out.append((dataset, data))
    return out


def section_robustness(ctx: ReportContext) -> Section:
    """Robustness at matched clean accuracy, from ``robustness_{digits,mnist1d}.json``.

    Verdict rule: per dataset, the paired bio - adam difference (per seed) of mean robust
    accuracy over eps > 0 under the analysis' reference attack (the per-sample worst case of
    PGD and APGD-DLR; PGD in older files) gives +1 if its 95% CI lies above 0, -1 if below,
    else 0; the claim is *supported* iff every dataset gives +1, *contradicted* iff every one
    gives -1, *inconclusive* iff all give 0, and otherwise *partly supported* / *not supported*
    / *mixed* (see ``_combine``). Any gradient-masking flag on a bio run is stated.
    """
    cmd_default = "python benchmarks/robustness.py"
    files = _robustness_files(ctx)
    title = "Adversarial robustness at matched clean accuracy"
    if not files:
        return Section(
            title,
            f"*{NOT_RUN}* (run `{cmd_default}`).",
            [_not_run("robustness", cmd_default, "robustness_*.json")],
        )
    lines, signs, evidence, commands = [], [], [], []
    for dataset, data in files:
        analysis = data.get("analysis", {})
        commands.append(data.get("command", cmd_default))
        lines += _robustness_table(dataset, data)
        lines += _robustness_figures(ctx, dataset, data)
        findings = analysis.get("findings", [])
        if findings:
            lines += ["", "Findings (computed by `bioplastic.experiments.robustness.analyse`):", ""]
            lines += [f"- {f}" for f in findings]
        verdict = _robustness_verdict(dataset, data)
        if verdict is not None:
            signs.append(verdict[0])
            evidence.append(verdict[1])
        lines.append("")
    claim = Claim(
        "robustness",
        _combine(signs),
        "; ".join(evidence) or "no bio-adam comparison in the files",
        "; ".join(dict.fromkeys(commands)),
        "paired bio - adam mean robust accuracy (reference attack) per dataset, 95% t-CI over "
        "seeds excludes 0",
    )
    return Section(title, "\n".join(lines), [claim])


def _robustness_table(dataset: str, data: Mapping[str, Any]) -> list[str]:
    """The heading, the setting and the robust-accuracy table of one dataset."""
    cfg = data.get("config", {})
    lines = [
        f"### {dataset}",
        "",
        f"{cfg.get('model')}, seeds {cfg.get('seeds')}, each rule stopped when validation "
        f"accuracy first reached {cfg.get('target_accuracy')}; mean robust accuracy over "
        "eps > 0 (mean ± std over seeds) with the clean test accuracy of the same models. "
        f"Details: `robustness_{dataset}.md`.",
        "",
    ]
    attacks = [
        a
        for a in cfg.get("attacks", [])
        if a in _get(data, "summary", "bio", "robust_mean", default={})
    ]
    lines += [
        "| rule | epochs | clean | " + " | ".join(attacks) + " |",
        "|---|---|---|" + "---|" * len(attacks),
    ]
    summary = data.get("summary", {})
    for key in list(cfg.get("rules", [])) + [k for k in summary if k not in cfg.get("rules", [])]:
        s = summary.get(key)
        if s is None:
            continue
        cells = " | ".join(_ms(_get(s, "robust_mean", a)) for a in attacks)
        lines.append(
            f"| {key} | {_ms(s.get('epochs'), 1)} | {_ms(s.get('clean_accuracy'))} | {cells} |"
        )
    return lines


def _robustness_figures(ctx: ReportContext, dataset: str, data: Mapping[str, Any]) -> list[str]:
    """Links to the accuracy-vs-epsilon and analysis figures of one dataset (drawn here)."""
    from bioplastic.experiments.robustness import (
        plot_robustness_analysis,
        plot_robustness_curves,
    )

    lines: list[str] = []
    try:
        curves = plot_robustness_curves(data, ctx.figure(f"robustness_{dataset}.png"))
        lines += ["", ctx.link(curves, f"{dataset}: accuracy vs epsilon")]
        if data.get("interventions"):
            ana = plot_robustness_analysis(data, ctx.figure(f"robustness_analysis_{dataset}.png"))
            lines += ["", ctx.link(ana, f"{dataset}: connectivity vs weight scale analysis")]
    except (KeyError, TypeError, ValueError) as err:
        ctx.notes.append(f"robustness_{dataset}.json: could not draw figures ({err})")
    return lines


def _robustness_verdict(dataset: str, data: Mapping[str, Any]) -> tuple[int, str] | None:
    """``(sign, evidence)`` of the paired bio - adam difference under the reference attack."""
    analysis = data.get("analysis", {})
    attack = analysis.get("attack", "pgd")
    masked = _get(data.get("summary", {}), "bio", "masked_runs")
    p = _get(analysis, "paired", "adam", attack)
    if p is None:
        return None
    sign = _ci_sign(p.get("ci95_low"), p.get("ci95_high"))
    low, high = _num(p.get("ci95_low")), _num(p.get("ci95_high"))
    ci = "" if low is None else f" [95% CI {low:+.3f}, {high:+.3f}]"
    clean = _get(analysis, "paired", "adam", "clean_accuracy", "mean_diff")
    clean_text = "" if _num(clean) is None else f", clean {clean:+.3f}"
    return (
        sign,
        f"{dataset}: bio - adam under {attack} {p['mean_diff']:+.3f}{ci}{clean_text}"
        + (f"; masking flagged on {masked} bio run(s)" if masked else ""),
    )


def _activity_layer(summary_or_run: Mapping[str, Any]) -> str | None:
    act = summary_or_run.get("activity", {})
    for name, stats in act.items():
        if "population_sparseness" in stats:
            return name
    return None


def section_representation(ctx: ReportContext) -> Section:
    """Activity statistics and receptive fields, from the robustness runs (test set, models at
    matched clean accuracy).

    Verdict rule ("biologically plausible" operationalised narrowly as *sparser* activity, as
    measured by Vinje-Gallant sparseness): per dataset and for both population and lifetime
    sparseness of the first hidden layer, the paired bio - adam difference over seeds gives +1
    if its 95% t-CI lies above 0, -1 if below, else 0; combined as in ``_combine``. Silent
    units, participation ratio and E/I balance are shown, not scored.
    """
    files = _robustness_files(ctx)
    title = "Representations: activity and receptive fields"
    cmd = "python benchmarks/robustness.py"
    if not files:
        return Section(
            title,
            f"*{NOT_RUN}* (run `{cmd}`).",
            [_not_run("representation", cmd, "robustness_*.json")],
        )
    lines = [
        "Hidden-layer activity on the test set (mean ± std over seeds). Sparseness: Vinje-Gallant"
        " (0 dense, 1 one-hot); participation ratio: effective dimensionality; E/I correlation: "
        "correlation of each output unit's excitatory and inhibitory input currents.",
        "",
        "| dataset | rule | population sparseness | lifetime sparseness | silent units "
        "| participation ratio | activity skewness | E/I correlation (readout) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    signs, evidence, figures, commands = [], [], [], []
    for dataset, data in files:
        commands.append(str(data.get("command", cmd)))
        lines += _activity_rows(dataset, data)
        stat_signs, text = _sparseness_verdict(dataset, data)
        signs += stat_signs
        if text is not None:
            evidence.append(text)
        link = _receptive_fields(ctx, dataset, data)
        if link is not None:
            figures.append(link)
    lines += ["", *figures]
    lines += [
        "",
        "Effective filter of an ON/OFF BioMLP: each pixel reaches the first layer through an "
        "excitatory and an inhibitory copy, so a unit's filter is its E-copy magnitude minus its "
        "I-copy magnitude per pixel (`bioplastic.representation.effective_filters`).",
    ]
    claim = Claim(
        "representation",
        _combine(signs),
        "; ".join(evidence) or "no paired activity data",
        "; ".join(dict.fromkeys(commands)),
        "paired bio - adam population and lifetime sparseness (first hidden layer), 95% t-CI "
        "over seeds excludes 0, every dataset",
    )
    return Section(title, "\n".join(lines), [claim])


def _activity_rows(dataset: str, data: Mapping[str, Any]) -> list[str]:
    """One activity-table row per rule of ``dataset`` (first hidden layer, readout E/I)."""
    lines = []
    summary = data.get("summary", {})
    for rule in data.get("config", {}).get("rules", []):
        s = summary.get(rule, {})
        layer = _activity_layer(s)
        if layer is None:
            continue
        a = s["activity"][layer]
        ei_layers = [v for k, v in s["activity"].items() if k.endswith("(E/I)")]
        ei = ei_layers[-1] if ei_layers else {}
        lines.append(
            f"| {dataset} | {rule} | {_ms(a.get('population_sparseness'))} "
            f"| {_ms(a.get('lifetime_sparseness'))} | {_ms(a.get('silent_fraction'))} "
            f"| {_ms(a.get('participation_ratio'), 1)} | {_ms(a.get('skewness'), 2)} "
            f"| {_ms(ei.get('ei_correlation_mean'), 2)} |"
        )
    return lines


def _sparseness_verdict(dataset: str, data: Mapping[str, Any]) -> tuple[list[int], str | None]:
    """Signs of the paired bio - adam population and lifetime sparseness, and the evidence
    (``None`` without seeds where both rules recorded activity)."""
    runs = data.get("runs", [])
    bio = {r["seed"]: r for r in runs if r.get("rule") == "bio" and "activity" in r}
    adam = {r["seed"]: r for r in runs if r.get("rule") == "adam" and "activity" in r}
    seeds = sorted(set(bio) & set(adam))
    if not seeds:
        return [], None
    layer = _activity_layer(bio[seeds[0]])
    signs, parts = [], []
    for stat in ("population_sparseness", "lifetime_sparseness"):
        diffs = [
            bio[s]["activity"][layer][stat] - adam[s]["activity"][layer][stat]
            for s in seeds
            if _num(bio[s]["activity"][layer].get(stat)) is not None
            and _num(adam[s]["activity"][layer].get(stat)) is not None
        ]
        if diffs:
            p = paired_difference(diffs)
            signs.append(_ci_sign(p["ci95_low"], p["ci95_high"]))
            parts.append(f"{stat.split('_')[0]} {p['mean_diff']:+.3f}")
    return signs, f"{dataset}: bio - adam sparseness " + ", ".join(parts)


def _receptive_fields(ctx: ReportContext, dataset: str, data: Mapping[str, Any]) -> str | None:
    """The link to ``dataset``'s receptive-field figure (drawn here), if the file has them."""
    from bioplastic.experiments.robustness import receptive_field_grids
    from bioplastic.representation import plot_receptive_fields

    grids = receptive_field_grids(data)
    if not grids:
        return None
    shape = data["receptive_fields"][next(iter(grids))]["image_shape"]
    one_d = len(shape) == 1
    path = plot_receptive_fields(
        {r: grids[r] for r in _ordered(list(grids))},
        ctx.figure(f"receptive_fields_{dataset}.png"),
        title=f"{dataset}: first-layer effective filters (E-copy minus I-copy), the 16 "
        "strongest units per rule, seed 0",
        xlabel="input position (sample index)" if one_d else "pixel column",
        ylabel="unit (one filter per row)" if one_d else "pixel row",
    )
    return ctx.link(path, f"{dataset}: receptive fields")
