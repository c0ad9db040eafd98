"""``bioplastic report``: one page that tests the paper's claims against our results files.

:func:`build_report` writes ``REPORT.md`` (and PNG figures under ``figures/`` next to it). The
page opens with a table of the paper's claims, each with a verdict, the numbers behind it and
the command that produced them, followed by one section per topic. Each section is a function
``section_*(ctx) -> Section`` listed in :data:`SECTIONS`; a section reads its results files
through :class:`ReportContext` (missing files render as *not run yet*, with the command that
would produce them), draws its figures and returns the claims it can judge. Verdicts are
computed from the files by the rules written in each section's docstring and repeated in the
report; no number in the report is typed in.

Results files read from ``--results`` (default ``benchmarks/results``):

* ``digits_rules.json`` (``benchmarks/digits_rules.py``,
  :func:`bioplastic.experiments.compare.compare_rules`): sparsity, log-magnitude shape, Dale
  violations;
* ``robustness_digits.json``, ``robustness_mnist1d.json`` (``benchmarks/robustness.py``,
  :func:`bioplastic.experiments.robustness.run_robustness`): robustness, activity probes,
  receptive fields;
* ``fewshot_*.json`` (the few-shot benchmark): rows ``accuracy`` and ``paired`` (read
  defensively: any missing key is reported, never fatal);
* ``stream_*.json`` (the continual-learning benchmark): any 2-D numeric array stored under a key
  containing ``acc`` and ``matrix`` is drawn as an accuracy matrix, any under a key containing
  ``alloc`` as a task x unit allocation heatmap.

Weight-magnitude histograms need trained weights: the report trains one model per rule in the
configuration of ``digits_rules.json`` (or :func:`~bioplastic.experiments.compare.compare_rules`'s
defaults), seed 0, and records the histograms in ``weight_histograms.json`` next to the report.

``quick=True`` first runs small versions of the digits comparison and of the digits robustness
experiment and writes their results next to the report (never into ``results_dir``), so the
whole page is produced in a few minutes on 2 cores; few-shot and stream results are still read
from ``results_dir``.
"""

from __future__ import annotations

import json
import logging
import math
import re
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "CLAIMS",
    "Claim",
    "ReportContext",
    "SECTIONS",
    "Section",
    "build_report",
    "section_continual",
    "section_emergence",
    "section_fewshot",
    "section_representation",
    "section_robustness",
    "section_weight_histograms",
]

logger = logging.getLogger(__name__)

#: The paper's claims, in the order of the claims table (key: short text).
CLAIMS: dict[str, str] = {
    "sparsity": "Sparsity emerges without explicit enforcement",
    "lognormal": "Lognormal weight distributions emerge without enforcement",
    "dale": "Dale's law holds without enforcement",
    "robustness": "Better adversarial robustness",
    "fewshot": "Better few-shot generalisation",
    "representation": "Biologically plausible representations",
    "allocation": "Task-specific encoding and neural resource allocation",
}

NOT_RUN = "not run yet"
RULE_ORDER = ("bio", "eg", "adam", "enforced", "sgd")
_COLORS = {
    "bio": "tab:green",
    "adam": "tab:blue",
    "eg": "tab:orange",
    "enforced": "tab:red",
    "sgd": "tab:purple",
}


@dataclass
class Claim:
    """One row of the claims table."""

    key: str
    verdict: str
    evidence: str
    command: str
    rule: str

    @property
    def claim(self) -> str:
        return CLAIMS.get(self.key, self.key)


@dataclass
class Section:
    """A rendered section: markdown body (figures already linked) and the claims it judged."""

    title: str
    body: str
    claims: list[Claim] = field(default_factory=list)


