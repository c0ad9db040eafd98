"""Learning rules side by side on the bundled digits: accuracy and weight statistics.

This is the foundation comparison: each rule trains the same model from the same Dale
initialisation on the same batches (the BioMLP's readout has interneurons for bio only,
:func:`~bioplastic.baselines.interneurons_for`; its hidden layer is the same), and we measure
what each rule makes of the weights: test accuracy, connectivity, Dale violations, sign flips
and the shape of the log-magnitude distribution per layer.
Used by ``bioplastic compare`` and ``benchmarks/digits_rules.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from bioplastic._progress import Stages, bar
from bioplastic.baselines import OPTIMIZER_NAMES, interneurons_for, make_optimizer
from bioplastic.dale import BioMLP, dalify
from bioplastic.data.sources import load_digits_arrays
from bioplastic.experiments._common import mean_std, n_seeds, without_spread
from bioplastic.probes import weight_report
from bioplastic.train import accuracy, train_epochs

__all__ = ["MODEL_KINDS", "TARGETS", "check_targets", "compare_rules", "format_markdown"]

MODEL_KINDS = ("biomlp", "mlp+dalify")

#: The foundation's targets for ``bio`` with default settings (see ``check_targets``).
TARGETS = {
    "max_accuracy_gap_vs_adam": 0.015,
    "max_connectivity": 0.30,
    "max_abs_skewness": 0.5,
    "max_abs_excess_kurtosis": 1.0,
}


def _build(kind: str, hidden: tuple[int, ...], seed: int, rule: str) -> nn.Module:
    if kind == "biomlp":  # interneurons for the rule with homeostasis only (interneurons_for)
        return BioMLP(64, hidden, 10, on_off=True, seed=seed, interneurons=interneurons_for(rule))
    layers: list[nn.Module] = []
    n_in = 64
    for width in hidden:
        layers += [nn.Linear(n_in, width), nn.ReLU()]
        n_in = width
    layers.append(nn.Linear(n_in, 10))
    return dalify(nn.Sequential(*layers), seed=seed)


def compare_rules(
    rules: Sequence[str] = ("bio", "eg", "adam", "enforced"),
    models: Sequence[str] = MODEL_KINDS,
    seeds: Sequence[int] = (0, 1, 2),
    epochs: int = 30,
    batch_size: int = 32,
    hidden: tuple[int, ...] = (256,),
    rule_kwargs: dict[str, dict[str, Any]] | None = None,
    progress: Callable[[str], None] | None = None,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Train every (model, rule, seed) on digits and return runs and per-(model, rule) summaries.

    Every rule of one (model, seed) starts from the same initial weights (a Dale
    initialisation; the BioMLP's readout has interneurons for bio only, so ``adam`` and
    ``enforced`` start from signs they are free to break or made to keep) and sees the same
    batches. ``rule_kwargs[name]`` overrides that rule's defaults. ``device`` is where models
    and data live (``"cuda"`` uses the GPU and BioRule's ``torch._foreach_`` path there).
    Returns a JSON-serialisable dict with ``config``,
    ``runs`` (one entry per run, with per-layer weight probes) and ``summary`` (mean and std
    over seeds).
    """
    unknown = [r for r in rules if r not in OPTIMIZER_NAMES]
    if unknown:
        raise ValueError(f"unknown rules {unknown}; choose from {', '.join(OPTIMIZER_NAMES)}")
    bad = [m for m in models if m not in MODEL_KINDS]
    if bad:
        raise ValueError(f"unknown models {bad}; choose from {', '.join(MODEL_KINDS)}")
    for name, values in (("rules", rules), ("models", models), ("seeds", seeds)):
        repeated = sorted({v for v in values if list(values).count(v) > 1})
        if repeated:  # the same run would be counted twice in the means
            raise ValueError(f"{name} lists {repeated} more than once")
    if epochs < 1 or batch_size < 1 or not seeds:
        raise ValueError("epochs and batch_size must be >= 1 and seeds non-empty")
    rule_kwargs = rule_kwargs or {}
    runs = []
    for seed in seeds:
        x_train, y_train, x_test, y_test = (
            torch.as_tensor(a).to(device) for a in load_digits_arrays(seed=seed)
        )
        for kind in models:
            for rule in rules:
                torch.manual_seed(seed)
                model = _build(kind, hidden, seed, rule)  # the same seed: the same init
                init = {k: v.clone() for k, v in model.state_dict().items()}
                model.to(device)
                optimizer = make_optimizer(rule, model.parameters(), **rule_kwargs.get(rule, {}))
                stages = Stages()
                with stages("train"), bar(total=epochs, desc=f"{kind} {rule} seed {seed}",
                                          unit="epoch") as epoch_bar:  # fmt: skip
                    train_epochs(model, optimizer, x_train, y_train, epochs, batch_size, seed,
                                 on_epoch=lambda _epoch, b=epoch_bar: b.update(1))  # fmt: skip
                seconds = stages.seconds["train"]
                with stages("evaluate"):
                    report = weight_report(model, reference_state=init)
                    test_accuracy = accuracy(model, x_test, y_test)
                present = sum(r["n_present"] for r in report.values())
                total = sum(r["n_synapses"] for r in report.values())
                runs.append({
                    "model": kind,
                    "rule": rule,
                    "seed": seed,
                    "test_accuracy": test_accuracy,
                    "train_seconds": seconds,
                    "connectivity": present / total,
                    "dale_violations": sum(r["dale_violations"] for r in report.values()),
                    "sign_flips": sum(r.get("sign_flips", 0) for r in report.values()),
                    "layers": report,
                })  # fmt: skip
                if progress is not None:
                    r = runs[-1]
                    progress(
                        f"{kind:10s} {rule:8s} seed {seed}: acc {r['test_accuracy']:.3f} "
                        f"conn {r['connectivity']:.3f} ({stages})"
                    )
    return {
        "config": {
            "dataset": "digits",
            "rules": list(rules),
            "models": list(models),
            "seeds": list(seeds),
            "epochs": epochs,
            "batch_size": batch_size,
            "hidden": list(hidden),
            "interneurons": {rule: interneurons_for(rule) for rule in rules},  # biomlp
            "rule_kwargs": rule_kwargs,
            "torch": torch.__version__,
            "device": str(device),
        },
        "runs": runs,
        "summary": _summarise(runs),
    }


