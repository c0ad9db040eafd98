"""Sections on what emerges in trained weights: sparsity, weight distribution, Dale's law."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bioplastic.experiments._common import write_json
from bioplastic.experiments._figures import COLORS, new_figure
from bioplastic.experiments.report._context import (
    NOT_RUN,
    Claim,
    ReportContext,
    Section,
    _get,
    _ms,
    _not_run,
    _num,
    _ordered,
)


def section_emergence(ctx: ReportContext) -> Section:
    """Sparsity, log-magnitude shape and Dale's law from ``digits_rules.json``.

    Verdict rules (per model kind present; the weakest kind decides):

    * sparsity: *supported* iff bio's mean connectivity <= 0.30 and its test accuracy is
      within 0.015 of adam's (:data:`bioplastic.experiments.compare.TARGETS`); *partly
      supported* iff connectivity < 0.9 but a target is missed; else *not supported*.
    * lognormal: *supported* iff over every bio run and layer |skewness| <= 0.5 and
      |excess kurtosis| <= 1.0 of ``ln|w|``; *partly supported* iff the means over runs and
      layers meet these bounds but the worst case does not; else *not supported*.
    * Dale: *supported* iff bio has 0 Dale violations and 0 sign flips in every run (this
      holds by construction of the rule, which cannot flip a sign).
    """
    cmd = "python benchmarks/digits_rules.py"
    data = ctx.load("digits_rules.json")
    if data is None:
        body = f"*{NOT_RUN}*: `digits_rules.json` is missing (run `{cmd}`)."
        return Section(
            "Sparsity, weight distribution and Dale's law (digits)",
            body,
            [_not_run(k, cmd, "digits_rules.json") for k in ("sparsity", "lognormal", "dale")],
        )
    cmd = data.get("command", cmd)
    summary = data.get("summary", {})
    runs = data.get("runs", [])
    models = sorted({k.split("/")[0] for k in summary})
    lines = [
        f"From `digits_rules.json`: {_get(data, 'config', 'epochs')} epochs, seeds "
        f"{_get(data, 'config', 'seeds')}, hidden {_get(data, 'config', 'hidden')} "
        "(mean ± std over seeds).",
        "",
        "| model | rule | test accuracy | connectivity | Dale violations (max) | "
        "sign flips (max) |",
        "|---|---|---|---|---:|---:|",
    ]
    for key in summary:
        model, rule = key.split("/", 1)
        s = summary[key]
        lines.append(
            f"| {model} | {rule} | {_ms(s.get('test_accuracy'))} | {_ms(s.get('connectivity'))} "
            f"| {s.get('dale_violations_max', 'n/a')} | {s.get('sign_flips_max', 'n/a')} |"
        )
    fig_path = _plot_connectivity(ctx, summary, models)
    lines += ["", ctx.link(fig_path, "connectivity and Dale violations per rule")]

    sparsity, lognormal, dale = [], [], []
    for model in models:
        bio, adam = summary.get(f"{model}/bio"), summary.get(f"{model}/adam")
        if bio is None:
            continue
        item = _sparsity_item(model, bio, adam)
        if item is not None:
            sparsity.append(item)
        item = _lognormal_item(model, runs)
        if item is not None:
            lognormal.append(item)
        dale.append(_dale_item(model, bio, adam))

    def claim(key: str, items: list[tuple[str, str]], rule: str) -> Claim:
        return _worst_claim(key, items, rule, cmd)

    claims = [
        claim(
            "sparsity",
            sparsity,
            "connectivity <= 0.30 at <= 0.015 accuracy cost vs adam; partly if < 0.9",
        ),
        claim(
            "lognormal",
            lognormal,
            "every run and layer: |skew| <= 0.5, |excess kurtosis| "
            "<= 1 of ln|w|; partly if only the means are",
        ),
        claim("dale", dale, "0 Dale violations and 0 sign flips in every bio run"),
    ]
    lines += [
        "",
        "Sparsity under bio comes from a fixed metabolic cost per synapse, which weak synapses "
        "pay most, and elimination relative to each unit's surviving synapses (rule v2, SPEC "
        "section 3), not from an L1 penalty or a connectivity target (which `enforced` "
        "uses); Dale's law holds for bio and eg by construction (sign-fixed multiplicative "
        "updates), so the comparison that matters is that adam breaks it.",
    ]
    return Section(
        "Sparsity, weight distribution and Dale's law (digits)", "\n".join(lines), claims
    )


def _sparsity_item(
    model: str, bio: Mapping[str, Any], adam: Mapping[str, Any] | None
) -> tuple[str, str] | None:
    """``(verdict, evidence)`` of the sparsity claim for ``model``, or ``None`` (no data)."""
    conn = _num(_get(bio, "connectivity", "mean"))
    gap = None
    if adam is not None:
        a, b = (
            _num(_get(adam, "test_accuracy", "mean")),
            _num(_get(bio, "test_accuracy", "mean")),
        )
        gap = None if a is None or b is None else a - b
    if conn is None:
        return None
    ok = conn <= 0.30 and gap is not None and gap <= 0.015
    verdict = "supported" if ok else ("partly supported" if conn < 0.9 else "not supported")
    gap_text = "n/a" if gap is None else f"{gap:+.3f}"
    return (verdict, f"{model}: connectivity {conn:.3f}, adam - bio acc. {gap_text}")


def _lognormal_item(model: str, runs: list[Mapping[str, Any]]) -> tuple[str, str] | None:
    """``(verdict, evidence)`` of the lognormal claim for ``model``'s bio runs, or ``None``."""
    bio_runs = [r for r in runs if r.get("model") == model and r.get("rule") == "bio"]
    skews = [
        _num(l.get("log_mag_skewness")) for r in bio_runs for l in r.get("layers", {}).values()
    ]
    kurts = [
        _num(l.get("log_mag_excess_kurtosis"))
        for r in bio_runs
        for l in r.get("layers", {}).values()
    ]
    skews, kurts = [s for s in skews if s is not None], [k for k in kurts if k is not None]
    if not (skews and kurts):
        return None
    worst_s, worst_k = max(map(abs, skews)), max(map(abs, kurts))
    mean_s, mean_k = abs(statistics.fmean(skews)), abs(statistics.fmean(kurts))
    if worst_s <= 0.5 and worst_k <= 1.0:
        verdict = "supported"
    elif mean_s <= 0.5 and mean_k <= 1.0:
        verdict = "partly supported"
    else:
        verdict = "not supported"
    return (
        verdict,
        f"{model}: largest abs. skewness {worst_s:.2f}, largest abs. "
        f"excess kurtosis {worst_k:.2f} (abs. of means {mean_s:.2f}, {mean_k:.2f})",
    )


