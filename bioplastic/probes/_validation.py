"""Argument checks and small statistics shared by the probes (private)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn.modules.conv import _ConvNd

# --------------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------------


def _is_synaptic(module: nn.Module) -> bool:
    return isinstance(module, (nn.Linear, _ConvNd)) and isinstance(
        getattr(module, "weight", None), Tensor
    )


def _check_tensor(x: object, name: str, *, min_dim: int = 0, dim: int | None = None) -> Tensor:
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if dim is not None and x.dim() != dim:
        raise ValueError(f"{name} must have {dim} dimensions, got shape {tuple(x.shape)}")
    if x.dim() < min_dim:
        raise ValueError(
            f"{name} must have at least {min_dim} dimensions, got shape {tuple(x.shape)}"
        )
    if x.numel() == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(x.shape)}")
    return x.detach()


def _check_weight(weight: object, name: str = "weight") -> Tensor:
    return _check_tensor(weight, name, min_dim=2)


def _check_acts(acts: object, name: str = "acts", *, non_negative: bool = False) -> Tensor:
    acts = _check_tensor(acts, name, dim=2)
    if not torch.is_floating_point(acts):
        acts = acts.to(torch.get_default_dtype())
    if not bool(torch.isfinite(acts).all()):
        raise ValueError(f"{name} must be finite")
    if non_negative and bool((acts < 0).any()):
        raise ValueError(f"{name} must be non-negative (firing rates, e.g. after a ReLU)")
    return acts


def _check_dale_sign(dale_sign: object, n_pre: int, name: str = "dale_sign") -> Tensor:
    sign = _check_tensor(dale_sign, name, dim=1)
    if sign.shape[0] != n_pre:
        raise ValueError(
            f"{name} must have shape [{n_pre}] (weight.shape[1]), got {tuple(sign.shape)}"
        )
    if not bool(((sign == 1) | (sign == -1)).all()):
        raise ValueError(f"{name} entries must be +1 (excitatory) or -1 (inhibitory)")
    return sign


def _weight_and_sign(
    module_or_weight: nn.Module | Tensor, dale_sign: Tensor | None, name: str
) -> tuple[Tensor, Tensor | None]:
    """Weight (detached) and presynaptic signs (explicit argument wins over a module buffer)."""
    if isinstance(module_or_weight, nn.Module):
        if not _is_synaptic(module_or_weight):
            raise ValueError(
                f"{name} must be an nn.Linear, an nn.Conv*d or a weight tensor, "
                f"got {type(module_or_weight).__name__}"
            )
        weight = _check_weight(module_or_weight.weight, f"{name}.weight")
        if dale_sign is None:
            dale_sign = getattr(module_or_weight, "dale_sign", None)
    else:
        weight = _check_weight(module_or_weight, name)
    if dale_sign is not None:
        dale_sign = _check_dale_sign(dale_sign, weight.shape[1]).to(weight.device)
    return weight, dale_sign


def _by_presynaptic(weight: Tensor) -> Tensor:
    """``[n_pre, n_post * kernel]`` view: one row per presynaptic unit."""
    return weight.transpose(0, 1).reshape(weight.shape[1], -1)


def _moments(x: Tensor) -> dict[str, float]:
    """Mean, population std (ddof=0), skewness g1 and excess kurtosis g2 of a 1-D sample.

    ``g1 = m3 / m2**1.5`` and ``g2 = m4 / m2**2 - 3`` with central moments ``mk``: the biased
    estimators (scipy.stats.skew / kurtosis defaults). NaN where undefined (n = 0, or m2 = 0).
    """
    n = x.numel()
    if n == 0:
        return {
            "mean": math.nan,
            "std": math.nan,
            "skewness": math.nan,
            "excess_kurtosis": math.nan,
        }
    x = x.to(torch.float64)
    mean = x.mean()
    d = x - mean
    m2 = (d * d).mean()
    std = float(m2.sqrt())
    if float(m2) <= 0.0:
        return {"mean": float(mean), "std": std, "skewness": math.nan, "excess_kurtosis": math.nan}
    m3 = (d**3).mean()
    m4 = (d**4).mean()
    return {
        "mean": float(mean),
        "std": std,
        "skewness": float(m3 / m2**1.5),
        "excess_kurtosis": float(m4 / m2**2 - 3.0),
    }


def _ks_normal(x: Tensor) -> float:
    """KS distance between the standardised sample and N(0, 1) (Lilliefors statistic)."""
    n = x.numel()
    if n == 0:
        return math.nan
    x = x.to(torch.float64)
    std = x.std(unbiased=False)
    if float(std) <= 0.0:
        return math.nan
    z, _ = torch.sort((x - x.mean()) / std)
    cdf = 0.5 * (1.0 + torch.erf(z / math.sqrt(2.0)))
    i = torch.arange(1, n + 1, dtype=torch.float64, device=x.device)
    d_plus = (i / n - cdf).max()
    d_minus = (cdf - (i - 1) / n).max()
    return float(torch.maximum(d_plus, d_minus))
