"""``BioRule(fused=True)``: the weight-sized part of the step compiled with ``torch.compile``.

The same equations as the eager fast path (:mod:`bioplastic._fast_step`), in two compiled
kernels per weight, each one loop over the weight that inductor vectorises:

- :func:`fused_update_` (momentum, metabolic cost, saturation, clip, homeostasis, noise,
  multiplication)
  reads the weight, gradient and momentum once and writes the weight and momentum;
- :func:`fused_eliminate_` (``prune_mode="unit"`` elimination) reads the weight, compares each
  synapse with its row's threshold, writes the weight and returns the E/I magnitude sums of the
  result, which the next step starts from (remembered with the weight's version counter, as the
  eager path remembers its counts), so no step needs a matrix product over the weight (unless
  ``prune_threshold=0``: then the sums are one product after the update).

Like the eager path's counts, the remembered sums see every in-place change of a weight that
torch versions, not writes through ``p.data``; here they are kept for every compiled weight at
every step. After ``load_state_dict`` they are recomputed with a matrix product, whose rounding
differs from the kernel's sum: a resumed fused run equals an uninterrupted one up to float
rounding, not bit for bit.

The per-row constants (``cost * mbar``, ``log2(budget / sum)``) and random draws stay eager:
inlined into a compiled loop they are recomputed per synapse, and ``randn`` in compiled CPU
code is slow.

Neither kernel makes an overflowed weight finite, as the reference path does after an update
that overflowed (``_keep_finite_``): that needs a reduction over the whole weight, which made
the update kernel several times slower on CPU. Instead a step that could overflow takes the
eager fast path: the step's factor is at most ``2 ** bound`` with ``bound = max_step * log2(e) +
max |log2(budget / sum)| + max |noise| * log2(e)``, and every magnitude is at most its row's E
or I sum, so when ``log2(max sum) + bound`` is below 127 (float32; the dtype's largest exponent
in general) no product can overflow, and with a finite factor an absent synapse stays exactly 0
(no ``0 * inf``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from bioplastic import functional as F
from bioplastic._fast_step import (
    LOG2E,
    DalePlan,
    _fast_ok,
    _log2_budget_factors,
    _metabolic_rows,
    layer_rate,
    protected_mask,
    step_tensor,
    unchanged_since,
)

__all__ = ["FUSED_MIN_NUMEL", "fused_ok", "fused_update_", "fused_eliminate_", "step_fused"]

#: Weights with fewer entries take the eager fast path under ``fused=True``: for them the
#: compiled call's overhead (guards, two calls) exceeds what fusing saves (measured on CPU).
FUSED_MIN_NUMEL = 65536


def fused_update_(
    w: Tensor,
    g: Tensor,
    buf: Tensor,
    scale: Tensor,
    rows: Tensor,
    exc: Tensor,
    plasticity: Tensor | None,
    noise: Tensor | None,
    hp: Tensor,
) -> None:
    """One step of the rule's plasticity and homeostasis on ``w`` (``[rows, fan_in]``), in place.

    ``scale`` is the gradient normalisation per row (``[rows, 1]``) or per synapse;
    ``rows`` ``[rows, 4]`` holds per unit ``cost * mbar`` (E, I) and ``log2(budget / sum)``
    (E, I); ``exc`` is 1.0 on excitatory inputs (``plan.types[0]``); ``hp`` is ``[lr,
    momentum, max_step, decay, cost / saturation]`` (a tensor: changing rates does not
    recompile; the last 0 without saturation); ``noise`` is ``noise_std * xi`` drawn by the
    caller, or ``None``. Updates ``w`` and ``buf``.
    """
    lr, momentum, max_step, decay, crowding = hp.unbind(0)
    exc = exc > 0
    new_buf = buf * momentum + g * scale * torch.where(exc, 1.0, -1.0)
    mbar_e, mbar_i, log_e, log_i = rows.unsqueeze(2).unbind(1)
    metabolic = torch.where(exc, mbar_e, -mbar_i)  # cost * mbar * s
    x = new_buf + metabolic / w  # + cost * mbar / |w|
    # saturation: potentiation (x < 0) over 1 + (|w| / (saturation * mbar)) ** 2 (1 without)
    crowd = torch.where(crowding > 0, w / metabolic * crowding, 0.0)  # no inf * 0 without
    x = torch.where(x < 0, x / (1.0 + crowd * crowd), x) + decay
    if plasticity is not None:  # an absent synapse of plasticity 0 would give inf * 0
        x = torch.where(w == 0, 0.0, x * plasticity)
    bound = max_step / lr
    x = x.clamp(-bound, bound) * (-lr * LOG2E) + torch.where(exc, log_e, log_i)
    if noise is not None:
        x = x + noise * LOG2E
    w.copy_(w * torch.exp2(x))
    buf.copy_(new_buf)


def fused_eliminate_(w: Tensor, exc: Tensor, protected: Tensor | None, prune: Tensor) -> Tensor:
    """Set every synapse of ``w`` (``[rows, fan_in]``, finite) at or below ``prune`` times its
    row's mean present same-type magnitude to 0 (unless ``protected``, a float 0/1 mask, is 1).

    Returns ``plan.signed @ w.T`` of the result (``[2, rows]``: E and I magnitude sums).
    """
    inh = 1.0 - exc
    magnitude = w * (2.0 * exc - 1.0)
    present = (w != 0).to(w.dtype)
    count_e = (present * exc).sum(1, keepdim=True).clamp(min=1)
    count_i = (present * inh).sum(1, keepdim=True).clamp(min=1)
    thr_e = (magnitude * exc).sum(1, keepdim=True) / count_e * prune
    thr_i = (magnitude * inh).sum(1, keepdim=True) / count_i * prune
    keep = magnitude > torch.where(exc > 0, thr_e, thr_i)
    if protected is not None:
        keep = keep | (protected > 0)
    kept = torch.where(keep, w, 0.0)
    w.copy_(kept)
    return torch.stack([(kept * exc).sum(1), (kept * -inh).sum(1)])


_COMPILED: dict = {}


def compiled(fn):
    """``torch.compile(fn)``, built on first use (dynamic shapes: one graph for all weights)."""
    if fn not in _COMPILED:
        _COMPILED[fn] = torch.compile(fn, dynamic=True)
    return _COMPILED[fn]


def fused_ok(group: dict, p: Tensor, state: dict, scale: Tensor | None, rate: float,
             eliminate: bool) -> bool:  # fmt: skip
    """Whether the compiled path covers this tensor's step (otherwise: the eager paths)."""
    if not group["fused"] or p.numel() < FUSED_MIN_NUMEL or scale is None or not scale.dim():
        return False
    lr = layer_rate(group, p, rate)
    unit = group["prune_mode"] == "unit" or not group["prune_threshold"]
    return (
        _fast_ok(group, p, state, lr) and eliminate and unit and group["momentum"] > 0
        and group["cost"] > 0 and group["homeostasis"]
    )  # fmt: skip