def _dale_item(
    model: str, bio: Mapping[str, Any], adam: Mapping[str, Any] | None
) -> tuple[str, str]:
    """``(verdict, evidence)`` of the Dale claim for ``model``."""
    dv, sf = bio.get("dale_violations_max"), bio.get("sign_flips_max")
    adam_dv = _get(adam, "dale_violations_max", default="n/a")
    return (
        "supported (by construction)" if dv == 0 and sf == 0 else "not supported",
        f"{model}: bio Dale violations {dv}, sign flips {sf} (adam: {adam_dv} violating units)",
    )


def _worst_claim(key: str, items: list[tuple[str, str]], rule: str, cmd: str) -> Claim:
    """The claim ``key`` with the weakest verdict of ``items`` (one per model kind)."""
    if not items:
        return Claim(key, "not assessed", "no bio runs in digits_rules.json", cmd, rule)
    order = ["not supported", "partly supported", "supported (by construction)", "supported"]
    worst = min((v for v, _ in items), key=lambda v: order.index(v) if v in order else -1)
    return Claim(key, worst, "; ".join(t for _, t in items), cmd, rule)


def _plot_connectivity(ctx: ReportContext, summary: Mapping[str, Any], models: list[str]) -> Path:
    fig = new_figure(10.0, 3.6)
    ax1, ax2 = fig.subplots(1, 2)
    width = 0.8 / max(len(models), 1)
    rules = _ordered(list({k.split("/", 1)[1] for k in summary}))
    for i, model in enumerate(models):
        conn = [_num(_get(summary, f"{model}/{r}", "connectivity", "mean")) or 0.0 for r in rules]
        err = [_num(_get(summary, f"{model}/{r}", "connectivity", "std")) or 0.0 for r in rules]
        viol = [_num(_get(summary, f"{model}/{r}", "dale_violations_max")) or 0.0 for r in rules]
        xs = [j + (i - (len(models) - 1) / 2) * width for j in range(len(rules))]
        ax1.bar(xs, conn, width, yerr=err, capsize=3, label=model)
        ax2.bar(xs, viol, width, label=model)
    for ax in (ax1, ax2):
        ax.set_xticks(range(len(rules)), rules)
        ax.set_xlabel("learning rule")
        ax.grid(alpha=0.3, axis="y")
        ax.legend(title="model", fontsize=8)
    ax1.set_ylabel("connectivity (fraction of synapses present)")
    ax1.set_ylim(0, 1.05)
    ax1.set_title("connectivity after training (mean ± std)")
    ax2.set_ylabel("units violating Dale (max)")
    ax2.set_title("Dale violations")
    fig.suptitle("digits: sparsity and Dale's law per learning rule (digits_rules.json)")
    path = ctx.figure("connectivity_dale.png")
    fig.savefig(path)
    return path


