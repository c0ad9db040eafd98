"""Summary over seeds and the analysis: paired differences, correlations, interventions."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from bioplastic.experiments._common import mean_std, paired_difference, spearman
from bioplastic.experiments.robustness.attack import DLR_ATTACK, ENSEMBLE_ATTACK


def summarise(runs: list[dict], extra: Sequence[dict] = ()) -> dict[str, Any]:
    """Mean ± std over seeds per rule (``runs``) and per intervention kind (``extra``): clean
    and robust accuracy per attack and epsilon, ``robust_mean``, ``robust_ratio``,
    connectivity, Lipschitz bound, gradient statistics and, where present, training epochs,
    masking flags and activity statistics (the ``summary`` of :func:`run_robustness`)."""
    groups: dict[str, list[dict]] = {}
    for r in runs:
        groups.setdefault(r["rule"], []).append(r)
    for r in extra:
        groups.setdefault(r["kind"], []).append(r)
    summary = {}
    for key, group in groups.items():
        first = group[0]
        s: dict[str, Any] = {
            "n_runs": len(group),
            "clean_accuracy": mean_std([g["clean_accuracy"] for g in group], count=True),
            "accuracy": {
                a: [
                    mean_std([g["curve"]["accuracy"][a][i] for g in group], count=True)
                    for i in range(len(first["curve"]["epsilons"][a]))
                ]
                for a in first["curve"]["attacks"]
            },
            "epsilons": first["curve"]["epsilons"],
            "robust_mean": {
                a: mean_std([g["robust_mean"][a] for g in group], count=True)
                for a in first["robust_mean"]
            },
            "robust_ratio": {
                a: mean_std([g["robust_ratio"][a] for g in group], count=True)
                for a in first["robust_ratio"]
            },
            "connectivity": mean_std([g["connectivity"] for g in group], count=True),
            "dale_violations_max": max(g["dale_violations"] for g in group),
            "lipschitz_bound": mean_std([g["lipschitz_bound"] for g in group], count=True),
            "gradients": {
                k: mean_std([g["gradients"][k] for g in group], count=True)
                for k in first["gradients"]
            },
        }
        if "training" in first:
            s["epochs"] = mean_std([g["training"]["epoch"] for g in group], count=True)
            s["val_accuracy"] = mean_std([g["training"]["accuracy"] for g in group], count=True)
            s["n_reached"] = sum(bool(g["training"]["reached"]) for g in group)
        if "masking" in first:
            s["masked_runs"] = sum(bool(g["masking"]["masked"]) for g in group)
            s["masking_flags"] = {
                flag: sum(bool(g["masking"].get(flag)) for g in group)
                for flag in (
                    "pgd_weaker_than_fgsm",
                    "large_eps_not_near_chance",
                    "zero_or_nan_gradients",
                )
            }
            s["large_eps_accuracy"] = mean_std(
                [g["masking"]["large_eps_accuracy"] for g in group], count=True
            )
        if "activity" in first:
            s["activity"] = {
                layer: {
                    k: mean_std([g["activity"][layer].get(k) for g in group], count=True)
                    for k in stats
                }
                for layer, stats in first["activity"].items()
            }
        summary[key] = s
    return summary


# --------------------------------------------------------------------------- analysis

#: Predictors correlated with robust accuracy across runs in :func:`analyse`.
PREDICTORS: dict[str, str] = {
    "connectivity": "connectivity",
    "log_lipschitz_bound": "log of the product of layer spectral norms",
    "ce_grad_l1": "mean L1 norm of the loss gradient w.r.t. the input",
    "linearized_radius_linf": "median linearised L-inf radius (margin / L1 norm of its gradient)",
    "logit_margin": "mean logit margin of correct samples",
    "clean_accuracy": "clean test accuracy",
}


def _predictor(run: Mapping[str, Any], name: str) -> float | None:
    if name == "log_lipschitz_bound":
        v = run.get("lipschitz_bound")
        return math.log(v) if v else None
    if name in ("connectivity", "clean_accuracy"):
        return run.get(name)
    return run.get("gradients", {}).get(name)


def _ratio(run: Mapping[str, Any], attack: str) -> float:
    """Robust accuracy as a fraction of the run's clean accuracy (NaN if clean is 0)."""
    value = run.get("robust_ratio", {}).get(attack)
    if value is None:
        clean = run["clean_accuracy"]
        return run["robust_mean"][attack] / clean if clean else math.nan
    return value


