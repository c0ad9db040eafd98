"""Adversarial robustness evaluation, gradient-masking checks and matched-accuracy training.

The attacks themselves come from `torchattacks <https://github.com/Harry24k/adversarial-attacks-pytorch>`_
(``pip install torchattacks``), a maintained attack library; this module only drives it:

- :func:`evaluate_attack`: accuracy under FGSM, PGD (L-inf) or PGD (L2), with random restarts.
- :func:`robustness_curve`: clean and per-attack, per-epsilon accuracy (a JSON-ready dict).
- :func:`gradient_masking_checks`: sanity checks that robust accuracy is not an artefact of
  masked or obfuscated gradients (Athalye, Carlini & Wagner 2018, "Obfuscated gradients give a
  false sense of security"; Carlini et al. 2019, "On evaluating adversarial robustness").
- :func:`train_to_accuracy`: the matched-accuracy protocol. Robustness depends strongly on how
  well a model fits its data, so learning rules are compared at *equal clean accuracy*: train
  each model with any optimizer until its validation accuracy first reaches the same target,
  then compare their :func:`robustness_curve`. Report the accuracy actually reached (the target
  is usually overshot a little; ``eval_every_steps`` reduces the overshoot).

**Units of epsilon.** torchattacks assumes inputs in ``[0, 1]``. Every function here takes an
``input_range=(lo, hi)`` describing where the *model's* inputs live (default ``(0, 1)``, e.g.
scikit-learn digits divided by 16). The model is wrapped so that attacks run on the rescaled
input ``u = (x - lo) / (hi - lo)`` in ``[0, 1]``; ``eps`` and ``alpha`` are therefore fractions
of the input range (L-inf), or L2 norms in that rescaled space (``pgd_l2``). Adversarial inputs
are clipped to ``[lo, hi]``. Inputs of any shape work (flat feature vectors, images).

``bioplastic`` imports without torchattacks; it is only imported when an attack runs.

Example::

    >>> from bioplastic.robustness import robustness_curve
    >>> curve = robustness_curve(model, (x_test, y_test), epsilons=[0.0, 0.05, 0.1])
    >>> curve["accuracy"]["pgd"]            # one accuracy per epsilon
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "ATTACKS",
    "TrainToAccuracyResult",
    "accuracy",
    "adversarial_examples",
    "evaluate_attack",
    "gradient_masking_checks",
    "robustness_curve",
    "train_to_accuracy",
]

logger = logging.getLogger(__name__)

#: Attack names accepted by every function in this module.
ATTACKS: tuple[str, ...] = ("fgsm", "pgd", "pgd_l2")

#: Default step-size rule: ``alpha = ALPHA_FACTOR * eps / steps`` (Madry et al. 2018 use 2.5).
ALPHA_FACTOR = 2.5

Data = Any  # a DataLoader-like iterable of (x, y, ...) batches, or an (x, y) pair of tensors


# --------------------------------------------------------------------------- validation


def _check_attack(attack: str) -> str:
    if not isinstance(attack, str) or attack.lower() not in ATTACKS:
        allowed = ", ".join(repr(a) for a in ATTACKS)
        raise ValueError(f"attack must be one of {allowed}; got {attack!r}")
    return attack.lower()


def _check_eps(eps: float, name: str = "eps") -> float:
    eps = float(eps)
    if not math.isfinite(eps) or eps < 0:
        raise ValueError(f"{name} must be a finite number >= 0; got {eps}")
    return eps


def _check_positive_int(value: int, name: str) -> int:
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
    return int(value)


def _check_fraction(value: float, name: str, *, open_low: bool = False) -> float:
    value = float(value)
    ok = (0.0 < value <= 1.0) if open_low else (0.0 <= value <= 1.0)
    if not ok:
        bounds = "(0, 1]" if open_low else "[0, 1]"
        raise ValueError(f"{name} must be in {bounds}; got {value}")
    return value


def _check_input_range(input_range: Sequence[float]) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in input_range)
    except (TypeError, ValueError):
        raise ValueError(
            f"input_range must be a pair (lo, hi) of numbers; got {input_range!r}"
        ) from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"input_range must satisfy lo < hi (both finite); got {(lo, hi)}")
    return lo, hi


def _import_torchattacks():
    try:
        import torchattacks
    except ImportError as err:
        raise ImportError(
            "bioplastic.robustness needs the torchattacks package for adversarial attacks: "
            "pip install torchattacks  (or pip install 'bioplastic[robustness]')"
        ) from err
    return torchattacks


# --------------------------------------------------------------------------- helpers


def _batches(data: Data, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(x, y)`` from an ``(x, y)`` pair of tensors/arrays or from a loader.

    Loaders may yield extra items per batch (Avalanche adds task labels); they are ignored.
    """
    if isinstance(data, (tuple, list)) and len(data) == 2 and not _looks_like_batches(data):
        x, y = (torch.as_tensor(v) for v in data)
        if len(x) != len(y):
            raise ValueError(f"inputs and labels differ in length: {len(x)} vs {len(y)}")
        for start in range(0, len(x), batch_size):
            yield x[start : start + batch_size], y[start : start + batch_size]
        return
    for batch in data:
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise ValueError("each batch must be a sequence (inputs, labels, ...)")
        yield torch.as_tensor(batch[0]), torch.as_tensor(batch[1])


