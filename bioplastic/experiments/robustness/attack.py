"""APGD-DLR (scale-invariant) and its per-sample ensemble with PGD, via torchattacks."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

# --------------------------------------------------------------------------- APGD-DLR

#: The scale-invariant check attack: APGD with the DLR loss (Croce & Hein 2020), L-inf.
DLR_ATTACK = "apgd_dlr"
#: Per-sample worst case of L-inf PGD (cross-entropy) and APGD-DLR at the same budget.
ENSEMBLE_ATTACK = "linf_ensemble"


class _UnitInput(nn.Module):
    """``model`` seen by torchattacks: inputs in [0, 1] shaped ``(N, 1, 1, D)``."""

    def __init__(self, model: nn.Module, lo: float, hi: float, sample_shape: Sequence[int]):
        super().__init__()
        self.model, self.lo, self.scale = model, lo, hi - lo
        self.sample_shape = tuple(sample_shape)

    def forward(self, u: Tensor) -> Tensor:
        return self.model(self.lo + self.scale * u.reshape(len(u), *self.sample_shape))


def _survivors(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    *,
    steps: int,
    restarts: int,
    input_range: Sequence[float],
    seed: int,
    with_pgd: bool,
) -> tuple[Tensor, Tensor | None]:
    """Per-sample robustness (bool ``[N]``) under APGD-DLR, and optionally under PGD-CE.

    Correctness is kept per sample, not as an accuracy (e.g. torchmetrics'
    ``MulticlassAccuracy``): only samples correct so far are attacked again, and the ensemble
    counts a sample as robust only if it survives every attack, so the masks are combined
    before anything is averaged.
    """
    try:
        import torchattacks
    except ImportError as err:
        raise ImportError("APGD-DLR needs torchattacks: pip install torchattacks") from err
    from bioplastic.robustness import adversarial_examples

    if not (math.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps must be a finite number >= 0, got {eps}")
    lo, hi = (float(v) for v in input_range)
    if not hi > lo:
        raise ValueError(f"input_range must satisfy lo < hi, got {(lo, hi)}")
    device = next(model.parameters()).device
    x, y = x.to(device), y.to(device)
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            clean = model(x).argmax(1) == y
        dlr = clean.clone()
        pgd = clean.clone() if with_pgd else None
        if eps > 0 and bool(clean.any()):
            idx = clean.nonzero().flatten()
            wrapped = _UnitInput(model, lo, hi, x.shape[1:])
            atk = torchattacks.APGD(
                wrapped,
                norm="Linf",
                eps=eps,
                steps=steps,
                n_restarts=restarts,
                seed=seed,
                loss="dlr",
            )
            u = ((x[idx] - lo) / (hi - lo)).reshape(len(idx), 1, 1, -1)
            with torch.enable_grad():
                adv = atk(u, y[idx])
            with torch.no_grad():
                dlr[idx] = wrapped(adv).argmax(1) == y[idx]
            if with_pgd:
                for _ in range(restarts):
                    live = idx[pgd[idx]]
                    if len(live) == 0:
                        break
                    adv_x = adversarial_examples(
                        model, x[live], y[live], "pgd", eps, steps=steps, input_range=(lo, hi)
                    )
                    with torch.no_grad():
                        pgd[live] = model(adv_x).argmax(1) == y[live]
    finally:
        for m, flag in modes:
            m.training = flag
    return dlr, pgd


def apgd_dlr_accuracy(
    model: nn.Module,
    data: tuple[Tensor, Tensor],
    eps: float,
    *,
    steps: int = 10,
    restarts: int = 1,
    input_range: Sequence[float] = (0.0, 1.0),
    seed: int = 0,
    ensemble_with_pgd: bool = False,
) -> float | tuple[float, float]:
    """Robust accuracy under torchattacks' APGD (L-inf) with the DLR loss.

    The DLR loss ``-(z_y - max_{k != y} z_k) / (z_pi1 - z_pi3)`` (Croce & Hein 2020, "Reliable
    evaluation of adversarial robustness with an ensemble of diverse parameter-free attacks")
    is invariant to shifting and positively rescaling the logits, unlike the cross-entropy
    that FGSM and PGD ascend: the check that a robustness difference is not an artefact of
    logit scale (softmax saturation). ``eps`` is a fraction of ``input_range``; a sample counts
    as robust only if it is correct clean and after the attack. Needs >= 3 classes.

    With ``ensemble_with_pgd`` it returns ``(dlr_accuracy, ensemble_accuracy)``, where the
    ensemble counts a sample as robust only if it also survives L-inf PGD on the cross-entropy
    (``steps`` steps, ``restarts`` random restarts): the per-sample worst case of the two
    attacks, as AutoAttack combines its attacks.
    """
    x, y = data
    if len(x) != len(y) or len(x) == 0:
        raise ValueError("data must be a non-empty (inputs, labels) pair of equal length")
    dlr, pgd = _survivors(
        model,
        x,
        y,
        eps,
        steps=steps,
        restarts=restarts,
        input_range=input_range,
        seed=seed,
        with_pgd=ensemble_with_pgd,
    )
    if not ensemble_with_pgd:
        return float(dlr.float().mean())
    return float(dlr.float().mean()), float((dlr & pgd).float().mean())