def section_weight_histograms(ctx: ReportContext) -> Section:
    """Histograms of ``log10 |w|`` per rule with the maximum-likelihood lognormal overlaid.

    One BioMLP per rule (bio, eg, adam, enforced) is trained on digits in the configuration of
    ``digits_rules.json`` (seed 0; quick mode: 10 epochs); all synaptic layers are pooled for
    the histogram. The histograms are recorded in ``weight_histograms.json`` next to the
    report and reused while that configuration does not change. For adam, whose weights
    change sign, ``|w|`` is used. No verdict: the lognormal claim is judged on all seeds in
    the section above; this is the picture.
    """
    from bioplastic.baselines import interneurons_for

    cfg = _get(ctx.load("digits_rules.json"), "config", default={}) or {}
    epochs = 10 if ctx.quick else int(cfg.get("epochs", 30))
    batch = int(cfg.get("batch_size", 32))
    hidden = tuple(cfg.get("hidden", (256,)))
    rules = ("bio", "eg", "adam", "enforced")
    config = {
        "model": "biomlp",
        "hidden": list(hidden),
        "epochs": epochs,
        "batch_size": batch,
        "seed": 0,
        "dataset": "digits",
        "interneurons": {rule: interneurons_for(rule) for rule in rules},
    }
    hists = _weight_histograms(ctx, config, rules, hidden, epochs, batch)
    path = _plot_weight_histograms(ctx, hists, rules, hidden, epochs)
    lines = [
        "| rule | synapses present | mu (ln) | sigma (ln) | KS distance to lognormal fit |",
        "|---|---|---|---|---|",
    ]
    for rule in rules:
        h = hists[rule]
        lines.append(
            f"| {rule} | {h['n_present']}/{h['n_total']} | {h['mu']:.2f} | {h['sigma']:.2f} "
            f"| {h['ks_distance']:.3f} |"
        )
    lines += ["", ctx.link(path, "weight-magnitude histograms with lognormal fits")]
    return Section("Weight-magnitude distributions", "\n".join(lines))


