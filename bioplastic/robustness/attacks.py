"""Accuracy under attack: clean accuracy, adversarial examples, robust accuracy and curves."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from bioplastic._checks import check_int, check_number
from bioplastic.robustness._common import (
    ALPHA_FACTOR,
    Data,
    _batches,
    _build_attack,
    _check_attack,
    _check_input_range,
    _eval_mode,
    _import_torchattacks,
    _model_device,
    _predict,
    _resolve_alpha,
    _UnitRangeModel,
    _warn_if_out_of_range,
)

logger = logging.getLogger(__name__)


def accuracy(
    model: nn.Module,
    data: Data,
    *,
    batch_size: int = 256,
    device: torch.device | str | None = None,
) -> float:
    """Clean top-1 accuracy in ``[0, 1]`` of ``model`` on ``data``, evaluated in eval mode.

    Args:
        model: a classifier returning logits of shape ``(N, n_classes)``.
        data: an ``(inputs, labels)`` pair of tensors or arrays, or an iterable of
            ``(inputs, labels, ...)`` batches (e.g. a ``DataLoader``).
        batch_size: batch size used when ``data`` is a pair of tensors.
        device: where to run; default: the device of the model's parameters. The model is not
            moved.
    """
    batch_size = check_int("batch_size", batch_size)
    device = _model_device(model, device)
    correct = total = 0
    with _eval_mode(model):
        for x, y in _batches(data, batch_size):
            x, y = x.to(device), y.to(device)
            correct += int((_predict(model, x) == y).sum())
            total += len(y)
    if total == 0:
        raise ValueError("data is empty")
    return correct / total


def adversarial_examples(
    model: nn.Module,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    attack: str,
    eps: float,
    *,
    steps: int = 10,
    alpha: float | None = None,
    random_start: bool = True,
    input_range: Sequence[float] = (0.0, 1.0),
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Adversarial versions of ``inputs`` (same shape and range), computed by torchattacks.

    Args:
        model: a classifier returning logits; evaluated in eval mode, its modes are restored.
        inputs: a batch of model inputs, any shape ``(N, ...)``, values in ``input_range``.
        labels: true class indices, shape ``(N,)``.
        attack: ``"fgsm"`` (one signed-gradient step), ``"pgd"`` (L-inf PGD) or ``"pgd_l2"``.
        eps: perturbation budget in units of the input range (see the module docstring).
        steps: PGD iterations (ignored by FGSM); >= 1.
        alpha: PGD step size; default ``2.5 * eps / steps``.
        random_start: start PGD from a random point in the eps-ball.
        input_range: ``(lo, hi)``, the range of the model's inputs.
        device: where to run; default: the device of the model's parameters.
    """
    attack = _check_attack(attack)
    eps = check_number("eps", eps, 0.0)
    steps = check_int("steps", steps)
    alpha = _resolve_alpha(alpha, eps, steps)
    lo, hi = _check_input_range(input_range)
    device = _model_device(model, device)
    inputs, labels = inputs.to(device), labels.to(device)
    if eps == 0 or len(inputs) == 0:
        return inputs.detach().clone()
    with _eval_mode(model), torch.enable_grad():
        wrapped = _UnitRangeModel(model, lo, hi, inputs.shape[1:]).eval()
        atk = _build_attack(wrapped, attack, eps, steps, alpha, random_start, device)
        adv_unit = atk(wrapped.to_unit(inputs), labels)
        return wrapped.from_unit(adv_unit).detach()


def evaluate_attack(
    model: nn.Module,
    data: Data,
    attack: str,
    eps: float,
    *,
    steps: int = 10,
    alpha: float | None = None,
    restarts: int = 1,
    random_start: bool = True,
    input_range: Sequence[float] = (0.0, 1.0),
    batch_size: int = 256,
    device: torch.device | str | None = None,
) -> float:
    """Robust accuracy in ``[0, 1]``: the fraction of samples classified correctly both clean
    and under attack.

    A sample counts as robust only if it is correct on the clean input *and* survives every one
    of the ``restarts`` attacks (restarts only matter for PGD with ``random_start``; FGSM and
    deterministic PGD run once). Hence robust accuracy never exceeds clean accuracy. The model
    is evaluated in eval mode and each submodule's mode is restored afterwards.

    Args:
        model: a classifier returning logits of shape ``(N, n_classes)``.
        data: an ``(inputs, labels)`` pair of tensors or arrays, or an iterable of
            ``(inputs, labels, ...)`` batches (e.g. a ``DataLoader``).
        attack: one of :data:`ATTACKS`: ``"fgsm"``, ``"pgd"`` (L-inf), ``"pgd_l2"``.
        eps: perturbation budget >= 0, as a fraction of the input range for L-inf attacks and
            as an L2 norm in the rescaled ``[0, 1]`` input space for ``pgd_l2``.
            ``eps=0`` returns clean accuracy.
        steps: PGD iterations (>= 1; ignored by FGSM).
        alpha: PGD step size in the same units as ``eps``; default ``2.5 * eps / steps``.
        restarts: number of independent random-start PGD runs (>= 1).
        random_start: start PGD from a random point in the eps-ball.
        input_range: ``(lo, hi)``, the range of the model's inputs (default ``(0, 1)``).
        batch_size: batch size used when ``data`` is a pair of tensors.
        device: where to run; default: the device of the model's parameters. The model is not
            moved.

    Raises:
        ValueError: unknown ``attack``, ``eps < 0``, ``steps < 1``, ``restarts < 1``, ...
        ImportError: torchattacks is not installed.
    """
    attack = _check_attack(attack)
    eps = check_number("eps", eps, 0.0)
    steps = check_int("steps", steps)
    restarts = check_int("restarts", restarts)
    batch_size = check_int("batch_size", batch_size)
    alpha = _resolve_alpha(alpha, eps, steps)
    lo, hi = _check_input_range(input_range)
    device = _model_device(model, device)
    if eps > 0:
        _import_torchattacks()  # fail before any work if it is missing
    runs = restarts if (attack != "fgsm" and random_start) else 1

    robust = total = 0
    warned = [False]
    with _eval_mode(model):
        for x, y in _batches(data, batch_size):
            x, y = x.to(device), y.to(device)
            _warn_if_out_of_range(x, lo, hi, warned)
            alive = _predict(model, x) == y
            for _ in range(runs if eps > 0 else 0):
                idx = alive.nonzero().flatten()
                if len(idx) == 0:
                    break
                adv = adversarial_examples(
                    model,
                    x[idx],
                    y[idx],
                    attack,
                    eps,
                    steps=steps,
                    alpha=alpha,
                    random_start=random_start,
                    input_range=(lo, hi),
                    device=device,
                )
                alive[idx] = _predict(model, adv) == y[idx]
            robust += int(alive.sum())
            total += len(y)
    if total == 0:
        raise ValueError("data is empty")
    return robust / total


