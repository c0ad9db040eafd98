"""``BioRule``'s gradient normalisation: the statistics it keeps per synapse tensor and the
scale ``c`` each step multiplies the gradient by (``normalize_by``: tensor, row or factored)."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["grad_scales_of"]

# Per-unit normalisation divides by sqrt(r_i + _ROW_FLOOR * mean_k r_k): a unit with (almost) no
# gradient is not amplified beyond ~3x the tensor's typical scale (measured: better than 1e-4 on
# 3x512 MNIST-1D, and better than max(r_i, 0.1 mean) on 2x256).
_ROW_FLOOR = 0.1


def grad_scales_of(group: dict, params, states, norms) -> list[Tensor | None]:
    """Gradient normalisation ``c`` per synapse tensor of a ``BioRule`` group (its state updated).

    ``normalize_by="tensor"``: ``1 / RMS`` of the tensor's gradient (0-dim);
    ``"row"``: ``1 / sqrt(r_i + 0.1 mean(r))`` with ``r_i`` the mean squared gradient of
    postsynaptic unit ``i`` (shape ``[out, 1, ...]``; the floor keeps a unit with almost no
    gradient from being amplified; ``r`` is kept in float32 and saturates at the largest
    float32 for gradients beyond ~1e19);
    ``"factored"``: Adafactor's rank-1 estimate ``1 / sqrt(r_i k_j / mean(r))`` of the
    per-synapse RMS from row and column means (weight-shaped, a temporary). All statistics
    are exponential averages with ``grad_beta`` (bias-corrected), so the state is one scalar,
    one per-row and/or one per-column vector per tensor.
    """
    if not group["normalize"]:
        return [None] * len(params)
    beta = group["grad_beta"]
    mode = group["normalize_by"]
    scales = []
    for p, state, norm in zip(params, states, norms, strict=True):
        debias = 1 - beta ** (state["step"] + 1)
        if mode == "tensor":
            # float64: the square of a huge but finite float32 norm must not overflow
            mean_sq = norm.double() ** 2 / max(p.numel(), 1)
            if "grad_sq" not in state:
                state["grad_sq"] = torch.zeros((), dtype=torch.float64, device=p.device)
            state["grad_sq"].mul_(beta).add_(mean_sq, alpha=1 - beta)
            debiased = state["grad_sq"] / debias
            scales.append((1.0 / (debiased.sqrt() + group["eps"])).to(p.dtype))
            continue
        if "grad_sq_row" not in state:
            # float32 (also for half-precision weights, whose squares would overflow)
            rdtype = torch.promote_types(p.dtype, torch.float32)
            state["grad_sq_row"] = torch.zeros(p.shape[0], dtype=rdtype, device=p.device)
        r = state["grad_sq_row"]
        if mode == "row" and norm is not None:  # float32 row norms from the finite check
            r.mul_(beta).addcmul_(norm, norm, value=(1 - beta) / (p.numel() // p.shape[0]))
            # 1 / sqrt(rhat_i + 0.1 mean(rhat) + eps^2), rhat = r / debias
            scale = torch.add(r, r.mean(), alpha=_ROW_FLOOR).div_(debias)
            scale = scale.add_(group["eps"] ** 2).rsqrt_()
            scales.append(scale.to(p.dtype).reshape([-1] + [1] * (p.dim() - 1)))
            continue
        # huge gradients (or "factored"): float64 squares, saturating in float32
        g2 = p.grad.reshape(p.shape[0], -1).double().square()
        big = torch.finfo(r.dtype).max
        r.copy_((r.double() * beta + g2.mean(1) * (1 - beta)).clamp_(max=big))
        row = r / debias
        # a relative floor: a unit with (almost) no gradient is not amplified
        floor = _ROW_FLOOR * row.mean() + group["eps"] ** 2
        if mode == "row":
            scale = (row + floor).rsqrt_().to(p.dtype)
            scales.append(scale.reshape([-1] + [1] * (p.dim() - 1)))
            continue
        if "grad_sq_col" not in state:
            state["grad_sq_col"] = torch.zeros(p[0].numel(), dtype=torch.float64,
                                               device=p.device)  # fmt: skip
        state["grad_sq_col"].mul_(beta).add_(g2.mean(0), alpha=1 - beta)
        col = state["grad_sq_col"] / debias
        v = torch.outer(row.double(), col) / (row.mean() + group["eps"] ** 2)
        scales.append((v + floor).rsqrt().to(p.dtype).reshape(p.shape))
    return scales