def _looks_like_batches(pair: Sequence[Any]) -> bool:
    # A list of two (x, y) batches must not be mistaken for one (x, y) pair of tensors.
    return all(isinstance(item, (tuple, list)) for item in pair)


def _model_device(model: nn.Module, device: torch.device | str | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return torch.device("cpu")


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Put every submodule in eval mode and restore each one's own mode afterwards."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


class _UnitRangeModel(nn.Module):
    """Presents ``model`` to torchattacks as a model of 4-D inputs in ``[0, 1]``.

    torchattacks' PGDL2 normalises with ``.view(N, 1, 1, 1)``, which broadcasts wrongly for flat
    ``(N, D)`` inputs, so every non-4-D input travels as ``(N, 1, 1, D)`` and is reshaped back.
    """

    def __init__(self, model: nn.Module, lo: float, hi: float, sample_shape: torch.Size):
        super().__init__()
        self.model = model
        self.lo, self.scale = lo, hi - lo
        self.sample_shape = tuple(sample_shape)

    def to_unit(self, x: torch.Tensor) -> torch.Tensor:
        u = x if (self.lo, self.scale) == (0.0, 1.0) else (x - self.lo) / self.scale
        return u if u.dim() == 4 else u.reshape(len(u), 1, 1, -1)

    def from_unit(self, u: torch.Tensor) -> torch.Tensor:
        x = u.reshape(len(u), *self.sample_shape)
        return x if (self.lo, self.scale) == (0.0, 1.0) else self.lo + self.scale * x

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.model(self.from_unit(u))


def _predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).argmax(dim=1)


def _warn_if_out_of_range(x: torch.Tensor, lo: float, hi: float, warned: list[bool]) -> None:
    if warned[0] or x.numel() == 0:
        return
    tol = 1e-6 * (hi - lo)
    if x.min().item() < lo - tol or x.max().item() > hi + tol:
        warned[0] = True
        warnings.warn(
            f"inputs fall outside input_range={(lo, hi)}; attacks clip adversarial inputs to "
            "that range, so pass the range your model's inputs actually live in",
            stacklevel=3,
        )


def _build_attack(
    wrapped: _UnitRangeModel,
    attack: str,
    eps: float,
    steps: int,
    alpha: float,
    random_start: bool,
    device: torch.device,
):
    torchattacks = _import_torchattacks()
    # torchattacks prints (rather than warns) when the model has no parameters; keep stdout clean.
    with contextlib.redirect_stdout(io.StringIO()):
        if attack == "fgsm":
            atk = torchattacks.FGSM(wrapped, eps=eps)
        elif attack == "pgd":
            atk = torchattacks.PGD(
                wrapped, eps=eps, alpha=alpha, steps=steps, random_start=random_start
            )
        else:
            atk = torchattacks.PGDL2(
                wrapped, eps=eps, alpha=alpha, steps=steps, random_start=random_start
            )
    atk.set_device(device)
    return atk


def _resolve_alpha(alpha: float | None, eps: float, steps: int) -> float:
    if alpha is None:
        return ALPHA_FACTOR * eps / steps
    alpha = float(alpha)
    if not math.isfinite(alpha) or alpha <= 0:
        raise ValueError(f"alpha must be a finite number > 0 (or None); got {alpha}")
    return alpha


# --------------------------------------------------------------------------- public API


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
    batch_size = _check_positive_int(batch_size, "batch_size")
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
    eps = _check_eps(eps)
    steps = _check_positive_int(steps, "steps")
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
    eps = _check_eps(eps)
    steps = _check_positive_int(steps, "steps")
    restarts = _check_positive_int(restarts, "restarts")
    batch_size = _check_positive_int(batch_size, "batch_size")
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
        eps_per_attack = {a: [_check_eps(e, "epsilons") for e in epsilons[a]] for a in attacks}
    else:
        shared = [_check_eps(e, "epsilons") for e in epsilons]
        eps_per_attack = {a: list(shared) for a in attacks}
    lo, hi = _check_input_range(input_range)
    steps = _check_positive_int(steps, "steps")
    restarts = _check_positive_int(restarts, "restarts")

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
    grid = [_check_eps(e, "eps_grid") for e in eps_grid]
    if not grid or any(e == 0 for e in grid):
        raise ValueError(f"eps_grid must be a non-empty sequence of budgets > 0; got {grid}")
    large_eps = _check_eps(large_eps, "large_eps")
    if large_eps == 0:
        raise ValueError("large_eps must be > 0")
    steps = _check_positive_int(steps, "steps")
    restarts = _check_positive_int(restarts, "restarts")
    pgd_tolerance = _check_fraction(pgd_tolerance, "pgd_tolerance")
    chance_tolerance = _check_fraction(chance_tolerance, "chance_tolerance")
    zero_gradient_tolerance = _check_fraction(zero_gradient_tolerance, "zero_gradient_tolerance")
    lo, hi = _check_input_range(input_range)
    batch_size = _check_positive_int(batch_size, "batch_size")
    device = _model_device(model, device)
    common = {"input_range": (lo, hi), "batch_size": batch_size, "device": device}

    zero = nonfinite = total = 0
    with _eval_mode(model), torch.enable_grad():
        for x, y in _batches(data, batch_size):
            x = x.to(device).detach().clone()
            if not x.is_floating_point():
                x = x.float()
            x.requires_grad_(True)
            y = y.to(device)
            logits = model(x)
            if n_classes is None:
                n_classes = int(logits.shape[1])
            if check_gradients:
                (grad,) = torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), x)
                grad = grad.reshape(len(x), -1)
                finite = torch.isfinite(grad).all(dim=1)
                nonfinite += int((~finite).sum())
                zero += int(((grad == 0).all(dim=1) & finite).sum())
            total += len(y)
    if total == 0:
        raise ValueError("data is empty")
    n_classes = _check_positive_int(n_classes, "n_classes")

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