def _summarise(runs: list[dict]) -> dict[str, dict]:
    summary: dict[str, dict] = {}
    for run in runs:
        summary.setdefault(f"{run['model']}/{run['rule']}", []).append(run)
    out = {}
    for key, group in summary.items():
        layers = {}
        for layer in group[0]["layers"]:
            rows = [g["layers"][layer] for g in group]
            layers[layer] = {
                stat: mean_std([r[stat] for r in rows], skip_missing=False)
                for stat in ("connectivity", "log_mag_skewness", "log_mag_excess_kurtosis")
            }
        out[key] = {
            "n_runs": len(group),
            "test_accuracy": mean_std([g["test_accuracy"] for g in group], skip_missing=False),
            "connectivity": mean_std([g["connectivity"] for g in group], skip_missing=False),
            "dale_violations_max": max(g["dale_violations"] for g in group),
            "sign_flips_max": max(g["sign_flips"] for g in group),
            "layers": layers,
        }
    return out


def check_targets(results: dict[str, Any], model: str) -> dict[str, Any]:
    """Compare ``bio`` with ``adam`` on ``model`` against :data:`TARGETS`; per target pass/fail.

    Skewness and kurtosis are judged on every run and layer (the worst value counts).
    """
    summary = results["summary"]
    bio, adam = summary.get(f"{model}/bio"), summary.get(f"{model}/adam")
    if bio is None or adam is None:
        raise ValueError(f"results need both bio and adam runs on {model!r}")
    bio_runs = [r for r in results["runs"] if r["model"] == model and r["rule"] == "bio"]
    worst_skew = max(abs(l["log_mag_skewness"]) for r in bio_runs for l in r["layers"].values())
    worst_kurt = max(
        abs(l["log_mag_excess_kurtosis"]) for r in bio_runs for l in r["layers"].values()
    )
    gap = adam["test_accuracy"]["mean"] - bio["test_accuracy"]["mean"]
    checks = {
        "accuracy_gap_vs_adam": (gap, gap <= TARGETS["max_accuracy_gap_vs_adam"]),
        "sign_flips": (bio["sign_flips_max"], bio["sign_flips_max"] == 0),
        "dale_violations": (bio["dale_violations_max"], bio["dale_violations_max"] == 0),
        "connectivity": (
            bio["connectivity"]["mean"],
            bio["connectivity"]["mean"] <= TARGETS["max_connectivity"],
        ),
        "worst_abs_skewness": (worst_skew, worst_skew <= TARGETS["max_abs_skewness"]),
        "worst_abs_excess_kurtosis": (worst_kurt, worst_kurt <= TARGETS["max_abs_excess_kurtosis"]),
    }
    return {k: {"value": v, "pass": bool(ok)} for k, (v, ok) in checks.items()}


def _fmt(ms: dict[str, float], digits: int = 3) -> str:
    if math.isnan(ms["mean"]):
        return "n/a"
    if ms.get("std") is None:  # one seed: no spread
        return f"{ms['mean']:.{digits}f}"
    return f"{ms['mean']:.{digits}f} ± {ms['std']:.{digits}f}"


def format_markdown(results: dict[str, Any]) -> str:
    """A readable summary: one table of rules, one of per-layer statistics, target checks."""
    cfg = results["config"]
    one_seed = n_seeds(cfg["seeds"]) == 1
    if one_seed:
        results = without_spread(results)
    lines = [
        f"Digits, {cfg['epochs']} epochs, batch {cfg['batch_size']}, hidden {cfg['hidden']}, "
        f"seeds {cfg['seeds']} ({'one seed' if one_seed else 'mean ± std over seeds'})",
        "",
        "| model | rule | test accuracy | connectivity | Dale violations | sign flips |",
        "|---|---|---|---|---:|---:|",
    ]
    for key, s in results["summary"].items():
        model, rule = key.split("/")
        lines.append(
            f"| {model} | {rule} | {_fmt(s['test_accuracy'])} | {_fmt(s['connectivity'])} "
            f"| {s['dale_violations_max']} | {s['sign_flips_max']} |"
        )
    lines += [
        "",
        "Per layer: connectivity, skewness and excess kurtosis of log-magnitudes",
        "",
        "| model | rule | layer | connectivity | skewness | excess kurtosis |",
        "|---|---|---|---|---|---|",
    ]
    for key, s in results["summary"].items():
        model, rule = key.split("/")
        for layer, stats in s["layers"].items():
            lines.append(
                f"| {model} | {rule} | {layer} | {_fmt(stats['connectivity'])} "
                f"| {_fmt(stats['log_mag_skewness'], 2)} "
                f"| {_fmt(stats['log_mag_excess_kurtosis'], 2)} |"
            )
    for model in cfg["models"]:
        if f"{model}/bio" in results["summary"] and f"{model}/adam" in results["summary"]:
            lines += ["", f"Targets for bio on {model}:", ""]
            for name, check in check_targets(results, model).items():
                mark = "pass" if check["pass"] else "MISS"
                lines.append(f"- {name}: {check['value']:.3f} ({mark})")
    return "\n".join(lines) + "\n"