def _weight_histograms(
    ctx: ReportContext,
    config: dict[str, Any],
    rules: tuple[str, ...],
    hidden: tuple[int, ...],
    epochs: int,
    batch: int,
) -> dict[str, Any]:
    """Per rule, the ``log10 |w|`` histogram: from ``weight_histograms.json`` when its
    configuration is ``config``, else by training one model per rule (and recording them)."""
    import torch

    from bioplastic.baselines import interneurons_for, make_optimizer
    from bioplastic.dale import BioMLP
    from bioplastic.data.sources import load_digits_arrays
    from bioplastic.probes import synaptic_layers
    from bioplastic.representation import log_magnitude_histogram
    from bioplastic.train import train_epochs

    cached = ctx.load("weight_histograms.json")
    if (
        cached is not None
        and cached.get("config") == config
        and all(r in cached.get("histograms", {}) for r in rules)
    ):
        hists = cached["histograms"]
        ctx.say("weight histograms: reusing weight_histograms.json (same configuration)")
    else:
        x_train, y_train, _, _ = (torch.as_tensor(a) for a in load_digits_arrays(seed=0))
        weights = {}
        ctx.say(f"weight histograms: training {', '.join(rules)} for {epochs} epochs")
        for rule in rules:
            torch.manual_seed(0)
            model = BioMLP(64, hidden, 10, on_off=True, seed=0, interneurons=interneurons_for(rule))
            optimizer = make_optimizer(rule, model.parameters())
            train_epochs(model, optimizer, x_train, y_train, epochs, batch, 0)
            weights[rule] = [m.weight.detach().clone() for _, m in synaptic_layers(model)]
        # one shared axis, wide enough for every rule's weights
        logs = [torch.log10(w[w != 0].abs()) for ws in weights.values() for w in ws]
        lo = math.floor(min(float(t.min()) for t in logs if t.numel()) * 2) / 2
        hi = math.ceil(max(float(t.max()) for t in logs if t.numel()) * 2) / 2
        hists = {
            rule: log_magnitude_histogram(ws, bins=60, log10_range=(lo, hi))
            for rule, ws in weights.items()
        }
        record = {
            "config": config,
            "histograms": hists,
            "command": "bioplastic report" + (" --quick" if ctx.quick else ""),
        }
        if ctx.generated_dir is not None:
            write_json(ctx.generated_dir / "weight_histograms.json", record)
    return hists


def _plot_weight_histograms(
    ctx: ReportContext,
    hists: Mapping[str, Any],
    rules: tuple[str, ...],
    hidden: tuple[int, ...],
    epochs: int,
) -> Path:
    fig = new_figure(11.0, 6.4)
    axes = fig.subplots(2, 2, sharex=True).reshape(-1)
    for ax, rule in zip(axes, rules, strict=True):
        h = hists[rule]
        edges = h["edges"]
        ax.stairs(
            h["density"],
            edges,
            fill=True,
            alpha=0.5,
            color=COLORS[rule],
            label=f"{rule}: {h['n_present']}/{h['n_total']} synapses present",
        )
        xs = [edges[0] + (edges[-1] - edges[0]) * i / 400 for i in range(401)]
        m, s = h["log10_mean"], h["log10_std"]
        if s > 0:
            ys = [math.exp(-0.5 * ((x - m) / s) ** 2) / (s * math.sqrt(2 * math.pi)) for x in xs]
            ax.plot(
                xs,
                ys,
                "k-",
                lw=1.2,
                label=f"lognormal fit: mu={h['mu']:.2f}, sigma={h['sigma']:.2f} (ln units)",
            )
        ax.set_title(f"{rule} (KS distance to fit {h['ks_distance']:.3f})")
        ax.set_ylabel("density per decade")
        ax.legend(fontsize=7, loc="upper left")
        ax.grid(alpha=0.3)
    for ax in axes[2:]:
        ax.set_xlabel("log10 |w| (weight magnitude, log scale)")
    fig.suptitle(
        f"digits BioMLP {list(hidden)}, {epochs} epochs, seed 0: distribution of weight "
        "magnitudes (all layers) with fitted lognormal"
    )
    path = ctx.figure("weight_histograms.png")
    fig.savefig(path)
    return path