def robustness_curve(
    model: nn.Module,
    data: Data,
    attacks: Sequence[str] = ("fgsm", "pgd"),
    epsilons: Sequence[float] | Mapping[str, Sequence[float]] = (
        0.0,
        0.02,
        0.05,
        0.1,
        0.2,
        0.3,
    ),
    *,
    steps: int = 10,
    restarts: int = 1,
    input_range: Sequence[float] = (0.0, 1.0),
    batch_size: int = 256,
    device: torch.device | str | None = None,
) -> dict[str, Any]:
    """Accuracy-versus-epsilon curves for several attacks, as a plain JSON-serialisable dict.

    Args:
        model, data, steps, restarts, input_range, batch_size, device: as in
            :func:`evaluate_attack` (PGD step size is ``2.5 * eps / steps`` at every epsilon).
        attacks: attack names from :data:`ATTACKS`.
        epsilons: budgets shared by all attacks, or a mapping ``{attack: budgets}`` (useful
            because L2 budgets are on a different scale from L-inf ones).

    Returns:
        ``{"clean_accuracy": float, "n_samples": int, "attacks": [...],
        "epsilons": {attack: [eps, ...]}, "accuracy": {attack: [acc, ...]},
        "settings": {"steps", "restarts", "alpha_rule", "input_range", "eps_units"}}``,
        with ``accuracy[a][i]`` the robust accuracy under attack ``a`` at ``epsilons[a][i]``.
    """
    attacks = [_check_attack(a) for a in attacks]
    if not attacks:
        raise ValueError("attacks must name at least one attack")
    if isinstance(epsilons, Mapping):
        unknown = set(epsilons) - set(attacks)
        if unknown:
            raise ValueError(f"epsilons has budgets for attacks not in attacks: {sorted(unknown)}")
        missing = [a for a in attacks if a not in epsilons]
        if missing:
            raise ValueError(f"epsilons has no budgets for attacks {missing}")
        eps_per_attack = {
            a: [check_number("epsilons", e, 0.0) for e in epsilons[a]] for a in attacks
        }
    else:
        shared = [check_number("epsilons", e, 0.0) for e in epsilons]
        eps_per_attack = {a: list(shared) for a in attacks}
    lo, hi = _check_input_range(input_range)
    steps = check_int("steps", steps)
    restarts = check_int("restarts", restarts)

    clean = accuracy(model, data, batch_size=batch_size, device=device)
    n_samples = sum(len(y) for _, y in _batches(data, batch_size))
    curves: dict[str, list[float]] = {}
    for attack in attacks:
        curves[attack] = []
        for eps in eps_per_attack[attack]:
            acc = (
                clean
                if eps == 0
                else evaluate_attack(
                    model,
                    data,
                    attack,
                    eps,
                    steps=steps,
                    restarts=restarts,
                    input_range=(lo, hi),
                    batch_size=batch_size,
                    device=device,
                )
            )
            curves[attack].append(float(acc))
            logger.debug("%s eps=%g: accuracy %.4f", attack, eps, acc)
    return {
        "clean_accuracy": float(clean),
        "n_samples": int(n_samples),
        "attacks": list(attacks),
        "epsilons": eps_per_attack,
        "accuracy": curves,
        "settings": {
            "steps": steps,
            "restarts": restarts,
            "alpha_rule": f"{ALPHA_FACTOR} * eps / steps",
            "input_range": [lo, hi],
            "eps_units": "fraction of input range (L-inf); L2 norm of rescaled input (pgd_l2)",
            "attack_library": "torchattacks",
        },
    }