@dataclass
class TrainToAccuracyResult:
    """Outcome of :func:`train_to_accuracy`.

    Attributes:
        reached: whether validation accuracy reached the target.
        accuracy: validation accuracy at the stop (in ``[0, 1]``).
        epoch: epochs completed at the stop (0 if the untrained model already met the target;
            a partial epoch counts as started, i.e. ``epoch`` is 1-based when stopping mid-epoch).
        steps: optimizer steps taken.
        history: ``(step, accuracy)`` for every validation.
    """

    reached: bool
    accuracy: float
    epoch: int
    steps: int
    history: list[tuple[int, float]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy."""
        d = asdict(self)
        d["history"] = [list(h) for h in self.history]
        return d


def train_to_accuracy(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    train_loader: Iterable,
    val_data: Data,
    target_acc: float,
    max_epochs: int,
    *,
    eval_every_steps: int | None = None,
    loss_fn: nn.Module | None = None,
    batch_size: int = 256,
    device: torch.device | str | None = None,
) -> TrainToAccuracyResult:
    """Train with cross-entropy until validation accuracy first reaches ``target_acc``.

    The matched-accuracy protocol: bring models trained by different learning rules to the same
    clean accuracy before comparing their robustness. Validation runs before training, after
    every epoch and, if ``eval_every_steps`` is set, every that many optimizer steps (finer
    checks overshoot the target less). Training stops at the first validation at or above the
    target, or after ``max_epochs``. Works with any ``torch.optim.Optimizer`` (including
    ``BioRule``); the model's train/eval modes are restored at the end.

    Args:
        model: the classifier to train, already on its device.
        optimizer: any optimizer over the model's parameters.
        train_loader: iterable of ``(inputs, labels, ...)`` batches, re-iterated every epoch.
        val_data: validation data, in any form :func:`accuracy` accepts.
        target_acc: target validation accuracy in ``(0, 1]``.
        max_epochs: maximum number of epochs (>= 1).
        eval_every_steps: also validate every this many steps (>= 1), or ``None``.
        loss_fn: the loss; default ``nn.CrossEntropyLoss()``.
        batch_size, device: as in :func:`accuracy`.

    Example::

        >>> result = train_to_accuracy(model, torch.optim.Adam(model.parameters()), loader,
        ...                            (x_val, y_val), target_acc=0.95, max_epochs=50)
        >>> result.reached, result.epoch, result.accuracy
    """
    target_acc = _check_fraction(target_acc, "target_acc", open_low=True)
    max_epochs = _check_positive_int(max_epochs, "max_epochs")
    if eval_every_steps is not None:
        eval_every_steps = _check_positive_int(eval_every_steps, "eval_every_steps")
    loss_fn = nn.CrossEntropyLoss() if loss_fn is None else loss_fn
    device = _model_device(model, device)
    modes = [(module, module.training) for module in model.modules()]
    history: list[tuple[int, float]] = []
    steps = 0

    def validate() -> float:
        acc = accuracy(model, val_data, batch_size=batch_size, device=device)
        history.append((steps, acc))
        return acc

    try:
        acc = validate()
        if acc >= target_acc:
            return TrainToAccuracyResult(True, acc, 0, steps, history)
        for epoch in range(1, max_epochs + 1):
            model.train()
            for batch in train_loader:
                x, y = batch[0].to(device), batch[1].to(device)
                optimizer.zero_grad()
                loss_fn(model(x), y).backward()
                optimizer.step()
                steps += 1
                if eval_every_steps is not None and steps % eval_every_steps == 0:
                    acc = validate()
                    model.train()
                    if acc >= target_acc:
                        return TrainToAccuracyResult(True, acc, epoch, steps, history)
            if history[-1][0] != steps:  # not validated at this very step already
                acc = validate()
            logger.debug("epoch %d: validation accuracy %.4f", epoch, acc)
            if acc >= target_acc:
                return TrainToAccuracyResult(True, acc, epoch, steps, history)
        return TrainToAccuracyResult(False, acc, max_epochs, steps, history)
    finally:
        for module, training in modes:
            module.training = training