@dataclass
class ReportContext:
    """Where results are read and the report and figures written, plus a cache of files.

    ``generated_dir`` holds results produced by this report run (quick mode, weight
    histograms); files there take precedence over ``results_dir``.
    """

    results_dir: Path
    out: Path
    quick: bool = False
    progress: Callable[[str], None] | None = None
    generated_dir: Path | None = None
    notes: list[str] = field(default_factory=list)
    _cache: dict[str, Any] = field(default_factory=dict)

    @property
    def figures_dir(self) -> Path:
        return self.out.parent / "figures"

    def say(self, message: str) -> None:
        if self.progress is not None:
            self.progress(message)

    def path_of(self, name: str) -> Path | None:
        """The file ``name`` from ``generated_dir`` if there, else from ``results_dir``."""
        for folder in (self.generated_dir, self.results_dir):
            if folder is not None and (folder / name).is_file():
                return folder / name
        return None

    def load(self, name: str) -> dict[str, Any] | None:
        """Parsed JSON ``name``, or None when absent; an unreadable file is noted, not fatal."""
        if name in self._cache:
            return self._cache[name]
        path = self.path_of(name)
        data = None
        if path is not None:
            try:
                data = json.loads(path.read_text())
                if not isinstance(data, dict):
                    raise ValueError("top level is not an object")
            except (OSError, ValueError) as err:
                self.notes.append(f"could not read `{path.name}`: {err}")
                data = None
        self._cache[name] = data
        return data

    def glob(self, pattern: str) -> list[tuple[str, dict[str, Any]]]:
        """``(name, parsed JSON)`` of every readable file matching ``pattern`` (sorted).

        Files with ``tuning`` in their name are hyper-parameter searches, not results: they
        are skipped (and listed in the report's notes)."""
        names = set()
        for folder in (self.generated_dir, self.results_dir):
            if folder is not None and folder.is_dir():
                names |= {p.name for p in folder.glob(pattern) if p.is_file()}
        skipped = sorted(n for n in names if "tuning" in n)
        if skipped:
            note = "skipped tuning files (not results): " + ", ".join(f"`{n}`" for n in skipped)
            if note not in self.notes:
                self.notes.append(note)
        names -= set(skipped)
        out = []
        for name in sorted(names):
            data = self.load(name)
            if data is not None:
                out.append((name, data))
        return out

    def figure(self, name: str) -> Path:
        self.figures_dir.mkdir(parents=True, exist_ok=True)
        return self.figures_dir / name

    def link(self, path: Path, caption: str) -> str:
        rel = path.resolve().relative_to(self.out.parent.resolve())
        return f"![{caption}]({rel.as_posix()})"


# --------------------------------------------------------------------------- helpers


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _get(data: Any, *keys: Any, default: Any = None) -> Any:
    for key in keys:
        if isinstance(data, Mapping) and key in data:
            data = data[key]
        elif isinstance(data, list) and isinstance(key, int) and -len(data) <= key < len(data):
            data = data[key]
        else:
            return default
    return data


def _ms(ms: Any, digits: int = 3) -> str:
    mean, std = _num(_get(ms, "mean")), _num(_get(ms, "std"))
    if mean is None:
        return "n/a"
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")


def _ordered(keys: Sequence[str]) -> list[str]:
    rank = {r: i for i, r in enumerate(RULE_ORDER)}
    return sorted(keys, key=lambda k: (rank.get(k, len(rank)), k))


def _new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _ci_sign(low: Any, high: Any) -> int:
    low, high = _num(low), _num(high)
    if low is None or high is None:
        return 0
    return 1 if low > 0 else (-1 if high < 0 else 0)


def _combine(signs: Sequence[int]) -> str:
    """Verdict from per-comparison signs (+1 better, -1 worse, 0 no detectable difference)."""
    if not signs:
        return "not assessed"
    if all(s == 1 for s in signs):
        return "supported"
    if all(s == -1 for s in signs):
        return "contradicted"
    if all(s == 0 for s in signs):
        return "inconclusive (no detectable difference)"
    if any(s == 1 for s in signs) and not any(s == -1 for s in signs):
        return "partly supported"
    if any(s == -1 for s in signs) and not any(s == 1 for s in signs):
        return "not supported (worse or equal)"
    return "mixed"


def _not_run(key: str, command: str, what: str) -> Claim:
    return Claim(key, NOT_RUN, f"no {what}", command, "needs the results file")


def _quick_compare(ctx: ReportContext) -> None:
    from bioplastic.experiments.compare import compare_rules

    ctx.say("quick: digits comparison (biomlp, 2 seeds, 10 epochs)")
    results = compare_rules(models=("biomlp",), seeds=(0, 1), epochs=10)
    results["command"] = "bioplastic report --quick"
    _write_json(ctx.generated_dir / "digits_rules.json", results)


