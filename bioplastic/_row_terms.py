"""Per-row statistics of a synapse weight and the factors of the bio rule's drive built from them.

Rows are postsynaptic units (dimension 0); with Dale types (:func:`type_masks`) a row's
excitatory and inhibitory entries are summed apart. :mod:`bioplastic.functional` re-exports the
public names.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "metabolic_drive", "presynaptic_shape", "row_budgets", "row_mean_magnitudes",
    "saturation_factor", "type_masks", "weight_dependence",
]  # fmt: skip


def presynaptic_shape(weight: Tensor) -> list[int]:
    """Shape that broadcasts a per-presynaptic-unit vector along dimension 1 of ``weight``."""
    shape = [1] * weight.dim()
    shape[1] = -1
    return shape


def type_masks(unit_sign: Tensor, weight: Tensor) -> Tensor:
    """``[2, fan_in]`` float masks of the excitatory and inhibitory entries of a weight row.

    ``unit_sign`` holds the presynaptic types (dimension 1); a row of a convolution weight
    repeats each input channel's type over its kernel.
    """
    per_input = weight[0].numel() // weight.shape[1]
    exc = (unit_sign > 0).to(weight.dtype).repeat_interleave(per_input)
    return torch.stack([exc, 1.0 - exc])


def row_budgets(weight: Tensor, types: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Summed excitatory and inhibitory magnitudes of each postsynaptic unit (dimension 0).

    With ``types`` (from :func:`type_masks`, for a Dale-typed weight) the sums are one
    matrix product; otherwise entries are classified by their own sign.
    """
    rows = weight.reshape(weight.shape[0], -1)
    if types is not None:
        sums = rows @ types.T
        return sums[:, 0], -sums[:, 1]
    exc = rows.clamp(min=0).sum(1)
    return exc, exc - rows.sum(1)


def row_mean_magnitudes(
    weight: Tensor, types: Tensor | None = None, present_only: bool = False
) -> Tensor:
    """Weight-shaped tensor: each entry's row mean magnitude over its type, absent included.

    For a Dale-typed weight (``types`` from :func:`type_masks`) an excitatory entry gets the
    summed excitatory magnitude of its postsynaptic unit (row) divided by the number of
    excitatory afferents (present or absent), an inhibitory entry the inhibitory one;
    otherwise entries are classified by their own sign. Under homeostasis the sums stay at
    their budgets, so this is ``budget / potential synapses``: a per-unit scale that does not
    move as synapses are eliminated (survivors grow away from it as connectivity falls).
    With ``present_only`` the mean is over present synapses (the typical survivor's size).
    """
    rows = weight.reshape(weight.shape[0], -1)
    if present_only:
        present = (rows != 0).to(weight.dtype)
        if types is None:
            types = torch.stack([(rows > 0).to(weight.dtype), (rows < 0).to(weight.dtype)])
            sums = torch.stack([(rows * types[0]).sum(1), (-rows * types[1]).sum(1)], 1)
            counts = torch.stack([types[0].sum(1), types[1].sum(1)], 1)
            mean = sums / counts.clamp(min=1)
            return (mean[:, :1] * types[0] + mean[:, 1:] * types[1]).reshape(weight.shape)
        mean = (rows.abs() @ types.T) / (present @ types.T).clamp(min=1)
        return (mean @ types).reshape(weight.shape)
    if types is None:
        exc = (rows > 0).to(weight.dtype)
        inh = (rows < 0).to(weight.dtype)
        n_e, n_i = exc.sum(1, keepdim=True), inh.sum(1, keepdim=True)
        mean_e = rows.clamp(min=0).sum(1, keepdim=True) / n_e.clamp(min=1)
        mean_i = (-rows).clamp(min=0).sum(1, keepdim=True) / n_i.clamp(min=1)
        return (mean_e * exc + mean_i * inh).reshape(weight.shape)
    sums = rows.abs() @ types.T
    mean = sums / types.sum(1).clamp(min=1)
    return (mean @ types).reshape(weight.shape)


