"""The few-shot section."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bioplastic.experiments._figures import COLORS, new_figure
from bioplastic.experiments.report._context import (
    NOT_RUN,
    Claim,
    ReportContext,
    Section,
    _combine,
    _get,
    _not_run,
    _num,
    _ordered,
)


def section_fewshot(ctx: ReportContext) -> Section:
    """Few-shot accuracies with 95% CIs, from ``fewshot_*.json`` (read defensively).

    Files named ``*tuning*`` are skipped. Expects rows
    ``accuracy: [{method, shots, rule, mean, ci95, ...}]`` (``ci95`` a half-width)
    and ``paired: [{method, shots, baseline, mean_diff, ci95, ...}]`` (bio minus baseline).
    Verdict rule: every paired bio - adam row (any method and shot count, every file) gives +1
    if ``mean_diff - ci95 > 0``, -1 if ``mean_diff + ci95 < 0``, else 0; combined as in
    ``_combine``.
    """
    title = "Few-shot generalisation"
    files = ctx.glob("fewshot_*.json")
    cmd_default = "the few-shot benchmark (fewshot_*.json)"
    if not files:
        return Section(
            title,
            f"*{NOT_RUN}*: no `fewshot_*.json` in the results folder.",
            [_not_run("fewshot", cmd_default, "fewshot_*.json")],
        )
    lines, signs, evidence, commands = [], [], [], []
    for name, data in files:
        data = _from_l2l_loop(data)
        recorded = data.get("command") or (data.get("benchmark") or {}).get("command")
        command = str(recorded or f"(command not recorded in {name})")
        rows = [r for r in data.get("accuracy", []) if isinstance(r, Mapping)]
        cfg = data.get("config", {})
        lines += [
            f"### {name}",
            "",
            f"dataset {cfg.get('dataset', '?')}, {cfg.get('ways', '?')}-way, "
            f"{cfg.get('episodes', '?')} episodes, seeds {cfg.get('seeds', '?')}; mean "
            "accuracy ± 95% CI half-width.",
            "",
        ]
        if not rows:
            lines += ["No `accuracy` rows found; keys: " + ", ".join(sorted(data)), ""]
        else:
            lines += ["| method | shots | rule | accuracy | 95% CI |", "|---|---|---|---|---|"]
            for r in rows:
                mean, ci = _num(r.get("mean")), _num(r.get("ci95"))
                lines.append(
                    f"| {r.get('method', '?')} | {r.get('shots', '?')} | {r.get('rule', '?')} "
                    f"| {'n/a' if mean is None else f'{mean:.3f}'} "
                    f"| {'n/a' if ci is None else f'± {ci:.3f}'} |"
                )
            path = _plot_fewshot(ctx, name, rows)
            if path is not None:
                lines += ["", ctx.link(path, f"{name}: few-shot accuracy")]
        for r in data.get("paired", []):
            if not isinstance(r, Mapping) or r.get("baseline") != "adam":
                continue
            mean, ci = _num(r.get("mean_diff")), _num(r.get("ci95"))
            if mean is None:
                continue
            sign = 0 if ci is None else (1 if mean - ci > 0 else (-1 if mean + ci < 0 else 0))
            signs.append(sign)
            if command not in commands:
                commands.append(command)
            ci_text = "" if ci is None else f" ± {ci:.3f}"
            evidence.append(
                f"{r.get('method', '?')} {r.get('shots', '?')}-shot: {mean:+.3f}{ci_text}"
            )
        lines.append("")
    claim = Claim(
        "fewshot",
        _combine(signs),
        ("bio - adam: " + "; ".join(evidence)) if evidence else "no paired bio - adam rows",
        "; ".join(commands) or cmd_default,
        "paired bio - adam accuracy, 95% CI excludes 0, every method and shot count",
    )
    return Section(title, "\n".join(lines), [claim])


#: learn2learn-loop learners (``benchmarks/fewshot_l2l.py``) -> (method, rule): the bio
#: learners' inner and outer steps are the bio rule's; MAML/MetaSGD are learn2learn's (SGD inner
#: step, Adam outer), the "adam" baseline of the other few-shot files.
_L2L_LEARNERS = {
    "maml": ("l2l-maml", "adam"), "biomaml": ("l2l-maml", "bio"),
    "metasgd": ("l2l-metasgd", "adam"), "biometasgd": ("l2l-metasgd", "bio"),
}  # fmt: skip


def _from_l2l_loop(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """``fewshot_l2l.json`` (``results: {"1-shot": {learner: {mean, ci95}, "a - b": {...}}}``)
    in the rows the section reads; any other file is returned as it is."""
    results = data.get("results")
    if "accuracy" in data or not isinstance(results, Mapping):
        return data
    accuracy, paired = [], []
    for shot_key, table in results.items():
        if not isinstance(table, Mapping):
            continue
        shots = str(shot_key).split("-")[0]
        for key, entry in table.items():
            if not isinstance(entry, Mapping):
                continue
            if key in _L2L_LEARNERS:
                method, rule = _L2L_LEARNERS[key]
                accuracy.append({"method": method, "shots": shots, "rule": rule,
                                 "mean": entry.get("mean"), "ci95": entry.get("ci95")})  # fmt: skip
            elif key in ("biomaml - maml", "biometasgd - metasgd"):
                method = _L2L_LEARNERS[key.split(" - ")[1]][0]
                diff, ci = entry.get("mean"), entry.get("ci95")
                paired.append({"method": method, "shots": shots, "baseline": "adam",
                               "mean_diff": diff, "ci95": ci})  # fmt: skip
    cfg = data.get("config", {}) if isinstance(data.get("config"), Mapping) else {}
    config = {"dataset": "glyphs (learn2learn's loop)", "ways": 5,
              "episodes": cfg.get("episodes", "?"), "seeds": [cfg.get("seed", "?")]}  # fmt: skip
    return {"command": cfg.get("command"), "config": config, "accuracy": accuracy,
            "paired": paired}  # fmt: skip


def _plot_fewshot(ctx: ReportContext, name: str, rows: list[Mapping[str, Any]]) -> Path | None:
    groups = sorted({(str(r.get("method", "?")), str(r.get("shots", "?"))) for r in rows})
    rules = _ordered(list({str(r.get("rule", "?")) for r in rows}))
    if not groups or not rules:
        return None
    fig = new_figure(max(6.0, 1.4 * len(groups) + 2), 3.8)
    ax = fig.subplots()
    width = 0.8 / len(rules)
    for i, rule in enumerate(rules):
        means, cis = [], []
        for method, shots in groups:
            row = next(
                (
                    r
                    for r in rows
                    if (str(r.get("method")), str(r.get("shots"))) == (method, shots)
                    and str(r.get("rule")) == rule
                ),
                None,
            )
            means.append(_num(_get(row, "mean")) or 0.0)
            cis.append(_num(_get(row, "ci95")) or 0.0)
        xs = [j + (i - (len(rules) - 1) / 2) * width for j in range(len(groups))]
        ax.bar(xs, means, width, yerr=cis, capsize=3, label=rule, color=COLORS.get(rule))
    ax.set_xticks(range(len(groups)), [f"{m}\n{s}-shot" for m, s in groups], fontsize=8)
    ax.set_ylabel("query accuracy (mean ± 95% CI)")
    ax.set_xlabel("method and shots")
    ax.set_ylim(0, 1)
    ax.legend(title="backbone rule", fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    ax.set_title(f"few-shot accuracy ({name})")
    path = ctx.figure(f"{Path(name).stem}.png")
    fig.savefig(path)
    return path
