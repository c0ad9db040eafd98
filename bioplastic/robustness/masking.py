"""Gradient-masking checks (Athalye et al. 2018; Carlini et al. 2019)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from bioplastic._checks import check_fraction, check_int, check_number
from bioplastic.robustness._common import (
    Data,
    _batches,
    _check_input_range,
    _eval_mode,
    _model_device,
)
from bioplastic.robustness.attacks import accuracy, evaluate_attack

logger = logging.getLogger(__name__)


def gradient_masking_checks(
    model: nn.Module,
    data: Data,
    eps_grid: Sequence[float],
    *,
    steps: int = 20,
    restarts: int = 3,
    large_eps: float = 1.0,
    n_classes: int | None = None,
    pgd_tolerance: float = 0.02,
    chance_tolerance: float = 0.1,
    check_gradients: bool = True,
    zero_gradient_tolerance: float = 0.1,
    input_range: Sequence[float] = (0.0, 1.0),
    batch_size: int = 256,
    device: torch.device | str | None = None,
) -> dict[str, bool | float]:
    """Flag signs that robust accuracy comes from masked gradients rather than robustness.

    Three checks from Athalye et al. (2018) and Carlini et al. (2019); any flag sets ``masked``:

    (a) **Iterative weaker than single-step** (``pgd_weaker_than_fgsm``): at some ``eps`` in
        ``eps_grid``, PGD with ``steps`` steps and ``restarts`` random restarts leaves more than
        ``pgd_tolerance`` *more* accuracy than one FGSM step. With honest gradients PGD is at
        least as strong; the reverse means the gradient direction is uninformative locally.
    (b) **No collapse at a huge budget** (``large_eps_not_near_chance``): PGD at ``large_eps``
        (default 1.0: the whole input range, so any input is reachable) should drive accuracy to
        chance (``1 / n_classes``) or below; flagged when it stays above
        ``chance + chance_tolerance``.
    (c) **Zero or non-finite input gradients** (``zero_or_nan_gradients``, only if
        ``check_gradients``): the gradient of the cross-entropy with respect to the clean input
        is exactly zero (e.g. quantised inputs, saturated softmax) for more than
        ``zero_gradient_tolerance`` of the samples, or non-finite for any sample.

    Args:
        model, data, input_range, batch_size, device: as in :func:`evaluate_attack`.
        eps_grid: non-empty budgets > 0 for check (a), in units of the input range.
        steps, restarts: PGD strength for checks (a) and (b).
        large_eps: the budget of check (b).
        n_classes: number of classes; default: the width of the model's logits.

    Returns:
        A flat dict: ``clean_accuracy``, ``chance``, ``fgsm_accuracy@<eps>`` and
        ``pgd_accuracy@<eps>`` for each eps, ``pgd_minus_fgsm_max``, ``pgd_weaker_than_fgsm``,
        ``large_eps``, ``large_eps_accuracy``, ``large_eps_not_near_chance``, and when
        ``check_gradients``: ``zero_gradient_fraction``, ``nonfinite_gradient_fraction``,
        ``zero_or_nan_gradients``; finally ``masked`` (any flag).
    """
    grid = [check_number("eps_grid", e, 0.0) for e in eps_grid]
    if not grid or any(e == 0 for e in grid):
        raise ValueError(f"eps_grid must be a non-empty sequence of budgets > 0; got {grid}")
    large_eps = check_number("large_eps", large_eps, 0.0)
    if large_eps == 0:
        raise ValueError("large_eps must be > 0")
    steps = check_int("steps", steps)
    restarts = check_int("restarts", restarts)
    pgd_tolerance = check_fraction("pgd_tolerance", pgd_tolerance, lo_open=False, hi_open=False)
    chance_tolerance = check_fraction(
        "chance_tolerance", chance_tolerance, lo_open=False, hi_open=False
    )
    zero_gradient_tolerance = check_fraction(
        "zero_gradient_tolerance", zero_gradient_tolerance, lo_open=False, hi_open=False
    )
    lo, hi = _check_input_range(input_range)
    batch_size = check_int("batch_size", batch_size)
    device = _model_device(model, device)
    common = {"input_range": (lo, hi), "batch_size": batch_size, "device": device}

    zero, nonfinite, total, width = _input_gradient_counts(
        model, data, batch_size, device, check_gradients
    )
    if n_classes is None:
        n_classes = width
    n_classes = check_int("n_classes", n_classes)

    out: dict[str, bool | float] = {
        "clean_accuracy": accuracy(model, data, batch_size=batch_size, device=device),
        "chance": 1.0 / n_classes,
    }
    gaps = []
    for eps in grid:
        fgsm = evaluate_attack(model, data, "fgsm", eps, **common)
        pgd = evaluate_attack(model, data, "pgd", eps, steps=steps, restarts=restarts, **common)
        out[f"fgsm_accuracy@{eps:g}"] = fgsm
        out[f"pgd_accuracy@{eps:g}"] = pgd
        gaps.append(pgd - fgsm)
    out["pgd_minus_fgsm_max"] = max(gaps)
    out["pgd_weaker_than_fgsm"] = bool(max(gaps) > pgd_tolerance)

    large = evaluate_attack(model, data, "pgd", large_eps, steps=steps, restarts=restarts, **common)
    out["large_eps"] = large_eps
    out["large_eps_accuracy"] = large
    out["large_eps_not_near_chance"] = bool(large > out["chance"] + chance_tolerance)

    flags = ["pgd_weaker_than_fgsm", "large_eps_not_near_chance"]
    if check_gradients:
        out["zero_gradient_fraction"] = zero / total
        out["nonfinite_gradient_fraction"] = nonfinite / total
        out["zero_or_nan_gradients"] = bool(nonfinite > 0 or zero / total > zero_gradient_tolerance)
        flags.append("zero_or_nan_gradients")
    out["masked"] = any(bool(out[f]) for f in flags)
    if out["masked"]:
        logger.info("possible gradient masking: %s", [f for f in flags if out[f]])
    return out


def _input_gradient_counts(
    model: nn.Module, data: Data, batch_size: int, device: torch.device, check_gradients: bool
) -> tuple[int, int, int, int]:
    """``(zero, nonfinite, total, logit_width)``: samples whose input gradient of the
    cross-entropy is exactly zero / non-finite (counted only if ``check_gradients``), the
    number of samples, and the width of the first batch's logits."""
    zero = nonfinite = total = 0
    width = None
    with _eval_mode(model), torch.enable_grad():
        for x, y in _batches(data, batch_size):
            x = x.to(device).detach().clone()
            if not x.is_floating_point():
                x = x.float()
            x.requires_grad_(True)
            y = y.to(device)
            logits = model(x)
            if width is None:
                width = int(logits.shape[1])
            if check_gradients:
                (grad,) = torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), x)
                grad = grad.reshape(len(x), -1)
                finite = torch.isfinite(grad).all(dim=1)
                nonfinite += int((~finite).sum())
                zero += int(((grad == 0).all(dim=1) & finite).sum())
            total += len(y)
    if total == 0:
        raise ValueError("data is empty")
    return zero, nonfinite, total, width