def _start_sums(opt, p: Tensor, w: Tensor, plan: DalePlan) -> Tensor:
    """``plan.signed @ w.T``: what the last compiled elimination returned, if ``p`` has not
    changed since (by its version counter and storage; see :func:`present_counts`)."""
    entry = opt._fused_sums.get(p)
    if entry is not None and unchanged_since(p, plan, *entry[1:]):
        return entry[0]
    return plan.signed @ w.T


def _cannot_overflow(sums: Tensor, logs: Tensor, xi: Tensor | None, max_step: float) -> bool:
    """Whether ``w * 2 ** dlog2`` is finite for every synapse (see the module docstring)."""
    bounds = [sums.amax().log2(), logs.abs().amax()]
    if xi is not None:
        bounds.append(xi.abs().amax() * LOG2E)
    total = float(torch.stack(bounds).sum()) + max_step * LOG2E
    return total < math.log2(torch.finfo(sums.dtype).max) - 1  # (NaN: False)


def step_fused(opt, group, p, g, state, scale, rate, noise):
    """Step one synapse tensor that :func:`fused_ok` covers: ``True`` when the update and the
    elimination are done; otherwise (a step that could overflow) what the eager
    :func:`~bioplastic._fast_step.step_tensor` returns for it."""
    lr = layer_rate(group, p, rate)
    plan = opt._plan(p, state)
    w = p.detach().view(p.shape[0], -1)
    xi, drawn_from = None, None
    if noise:
        xi = torch.zeros_like(w)
        generator, offsets = opt._generator(p.device), opt._generator(torch.device("cpu"))
        drawn_from = [(gen, gen.get_state()) for gen in dict.fromkeys((generator, offsets))]
        F.add_noise_(xi, noise, generator, group["noise_reuse"], offsets)
    sums = _start_sums(opt, p, w, plan)
    budgets = state["budgets"]
    before = budgets.clone()
    logs = _log2_budget_factors(sums, budgets, group["budget_rate"])
    if not _cannot_overflow(sums, logs, xi, group["max_step"]):
        budgets.copy_(before)  # the eager path moves them itself
        for gen, drawn in drawn_from or ():  # and draws the same noise again
            gen.set_state(drawn)
        return step_tensor(opt, group, p, g, state, scale, rate, noise, eliminate=True)
    opt._counts.pop(p, None)  # the eager path's memory of this weight is stale from now on
    rows = torch.cat([_metabolic_rows(sums, plan, group["cost"]), logs]).T
    crowding = group["cost"] / group["saturation"] if group["saturation"] else 0.0
    hp = [lr, group["momentum"], group["max_step"], group["decay"], crowding]
    hp = torch.tensor(hp, dtype=p.dtype, device=p.device)
    plasticity = opt._plasticity_of(state, p)
    plasticity = None if plasticity is None else plasticity.view_as(w)
    buf = state["momentum_buffer"].view_as(w)
    g2 = g.reshape(w.shape)
    compiled(fused_update_)(w, g2, buf, scale.reshape(len(w), -1), rows, plan.types[0],
                            plasticity, xi, hp)  # fmt: skip
    if group["prune_threshold"]:
        prune = torch.tensor(group["prune_threshold"], dtype=p.dtype, device=p.device)
        protected = protected_mask(group, state, w)
        after = compiled(fused_eliminate_)(w, plan.types[0], protected, prune)
    else:
        after = plan.signed @ w.T
    opt._fused_sums[p] = (after, plan, p._version, p.data_ptr())
    return True