def _fraction(move: Mapping[str, Any], gap: Mapping[str, Any]) -> float:
    """Signed fraction of the gap that a move covers (0 when the gap is 0)."""
    return move["mean_diff"] / gap["mean_diff"] if gap["mean_diff"] else 0.0


def _ci_text(p: Mapping[str, Any]) -> str:
    if p.get("ci95_low") is None:
        return f"{p['mean_diff']:+.3f} (n={p['n']}, no CI)"
    return f"{p['mean_diff']:+.3f} [95% CI {p['ci95_low']:+.3f}, {p['ci95_high']:+.3f}]"


def _sign(p: Mapping[str, Any]) -> int:
    """+1 / -1 when the 95% CI excludes 0 above / below, else 0."""
    if p.get("ci95_low") is None:
        return 0
    if p["ci95_low"] > 0:
        return 1
    if p["ci95_high"] < 0:
        return -1
    return 0


def reference_attack(results: Mapping[str, Any]) -> str:
    """The attack the analysis is based on: :data:`ENSEMBLE_ATTACK` when it was run, else PGD."""
    attacks = results["config"]["attacks"]
    for name in (ENSEMBLE_ATTACK, "pgd", DLR_ATTACK, "fgsm"):
        if name in attacks:
            return name
    return attacks[0]


def analyse(results: Mapping[str, Any], attack: str | None = None) -> dict[str, Any]:
    """Paired comparisons, correlations and intervention effects, with plain-language findings.

    ``attack`` defaults to :func:`reference_attack` (the per-sample worst case of PGD and
    APGD-DLR when both were run: the strongest, logit-scale-robust evaluation here).
    Scores are ``robust_mean[a]``, the mean robust accuracy over eps > 0 of attack ``a``;
    differences are paired by seed, with a 95% CI from Student's t over seeds. Rules:

    * ``paired[rule][a]``: ``bio - rule`` for every attack ``a`` (and clean accuracy); *bio
      more robust than rule* iff the CI lies above 0, *less robust* iff below, else *no
      detectable difference*. Findings state this for ``attack`` and, when it was run, for the
      scale-invariant :data:`DLR_ATTACK`.
    * ``correlations[p]``: Spearman rho (and p-value) across all main runs between
      ``robust_mean[attack]`` and each predictor in :data:`PREDICTORS`.
    * ``interventions[kind][a]``: paired ``intervention - source`` differences (source: adam
      for the pruned models, bio for the rescaled one) of robust accuracy per attack, of clean
      accuracy, and the largest absolute change over seeds.
    * ``paired[rule]["ratio"][a]``: the same for robust accuracy divided by clean accuracy
      (the fraction of correctly classified samples that survive), which removes what is left
      of a clean-accuracy mismatch.
    * ``connectivity_explains_gap``: ``"explains"`` iff the bio - adam gap under ``attack`` is
      detectable and pruning adam to bio's connectivity and fine-tuning it under the mask back
      to the validation target moves adam's score *and* its robust / clean ratio towards bio's
      with CIs excluding 0, by at least half of the respective gap; ``"partly explains"`` iff
      one of the two moves has the gap's sign with a CI excluding 0 and covers at least a
      fifth of its gap; otherwise ``"does not explain"`` (or ``"no detectable gap"``).
      ``connectivity_gap_fraction`` holds the two covered fractions.
    * ``weight_scale_irrelevant``: rescaling bio's layers (decision-preserving) changes the
      score of the scale-invariant attack by at most 0.01 in every seed (CE-based attacks may
      still move: that is the attack's sensitivity to logit scale, reported separately).
    """
    attack = reference_attack(results) if attack is None else attack
    runs = results["runs"]
    by_rule: dict[str, dict[int, dict]] = {}
    for r in runs:
        by_rule.setdefault(r["rule"], {})[r["seed"]] = r
    out: dict[str, Any] = {
        "attack": attack,
        "paired": {},
        "correlations": {},
        "interventions": {},
        "findings": [],
    }
    findings = out["findings"]
    all_attacks = list(runs[0]["robust_mean"]) if runs else []
    verdict_attacks = [a for a in ("pgd", DLR_ATTACK, attack) if a in all_attacks]
    verdict_attacks = list(dict.fromkeys(verdict_attacks))
    if "bio" in by_rule:
        for rule in results["config"]["rules"]:
            seeds = sorted(set(by_rule["bio"]) & set(by_rule.get(rule, {})))
            if rule == "bio" or not seeds:
                continue
            paired = _pair_with_bio(by_rule["bio"], by_rule[rule], seeds, all_attacks)
            out["paired"][rule] = paired
            findings.append(_rule_finding(rule, paired, verdict_attacks, attack))
    out["correlations"] = _correlations(runs, attack)
    corr_text = ", ".join(
        f"{name} rho={c['rho']:+.2f} (p={c['p']:.2g})"
        for name, c in out["correlations"].items()
        if c["rho"] is not None
    )
    if corr_text:
        findings.append(
            f"Across {len(runs)} runs, Spearman correlation of {attack} robust accuracy with: "
            f"{corr_text}."
        )
    out["interventions"] = _intervention_effects(
        results.get("interventions") or [], by_rule, all_attacks
    )
    _judge_connectivity(out, attack)
    scaled = out["interventions"].get("bio_rescaled_to_adam")
    if scaled is not None:
        findings.append(_rescaling_finding(out, scaled, all_attacks))
    return out


