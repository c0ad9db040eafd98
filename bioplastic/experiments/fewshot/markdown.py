"""Markdown summary of the few-shot benchmark's results."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["format_markdown"]


def _pct(x: float | None) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def format_markdown(results: Mapping[str, Any]) -> str:
    """A markdown summary of :func:`run_fewshot_benchmark`'s results (accuracies in %)."""
    cfg = results["config"]
    data = results["data"]
    lines = [
        f"# Few-shot benchmark: {cfg['dataset']}",
        "",
        f"{cfg['ways']}-way, shots {cfg['shots']}, {cfg['episodes']} episodes x "
        f"{len(cfg['seeds'])} seeds ({cfg['queries']} queries per class); meta-train "
        f"{data['meta_train_classes']} classes / meta-test {data['meta_test_classes']} classes "
        f"(disjoint); backbone {cfg['arch']} {cfg['hidden']}, {cfg['pretrain_epochs']} "
        "pre-training epochs. Mean accuracy (%) +- 95 % CI over all seed x episode "
        "evaluations; per-seed means in brackets.",
        "",
    ]
    if results.get("backbones"):
        lines += _backbone_lines(results["backbones"])
    if results.get("maml"):
        lines += _maml_lines(results["maml"])
    lines += _accuracy_lines(results["accuracy"])
    if results.get("paired"):
        lines += _paired_lines(results["paired"])
    timing = results.get("timing", {}).get("proto_eval_s", {})
    if timing.get("median") is not None:
        lines += [
            "",
            f"Prototype evaluation of {timing['episodes']} episodes (embedding "
            f"included): median {timing['median']:.2f} s, max {timing['max']:.2f} s "
            "per backbone and shot.",
        ]
    return "\n".join(lines) + "\n"


def _backbone_lines(backbones: Mapping[str, Any]) -> list[str]:
    lines = [
        "## Pre-trained backbones",
        "",
        "| rule | clean acc. (held-out, pre-training classes) | connectivity | "
        "Dale violations | sign flips | train s |",
        "|---|---|---|---|---|---|",
    ]
    for rule, b in backbones.items():
        lines.append(
            f"| {rule} | {_pct(b['clean_accuracy']['mean'])} "
            f"({', '.join(_pct(r['clean_accuracy']) for r in b['runs'])}) | "
            f"{b['connectivity']['mean']:.3f} | {b['dale_violations']['mean']:.0f} | "
            f"{b['sign_flips']['mean']:.0f} | {b['train_s']['mean']:.1f} |"
        )
    lines.append("")
    return lines


def _maml_lines(maml: Mapping[str, Any]) -> list[str]:
    lines = [
        "## MAML meta-parameters",
        "",
        "| rule | inner / outer | connectivity | Dale violations | sign flips | meta-train s |",
        "|---|---|---|---|---|---|",
    ]
    pairing = {
        "bio": "bio / BioRule",
        "eg": "bio / EG",
        "adam": "SGD / Adam",
        "sgd": "SGD / SGD",
    }
    for rule, b in maml.items():
        lines.append(
            f"| {rule} | {pairing.get(rule, rule)} | {b['connectivity']['mean']:.3f} | "
            f"{b['dale_violations']['mean']:.0f} | {b['sign_flips']['mean']:.0f} | "
            f"{b['train_s']['mean']:.1f} |"
        )
    lines.append("")
    return lines


def _accuracy_lines(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = [
        "## Accuracy on meta-test classes",
        "",
        "| method | shots | rule | accuracy | per seed |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['method']} | {row['shots']} | {row['rule']} | {_pct(row['mean'])} +- "
            f"{_pct(row['ci95'])} | {', '.join(_pct(m) for m in row['seed_means'])} |"
        )
    return lines


def _paired_lines(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = [
        "",
        "## Paired difference on the same episodes (bio minus baseline)",
        "",
        "| method | shots | baseline | bio - baseline (points) | per seed |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['method']} | {row['shots']} | {row['baseline']} | "
            f"{100 * row['mean_diff']:+.1f} +- {_pct(row['ci95'])} | "
            f"{', '.join(f'{100 * d:+.1f}' for d in row['seed_diffs'])} |"
        )
    return lines