def metabolic_drive(weight: Tensor, types: Tensor | None, cost: float) -> Tensor:
    """``cost * mbar / m`` on present synapses (0 on absent ones): a fixed cost per synapse.

    ``mbar`` is the row's budget per potential synapse (:func:`row_mean_magnitudes`). In the
    log domain a fixed cost per synapse weighs ``1/m``: weak synapses pay more, and the
    homeostatic rescale, which undoes any uniform log shift, hands what they lose to the
    strong ones, so unsupported synapses are driven out by competition; survivors grow as
    ``1/connectivity``, so the cost they feel, and elimination, slow down as sparsity rises.
    """
    return _mbar_over_m(weight, types).mul_(cost)


def _mbar_over_m(weight: Tensor, types: Tensor | None) -> Tensor:
    """``mbar / m`` on present synapses, 0 on absent ones (:func:`row_mean_magnitudes`)."""
    mag = weight.abs()
    mbar = row_mean_magnitudes(weight, types)
    return torch.where(mag > 0, mbar / mag.clamp(min=torch.finfo(weight.dtype).tiny), mag)


def weight_dependence(weight: Tensor, types: Tensor | None, exponent: float) -> Tensor:
    """``(mbar / m) ** (1 - exponent)`` on present synapses, 1 on absent ones.

    Multiplying the log-domain drive by it makes a step change the magnitude by about
    ``m ** exponent * mbar ** (1 - exponent)`` instead of ``m`` (Gutig et al. 2003's weight
    dependence: 1 is multiplicative, 0 additive, scaled to the row's budget per potential
    synapse ``mbar`` of :func:`row_mean_magnitudes`), so weak synapses move relatively faster.
    """
    return _dependence_factor(_mbar_over_m(weight, types), exponent)


def _dependence_factor(ratio: Tensor, exponent: float) -> Tensor:
    """:func:`weight_dependence` from ``mbar / m`` (0 on absent synapses)."""
    return torch.where(ratio > 0, ratio.pow(1.0 - exponent), torch.ones_like(ratio))


def saturation_factor(ratio: Tensor, saturation: float) -> Tensor:
    """``1 / (1 + (m / (saturation * mbar)) ** 2)`` from ``ratio = mbar / m`` (1 where ``ratio``
    is 0, an absent synapse): the soft upper bound of potentiation.

    About 1 for a synapse well below ``saturation * mbar``, a half at it and ``(saturation *
    mbar / m) ** 2`` above, so the potentiation of a synapse far above ``saturation`` times its
    row's budget per potential synapse fades (a fixed level while budgets hold: the soft bounds
    of Gutig et al. 2003 and van Rossum et al. 2000, a spine's limited room for receptors).
    """
    relative = torch.reciprocal(ratio * saturation)  # m / (saturation * mbar); inf if absent
    factor = relative.square_().add_(1.0).reciprocal_()
    return torch.where(ratio > 0, factor, 1.0)


def _weight_factor(
    ratio: Tensor, dependence: tuple[float, str], grows: Tensor, saturation: float = 0.0
) -> Tensor:
    """The factor of the drive for ``dependence = (mu, on)``: :func:`weight_dependence`,
    only where ``grows`` (potentiation) if ``on == "potentiation"``; times
    :func:`saturation_factor` where ``grows`` if ``saturation > 0``."""
    factor = torch.ones_like(ratio)
    if dependence[0] != 1.0:  # (mbar / m) ** 0 is 1: nothing to compute
        factor = _dependence_factor(ratio, dependence[0])
        if dependence[1] == "potentiation":
            factor = torch.where(grows, factor, 1.0)
    if saturation:
        factor = factor.mul_(torch.where(grows, saturation_factor(ratio, saturation), 1.0))
    return factor
