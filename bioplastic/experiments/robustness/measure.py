"""Measurements of one trained model: robustness curves, masking checks and probes."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from bioplastic._progress import Stages, bar
from bioplastic.experiments.robustness.attack import DLR_ATTACK, ENSEMBLE_ATTACK, apgd_dlr_accuracy
from bioplastic.probes import synaptic_layers, weight_report
from bioplastic.representation import (
    activity_profile,
    effective_filters,
    first_layer,
    input_gradient_stats,
    lipschitz_upper_bound,
    weight_scale_stats,
)
from bioplastic.robustness import gradient_masking_checks, robustness_curve


def _connectivity(model: nn.Module) -> tuple[float, dict[str, float]]:
    per_layer, present, total = {}, 0, 0
    for name, m in synaptic_layers(model):
        n = int(torch.count_nonzero(m.weight))
        per_layer[name] = n / m.weight.numel()
        present += n
        total += m.weight.numel()
    return present / total, per_layer


def _measure(
    model: nn.Module,
    data: Mapping[str, Any],
    cfg: Mapping[str, Any],
    reference_state: Mapping[str, Tensor] | None,
    *,
    probes: bool,
    stages: Stages | None = None,
) -> dict[str, Any]:
    """Clean accuracy, robustness curves, masking checks and probes of one trained model;
    the wall time of the attacks, the masking checks and the probes is added to ``stages``."""
    stages = Stages() if stages is None else stages
    grid = [e for e in cfg.get("dlr_epsilons") or () if e > 0]
    test, input_range = data["test"], data["input_range"]
    # the order of the measurements is the one the results were made with (attacks and
    # masking checks draw random starts)
    with bar(total=1 + len(grid) + int(probes), desc="attacks", unit="attack") as attacks:
        with stages("attack"):
            curve = _curves(model, data, cfg, attacks)
        with stages("probes"):
            out, report = _weight_probes(model, data, curve, reference_state)
        if not probes:
            return out
        with stages("masking"):
            out["masking"] = gradient_masking_checks(
                model,
                test,
                cfg["masking_eps"],
                steps=cfg["masking_steps"],
                restarts=cfg["masking_restarts"],
                large_eps=1.0,
                input_range=input_range,
            )
        attacks.update(1)
    with stages("probes"):
        out["activity"] = activity_profile(model, test[0])
        out["log_magnitude"] = {
            name: {k: r[f"log_mag_{k}"] for k in ("mean", "std", "skewness", "excess_kurtosis")}
            for name, r in report.items()
        }
    return out


def _curves(model: nn.Module, data: Mapping[str, Any], cfg: Mapping[str, Any], attacks) -> dict:
    """The robustness curves (FGSM/PGD, then APGD-DLR and the ensemble when asked for),
    advancing the ``attacks`` bar."""
    test = data["test"]
    input_range = data["input_range"]
    curve = robustness_curve(
        model,
        test,
        attacks=cfg["attacks"],
        epsilons=cfg["epsilons"],
        steps=cfg["pgd_steps"],
        restarts=cfg["restarts"],
        input_range=input_range,
    )
    attacks.update(1)
    grid = cfg.get("dlr_epsilons")
    if grid:
        dlr_acc, ens_acc = [], []
        for e in grid:
            if e > 0:
                d, both = apgd_dlr_accuracy(
                    model,
                    test,
                    e,
                    steps=cfg["pgd_steps"],
                    restarts=cfg["restarts"],
                    input_range=input_range,
                    ensemble_with_pgd=True,
                )
                attacks.update(1)
            else:
                d = both = curve["clean_accuracy"]
            dlr_acc.append(d)
            ens_acc.append(both)
        for name, accs in ((DLR_ATTACK, dlr_acc), (ENSEMBLE_ATTACK, ens_acc)):
            curve["attacks"].append(name)
            curve["epsilons"][name] = list(grid)
            curve["accuracy"][name] = accs
    return curve


def _weight_probes(model, data, curve, reference_state) -> tuple[dict[str, Any], dict]:
    """The measurements besides the attacks and the masking checks, and the weight report."""
    test, input_range = data["test"], data["input_range"]
    robust_mean = {
        a: statistics.fmean(
            acc for e, acc in zip(curve["epsilons"][a], curve["accuracy"][a], strict=True) if e > 0
        )
        for a in curve["attacks"]
    }
    conn, conn_layers = _connectivity(model)
    report = weight_report(model, reference_state=reference_state)
    clean = curve["clean_accuracy"]
    out: dict[str, Any] = {
        "clean_accuracy": clean,
        "curve": curve,
        "robust_mean": robust_mean,
        "robust_ratio": {a: (v / clean if clean > 0 else None) for a, v in robust_mean.items()},
        "connectivity": conn,
        "connectivity_per_layer": conn_layers,
        "dale_violations": sum(r["dale_violations"] for r in report.values()),
        "sign_flips": sum(r.get("sign_flips", 0) for r in report.values()),
        "lipschitz_bound": lipschitz_upper_bound(model),
        "weight_scale": weight_scale_stats(model),
        "gradients": input_gradient_stats(model, test[0], test[1], input_range=input_range),
    }
    return out, report


def _receptive_fields(model: nn.Module, image_shape: Sequence[int], n: int) -> dict[str, Any]:
    _, layer, on_off = first_layer(model)
    filters = effective_filters(layer.weight, on_off=on_off)
    norms = filters.norm(dim=1)
    top = torch.argsort(norms, descending=True)[: min(n, len(norms))]
    return {
        "image_shape": list(image_shape),
        "on_off": on_off,
        "units": [int(i) for i in top],
        "filters": [[round(float(v), 5) for v in filters[i]] for i in top],
        "selection": f"the {len(top)} units with the largest effective-filter L2 norm",
    }