def _quick_robustness(ctx: ReportContext) -> None:
    from bioplastic.experiments.robustness import run_robustness

    ctx.say("quick: digits robustness (2 seeds, reduced epsilon grid)")
    results = run_robustness(
        "digits",
        seeds=2,
        epsilons=(0.0, 0.02, 0.05, 0.1, 0.2),
        l2_epsilons=(0.0, 0.25, 0.5, 1.0, 2.0),
        masking_restarts=1,
        finetune_epochs=2,
        progress=ctx.progress,
    )
    results["command"] = "bioplastic report --quick"
    _write_json(ctx.generated_dir / "robustness_digits.json", results)


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    from bioplastic._io import write_atomic

    write_atomic(path, json.dumps(data, indent=1, allow_nan=False) + "\n")


# --------------------------------------------------------------------------- sections


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
        conn = _num(_get(bio, "connectivity", "mean"))
        gap = None
        if adam is not None:
            a, b = (
                _num(_get(adam, "test_accuracy", "mean")),
                _num(_get(bio, "test_accuracy", "mean")),
            )
            gap = None if a is None or b is None else a - b
        if conn is not None:
            ok = conn <= 0.30 and gap is not None and gap <= 0.015
            verdict = "supported" if ok else ("partly supported" if conn < 0.9 else "not supported")
            gap_text = "n/a" if gap is None else f"{gap:+.3f}"
            sparsity.append(
                (verdict, f"{model}: connectivity {conn:.3f}, adam - bio acc. {gap_text}")
            )
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
        if skews and kurts:
            worst_s, worst_k = max(map(abs, skews)), max(map(abs, kurts))
            mean_s, mean_k = abs(statistics.fmean(skews)), abs(statistics.fmean(kurts))
            if worst_s <= 0.5 and worst_k <= 1.0:
                verdict = "supported"
            elif mean_s <= 0.5 and mean_k <= 1.0:
                verdict = "partly supported"
            else:
                verdict = "not supported"
            lognormal.append(
                (
                    verdict,
                    f"{model}: largest abs. skewness {worst_s:.2f}, largest abs. "
                    f"excess kurtosis {worst_k:.2f} (abs. of means {mean_s:.2f}, {mean_k:.2f})",
                )
            )
        dv, sf = bio.get("dale_violations_max"), bio.get("sign_flips_max")
        adam_dv = _get(adam, "dale_violations_max", default="n/a")
        dale.append(
            (
                "supported (by construction)" if dv == 0 and sf == 0 else "not supported",
                f"{model}: bio Dale violations {dv}, sign flips {sf} (adam: {adam_dv} "
                "violating units)",
            )
        )

    def claim(key: str, items: list[tuple[str, str]], rule: str) -> Claim:
        if not items:
            return Claim(key, "not assessed", "no bio runs in digits_rules.json", cmd, rule)
        order = ["not supported", "partly supported", "supported (by construction)", "supported"]
        worst = min((v for v, _ in items), key=lambda v: order.index(v) if v in order else -1)
        return Claim(key, worst, "; ".join(t for _, t in items), cmd, rule)

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
        "Sparsity under bio comes from synaptic noise plus an elimination floor in the rule "
        "(SPEC section 3), not from an L1 penalty or a connectivity target (which `enforced` "
        "uses); Dale's law holds for bio and eg by construction (sign-fixed multiplicative "
        "updates), so the comparison that matters is that adam breaks it.",
    ]
    return Section(
        "Sparsity, weight distribution and Dale's law (digits)", "\n".join(lines), claims
    )