def _pair_with_bio(
    bio: Mapping[int, dict], other: Mapping[int, dict], seeds: list[int], attacks: list[str]
) -> dict[str, Any]:
    """Paired ``bio - other`` differences per attack, of clean accuracy, and of the ratios."""
    paired: dict[str, Any] = {
        a: paired_difference([bio[s]["robust_mean"][a] - other[s]["robust_mean"][a] for s in seeds])
        for a in attacks
    }
    paired["clean_accuracy"] = paired_difference(
        [bio[s]["clean_accuracy"] - other[s]["clean_accuracy"] for s in seeds]
    )
    paired["ratio"] = {
        a: paired_difference([_ratio(bio[s], a) - _ratio(other[s], a) for s in seeds])
        for a in attacks
    }
    return paired


def _rule_finding(
    rule: str, paired: Mapping[str, Any], verdict_attacks: list[str], attack: str
) -> str:
    parts = []
    for a in verdict_attacks:
        verdict = {
            1: "more robust than",
            -1: "less robust than",
            0: "not detectably different from",
        }[_sign(paired[a])]
        parts.append(f"{verdict} {rule} under {a} (bio - {rule} = {_ci_text(paired[a])})")
    return (
        "bio is " + "; ".join(parts) + f" [mean robust accuracy over eps > 0; clean "
        f"accuracy bio - {rule} = {_ci_text(paired['clean_accuracy'])}; robust / clean "
        f"accuracy under {attack}: bio - {rule} = {_ci_text(paired['ratio'][attack])}]."
    )


def _correlations(runs: Sequence[Mapping[str, Any]], attack: str) -> dict[str, Any]:
    target = [r["robust_mean"].get(attack) for r in runs]
    return {name: spearman([_predictor(r, name) for r in runs], target) for name in PREDICTORS}


#: The model each intervention starts from.
_SOURCE_OF = {
    "adam_pruned_to_bio": "adam",
    "adam_pruned_finetuned": "adam",
    "bio_rescaled_to_adam": "bio",
}


def _intervention_effects(
    extra: Sequence[Mapping[str, Any]], by_rule: Mapping[str, Mapping[int, dict]], attacks: list
) -> dict[str, Any]:
    """Per intervention kind, paired ``intervention - source`` differences over seeds."""
    effects: dict[str, Any] = {}
    for kind, source in _SOURCE_OF.items():
        rows = [r for r in extra if r["kind"] == kind and r["seed"] in by_rule.get(source, {})]
        if not rows:
            continue
        before = {r["seed"]: by_rule[source][r["seed"]] for r in rows}
        entry: dict[str, Any] = {"source": source}
        for a in attacks:
            diffs = [r["robust_mean"][a] - before[r["seed"]]["robust_mean"][a] for r in rows]
            entry[a] = {**paired_difference(diffs), "max_abs": max(abs(d) for d in diffs)}
        entry["ratio"] = {
            a: paired_difference([_ratio(r, a) - _ratio(before[r["seed"]], a) for r in rows])
            for a in attacks
        }
        entry["clean_accuracy"] = paired_difference(
            [r["clean_accuracy"] - before[r["seed"]]["clean_accuracy"] for r in rows]
        )
        entry["connectivity"] = mean_std([r["connectivity"] for r in rows], count=True)
        if kind == "bio_rescaled_to_adam":
            entry["decisions_unchanged"] = all(r.get("decisions_unchanged") for r in rows)
        effects[kind] = entry
    return effects