def _plot_connectivity(ctx: ReportContext, summary: Mapping[str, Any], models: list[str]) -> Path:
    fig = _new_figure(10.0, 3.6)
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
    import torch

    from bioplastic.baselines import make_optimizer
    from bioplastic.dale import BioMLP
    from bioplastic.data.sources import load_digits_arrays
    from bioplastic.probes import synaptic_layers
    from bioplastic.representation import log_magnitude_histogram
    from bioplastic.train import train_epochs

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
    }
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
            model = BioMLP(64, hidden, 10, on_off=True, seed=0)
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
            _write_json(ctx.generated_dir / "weight_histograms.json", record)
    fig = _new_figure(11.0, 6.4)
    axes = fig.subplots(2, 2, sharex=True).reshape(-1)
    for ax, rule in zip(axes, rules, strict=True):
        h = hists[rule]
        edges = h["edges"]
        ax.stairs(
            h["density"],
            edges,
            fill=True,
            alpha=0.5,
            color=_COLORS[rule],
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
    from bioplastic.experiments.robustness import (
        plot_robustness_analysis,
        plot_robustness_curves,
    )

    lines, signs, evidence, commands = [], [], [], []
    for dataset, data in files:
        cfg = data.get("config", {})
        analysis = data.get("analysis", {})
        attack = analysis.get("attack", "pgd")
        commands.append(data.get("command", cmd_default))
        lines += [
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
        for key in list(cfg.get("rules", [])) + [
            k for k in summary if k not in cfg.get("rules", [])
        ]:
            s = summary.get(key)
            if s is None:
                continue
            cells = " | ".join(_ms(_get(s, "robust_mean", a)) for a in attacks)
            lines.append(
                f"| {key} | {_ms(s.get('epochs'), 1)} | {_ms(s.get('clean_accuracy'))} | {cells} |"
            )
        masked = _get(summary, "bio", "masked_runs")
        try:
            curves = plot_robustness_curves(data, ctx.figure(f"robustness_{dataset}.png"))
            lines += ["", ctx.link(curves, f"{dataset}: accuracy vs epsilon")]
            if data.get("interventions"):
                ana = plot_robustness_analysis(
                    data, ctx.figure(f"robustness_analysis_{dataset}.png")
                )
                lines += ["", ctx.link(ana, f"{dataset}: connectivity vs weight scale analysis")]
        except (KeyError, TypeError, ValueError) as err:
            ctx.notes.append(f"robustness_{dataset}.json: could not draw figures ({err})")
        findings = analysis.get("findings", [])
        if findings:
            lines += ["", "Findings (computed by `bioplastic.experiments.robustness.analyse`):", ""]
            lines += [f"- {f}" for f in findings]
        p = _get(analysis, "paired", "adam", attack)
        if p is not None:
            sign = _ci_sign(p.get("ci95_low"), p.get("ci95_high"))
            signs.append(sign)
            low, high = _num(p.get("ci95_low")), _num(p.get("ci95_high"))
            ci = "" if low is None else f" [95% CI {low:+.3f}, {high:+.3f}]"
            clean = _get(analysis, "paired", "adam", "clean_accuracy", "mean_diff")
            clean_text = "" if _num(clean) is None else f", clean {clean:+.3f}"
            evidence.append(
                f"{dataset}: bio - adam under {attack} {p['mean_diff']:+.3f}{ci}{clean_text}"
                + (f"; masking flagged on {masked} bio run(s)" if masked else "")
            )
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
    from bioplastic.experiments._common import paired_difference as _paired
    from bioplastic.experiments.robustness import receptive_field_grids
    from bioplastic.representation import plot_receptive_fields

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
        runs = data.get("runs", [])
        bio = {r["seed"]: r for r in runs if r.get("rule") == "bio" and "activity" in r}
        adam = {r["seed"]: r for r in runs if r.get("rule") == "adam" and "activity" in r}
        seeds = sorted(set(bio) & set(adam))
        if seeds:
            layer = _activity_layer(bio[seeds[0]])
            parts = []
            for stat in ("population_sparseness", "lifetime_sparseness"):
                diffs = [
                    bio[s]["activity"][layer][stat] - adam[s]["activity"][layer][stat]
                    for s in seeds
                    if _num(bio[s]["activity"][layer].get(stat)) is not None
                    and _num(adam[s]["activity"][layer].get(stat)) is not None
                ]
                if diffs:
                    p = _paired(diffs)
                    signs.append(_ci_sign(p["ci95_low"], p["ci95_high"]))
                    parts.append(f"{stat.split('_')[0]} {p['mean_diff']:+.3f}")
            evidence.append(f"{dataset}: bio - adam sparseness " + ", ".join(parts))
        grids = receptive_field_grids(data)
        if grids:
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
            figures.append(ctx.link(path, f"{dataset}: receptive fields"))
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


def _plot_fewshot(ctx: ReportContext, name: str, rows: list[Mapping[str, Any]]) -> Path | None:
    groups = sorted({(str(r.get("method", "?")), str(r.get("shots", "?"))) for r in rows})
    rules = _ordered(list({str(r.get("rule", "?")) for r in rows}))
    if not groups or not rules:
        return None
    fig = _new_figure(max(6.0, 1.4 * len(groups) + 2), 3.8)
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
        ax.bar(xs, means, width, yerr=cis, capsize=3, label=rule, color=_COLORS.get(rule))
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


def _matrices(data: Any, pattern: re.Pattern, path: tuple = ()) -> Iterator[tuple[str, list]]:
    """Every 2-D numeric array under a key matching ``pattern``, with its dotted path."""
    if isinstance(data, Mapping):
        for key, value in data.items():
            here = (*path, str(key))
            if pattern.search(str(key).lower()) and _is_matrix(value):
                yield ".".join(here), value
            else:
                yield from _matrices(value, pattern, here)
    elif isinstance(data, list) and not _is_matrix(data):
        for i, value in enumerate(data):
            yield from _matrices(value, pattern, (*path, str(i)))


def _is_matrix(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) > 0
        and all(
            isinstance(row, list) and len(row) == len(value[0]) and len(row) > 0 for row in value
        )
        and all(_num(v) is not None or v is None for row in value for v in row)
    )


def _label(path: str) -> str:
    """Strategy-like label of a matrix path: drop list indices and the last key."""
    parts = [p for p in path.split(".")[:-1] if not p.isdigit()]
    drop = {"strategies", "results", "runs", "experiences", "metrics", "summary"}
    parts = [p for p in parts if p not in drop]
    return "/".join(parts) or "run"


def _mean_offdiag_jaccard(alloc: list[list[float]]) -> float | None:
    sets = [{j for j, v in enumerate(row) if _num(v) and v > 0} for row in alloc]
    vals = []
    for a in range(len(sets)):
        for b in range(a + 1, len(sets)):
            union = sets[a] | sets[b]
            vals.append(len(sets[a] & sets[b]) / len(union) if union else 1.0)
    return statistics.fmean(vals) if vals else None


def _summary_unit_overlaps(data: dict) -> dict[str, float]:
    """``summary[strategy]["task_encoding"][-1]["unit_overlap_mean"]`` per strategy, if present.

    This is the stream benchmark's own measure (mean Jaccard overlap between the units two
    tasks recruited, after the last experience); used when no allocation array is stored.
    """
    summary = data.get("summary")
    out: dict[str, float] = {}
    if not isinstance(summary, dict):
        return out
    for label, entry in summary.items():
        encoding = entry.get("task_encoding") if isinstance(entry, dict) else None
        if isinstance(encoding, list) and encoding and isinstance(encoding[-1], dict):
            value = _num(encoding[-1].get("unit_overlap_mean"))
            if value is not None:
                out[str(label)] = value
    return out


def section_continual(ctx: ReportContext) -> Section:
    """Continual-learning accuracy matrices and task-allocation heatmaps from ``stream_*.json``.

    Read defensively (the stream benchmark's schema may evolve; files named ``*tuning*`` are
    skipped): every 2-D numeric array under
    a key containing ``acc`` and ``matrix`` is drawn as an accuracy matrix (rows: after training
    on experience i; columns: evaluated on experience j) and every one under a key containing
    ``alloc`` as a task x unit allocation heatmap; the last one found per strategy label counts.
    Verdict rule: with allocation heatmaps for bio and at least one other strategy in a file,
    bio gets +1 if its mean pairwise Jaccard overlap between tasks' recruited units is lower
    than every other strategy's (more task-specific), -1 if higher than every other's, else 0;
    combined over files as in ``_combine``.
    """
    title = "Continual learning: accuracy matrices and task allocation"
    files = ctx.glob("stream_*.json")
    cmd_default = "the stream benchmark (stream_*.json)"
    if not files:
        return Section(
            title,
            f"*{NOT_RUN}*: no `stream_*.json` in the results folder.",
            [_not_run("allocation", cmd_default, "stream_*.json")],
        )
    acc_re, alloc_re = re.compile(r"acc.*matrix|matrix.*acc"), re.compile(r"alloc")
    lines, signs, evidence, commands = [], [], [], []
    for name, data in files:
        recorded = data.get("command") or (data.get("benchmark") or {}).get("command")
        command = str(recorded or f"(command not recorded in {name})")
        accs = {_label(p): m for p, m in _matrices(data, acc_re)}
        allocs = {_label(p): m for p, m in _matrices(data, alloc_re)}
        lines += [f"### {name}", ""]
        if not accs and not allocs:
            lines += [
                "No accuracy matrix or allocation array found; top-level keys: "
                + ", ".join(sorted(map(str, data))),
                "",
            ]
            continue
        stem = Path(name).stem
        if command not in commands:
            commands.append(command)
        if accs:
            path = _plot_matrices(
                ctx,
                accs,
                f"{stem}_accuracy.png",
                f"{name}: accuracy matrices",
                "evaluated on experience",
                "after training experience",
                "accuracy",
                (0.0, 1.0),
            )
            lines += [ctx.link(path, f"{name}: accuracy matrices"), ""]
            rows = []
            for label, m in accs.items():
                last = [v for v in m[-1] if _num(v) is not None]
                if last:
                    rows.append(f"| {label} | {statistics.fmean(last):.3f} |")
            if rows:
                lines += [
                    "| strategy | final average accuracy (last row) |",
                    "|---|---|",
                    *rows,
                    "",
                ]
        if allocs:
            path = _plot_matrices(
                ctx,
                allocs,
                f"{stem}_allocation.png",
                f"{name}: task x unit allocation",
                "unit",
                "task",
                "recruited (1) / not (0)",
                None,
            )
            lines += [ctx.link(path, f"{name}: task allocation"), ""]
            overlaps = {k: _mean_offdiag_jaccard(v) for k, v in allocs.items()}
            overlaps = {k: v for k, v in overlaps.items() if v is not None}
        else:
            overlaps = _summary_unit_overlaps(data)
        if overlaps:
            bio = [k for k in overlaps if "bio" in k.lower()]
            others = [k for k in overlaps if k not in bio]
            if bio and others:
                b = overlaps[bio[0]]
                o = [overlaps[k] for k in others]
                signs.append(1 if b < min(o) else (-1 if b > max(o) else 0))
                evidence.append(
                    f"{name}: mean task-overlap of recruited units bio {b:.2f} vs "
                    + ", ".join(f"{k} {overlaps[k]:.2f}" for k in others)
                )
    claim = Claim(
        "allocation",
        _combine(signs) if signs else "not assessed (no bio and baseline allocation found)",
        "; ".join(evidence) or "no allocation heatmaps for bio and a baseline",
        "; ".join(commands) or cmd_default,
        "bio's mean Jaccard overlap of units recruited by different tasks lower than every "
        "baseline's",
    )
    return Section(title, "\n".join(lines), [claim])


def _plot_matrices(
    ctx: ReportContext,
    matrices: Mapping[str, list],
    filename: str,
    title: str,
    xlabel: str,
    ylabel: str,
    cbar: str,
    vrange: tuple[float, float] | None,
) -> Path:
    items = list(matrices.items())[:8]
    ncols = min(4, len(items))
    nrows = math.ceil(len(items) / ncols)
    fig = _new_figure(3.4 * ncols + 0.6, 3.0 * nrows + 0.4)
    axes = fig.subplots(nrows, ncols, squeeze=False).reshape(-1)
    image = None
    for ax, (label, m) in zip(axes, items, strict=False):
        values = [[math.nan if _num(v) is None else float(v) for v in row] for row in m]
        kwargs = {"vmin": vrange[0], "vmax": vrange[1]} if vrange else {}
        image = ax.imshow(values, cmap="viridis", aspect="auto", interpolation="nearest", **kwargs)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
    for ax in axes[len(items) :]:
        ax.set_visible(False)
    if image is not None:
        fig.colorbar(image, ax=list(axes[: len(items)]), shrink=0.8, label=cbar)
    fig.suptitle(title)
    path = ctx.figure(filename)
    fig.savefig(path)
    return path


#: The report's sections, in page order.
SECTIONS: tuple[Callable[[ReportContext], Section], ...] = (
    section_emergence,
    section_weight_histograms,
    section_robustness,
    section_representation,
    section_fewshot,
    section_continual,
)


# --------------------------------------------------------------------------- the page


def _claims_table(claims: list[Claim]) -> list[str]:
    by_key = {c.key: c for c in claims}
    lines = [
        "| claim of the paper | our verdict | measured | produced by |",
        "|---|---|---|---|",
    ]
    for key, text in CLAIMS.items():
        c = by_key.get(key)
        if c is None:
            lines.append(f"| {text} | not assessed | no section judged it | - |")
            continue
        evidence = c.evidence.replace("|", "/")
        lines.append(f"| {text} | **{c.verdict}** | {evidence} | `{c.command}` |")
    return lines


def build_report(
    results_dir: str | Path = "benchmarks/results",
    out: str | Path | None = None,
    *,
    quick: bool = False,
    sections: Sequence[Callable[[ReportContext], Section]] = SECTIONS,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Write the one-page report and its figures; returns the path of ``REPORT.md``.

    Args:
        results_dir: folder with the committed results files (see the module docstring).
        out: the markdown file to write; default ``<results_dir>/REPORT.md``. Figures go to
            ``<out folder>/figures/``.
        quick: run small versions of the digits comparison and robustness experiment first,
            writing their results next to ``out`` (which must then not be in ``results_dir``,
            whose committed results would otherwise be overwritten).
        sections: section functions to render, in order (default :data:`SECTIONS`).
        progress: called with a line per step (the CLI prints them).
    """
    results_dir = Path(results_dir)
    out = Path(out) if out is not None else results_dir / "REPORT.md"
    if out.suffix.lower() != ".md":
        raise ValueError(f"out must be a .md file, got {str(out)!r}")
    if not quick and not results_dir.is_dir():
        raise ValueError(f"results folder {str(results_dir)!r} does not exist")
    if quick and out.parent.resolve() == results_dir.resolve():
        raise ValueError(
            f"--quick would overwrite the committed results in {str(results_dir)!r}; "
            "write the quick report elsewhere with --out"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    ctx = ReportContext(
        results_dir=results_dir, out=out, quick=quick, progress=progress, generated_dir=out.parent
    )
    start = time.perf_counter()
    if quick:
        _quick_compare(ctx)
        _quick_robustness(ctx)
    rendered: list[Section] = []
    for section in sections:
        ctx.say(f"section: {section.__name__}")
        rendered.append(section(ctx))
    claims = [c for s in rendered for c in s.claims]
    mode = (
        "quick mode (`bioplastic report --quick`: small runs, not the committed results)"
        if quick
        else "full mode (`bioplastic report`: reads the committed results)"
    )
    lines = [
        "# bioplastic: does the bio rule do what the paper claims?",
        "",
        "Inoue, Röhrbein & Knoblauch (2026), arXiv:2603.03234, claim that their learning rule "
        "makes sparsity, lognormal weights and Dale's law emerge and brings robustness, few-shot "
        "generalisation and plausible, task-specific representations. bioplastic implements our "
        "own formulation of those principles (SPEC section 3), not the paper's equations. This "
        f"page was generated by `bioplastic report` in {mode}; every number comes from a results "
        "file or from training run by the report itself, and every verdict from the rule given "
        "below the table.",
        "",
        "## Claims and verdicts",
        "",
        *_claims_table(claims),
        "",
        "Verdict rules: "
        + "; ".join(f"*{CLAIMS.get(c.key, c.key)}*: {c.rule}" for c in claims)
        + ". Combined verdicts: *supported* if every comparison favours bio with a 95% CI "
        "excluding 0, *contradicted* if every one disfavours it, *inconclusive* if none "
        "is detectable, otherwise partly supported / not supported / mixed.",
        "",
    ]
    for s in rendered:
        lines += [f"## {s.title}", "", s.body, ""]
    if ctx.notes:
        lines += ["## Notes", "", *[f"- {n}" for n in ctx.notes], ""]
    lines.append(f"*Generated in {time.perf_counter() - start:.0f} s.*")
    from bioplastic._io import write_atomic

    write_atomic(out, "\n".join(lines) + "\n")
    return out