def _connectivity_level(gap, gap_r, move, move_r) -> str:
    """How much of the bio - adam gap the pruned, fine-tuned adam covers (rules in
    :func:`analyse`)."""
    if _sign(gap) == 0:
        return "no detectable gap"
    if (
        _sign(move) == _sign(gap)
        and _sign(move_r) == _sign(gap_r)
        and abs(move["mean_diff"]) >= 0.5 * abs(gap["mean_diff"])
        and abs(move_r["mean_diff"]) >= 0.5 * abs(gap_r["mean_diff"])
    ):
        return "explains"
    if (_sign(move) == _sign(gap) and _fraction(move, gap) >= 0.2) or (
        _sign(gap_r) != 0 and _sign(move_r) == _sign(gap_r) and _fraction(move_r, gap_r) >= 0.2
    ):
        return "partly explains"
    return "does not explain"


def _judge_connectivity(out: dict[str, Any], attack: str) -> None:
    """Add ``connectivity_gap_fraction``, ``connectivity_explains_gap`` and a finding."""
    gap = out["paired"].get("adam", {}).get(attack)
    tuned = out["interventions"].get("adam_pruned_finetuned")
    raw = out["interventions"].get("adam_pruned_to_bio")
    if gap is None or tuned is None:
        return
    gap_r = out["paired"]["adam"]["ratio"][attack]
    move, move_r = tuned[attack], tuned["ratio"][attack]
    level = _connectivity_level(gap, gap_r, move, move_r)
    out["connectivity_gap_fraction"] = {
        "robust": _fraction(move, gap),
        "robust_per_clean": _fraction(move_r, gap_r),
    }
    out["connectivity_explains_gap"] = level
    raw_text = (
        f"; without fine-tuning {_ci_text(raw[attack])} at a clean-accuracy change of "
        f"{_ci_text(raw['clean_accuracy'])}"
        if raw
        else ""
    )
    out["findings"].append(
        "Pruning adam to bio's per-layer connectivity "
        f"(mean {tuned['connectivity']['mean']:.3f}) and fine-tuning it under the mask back "
        f"to the target changed adam's {attack} "
        f"robust accuracy by {_ci_text(move)} (clean {_ci_text(tuned['clean_accuracy'])}; "
        f"robust / clean {_ci_text(move_r)}){raw_text}. The bio - adam gap is "
        f"{_ci_text(gap)} (robust / clean {_ci_text(gap_r)}): "
        + (
            "there is no detectable gap for connectivity to explain."
            if _sign(gap) == 0
            else f"the pruning moves cover {_fraction(move, gap):.0%} (robust) and "
            f"{_fraction(move_r, gap_r):.0%} (robust / clean) of the gap, so connectivity "
            f"{level} it (explains: both moves have the gap's sign with CIs excluding 0 and "
            "cover at least half of it; partly: one of them has the gap's sign with a CI "
            "excluding 0 and covers at least a fifth)."
        )
    )


def _rescaling_finding(out: dict[str, Any], scaled: Mapping[str, Any], attacks: list) -> str:
    """The finding on the rescaled bio model; sets ``weight_scale_irrelevant`` when APGD-DLR
    ran."""
    changes = ", ".join(f"{a} by at most {scaled[a]['max_abs']:.3f}" for a in attacks)
    text = (
        "Rescaling every bio layer to adam's Frobenius norm with compensated biases (logits "
        "multiplied by a constant; predictions unchanged: "
        f"{'yes' if scaled.get('decisions_unchanged') else 'no'}) changed robust accuracy "
        f"{changes}."
    )
    if DLR_ATTACK in scaled:
        invariant = scaled[DLR_ATTACK]["max_abs"] <= 0.01
        out["weight_scale_irrelevant"] = bool(invariant)
        text += (
            f" Under the scale-invariant {DLR_ATTACK} the change is "
            + ("negligible (<= 0.01)" if invariant else "not negligible (> 0.01)")
            + ": absolute weight scale "
            + ("does not change robustness" if invariant else "changes robustness")
            + "; changes under cross-entropy attacks measure how their strength depends on "
            "logit scale (softmax saturation), not a change of the model's robustness."
        )
    return text
