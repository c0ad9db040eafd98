"""The eager fast path of ``BioRule``'s step for Dale-typed weights.

It computes the same equations as :func:`bioplastic.functional.bio_step` followed by
``prune_mode="unit"`` elimination (the reference path, kept for everything this path does not
cover), in fewer passes over the weight:

- the row sums of excitatory and inhibitory magnitudes are one ``[2, fan_in] @ w.T`` product
  with signed type masks (no ``abs``), shared by the metabolic cost and homeostasis;
- the metabolic cost ``cost * mbar / |w|`` is ``cost * mbar * s / w`` (``w = s * m``), added to
  the momentum in one ``addcdiv`` (absent synapses get an infinite drive that the ``max_step``
  clip bounds, and ``0 * exp(bounded) = 0``: they stay absent);
- the log-step is taken in base 2 (``m * 2 ** (dlog m / ln 2)``): ``exp2`` costs a fifth of
  ``exp`` on CPUs; the homeostatic factors ``log2(budget / sum)`` are added with one ``addmm``
  that also applies ``-lr / ln 2``;
- elimination compares magnitudes with per-row thresholds using float masks (``torch.gt`` into
  a float tensor, a multiply), not boolean indexing;
- the eager path remembers, for weights of at least ``COUNT_MIN_NUMEL`` entries, the present
  synapses per row and type that the last elimination left (and the E/I sums when it removed
  none), keyed by the weight's version counter: a step that eliminates nothing then needs no
  count, no sums at its start and no multiply by the mask (see :func:`multi_eliminate_`).

The results equal the reference path up to float rounding (the summation order of the row
sums, ``exp2(x / ln 2)`` against ``exp(x)``): ``tests/test_perf_step.py`` checks this against a
plain per-tensor implementation. :mod:`bioplastic._fused_step` is the same math compiled with
``torch.compile`` (``BioRule(fused=True)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from bioplastic import functional as F
from bioplastic._scalars import kernel_scalar

__all__ = [
    "DalePlan",
    "dale_log2_step",
    "dale_eliminate_",
    "LOG2E",
]

LOG2E = 1.0 / math.log(2.0)


@dataclass
class DalePlan:
    """Constants of one Dale-typed weight, derived from its presynaptic signs (a cache).

    ``types`` ``[2, fan_in]``: 1.0 on excitatory (row 0) and inhibitory (row 1) entries of a
    weight row; ``signed``: the same with the inhibitory row negated (so ``signed @ w.T`` gives
    both sums as positive magnitudes); ``sign_row`` ``[1, fan_in]``: each entry's sign;
    ``n_types`` ``[2, 1]``: entries per type (at least 1).
    """

    unit_sign: Tensor
    types: Tensor
    signed: Tensor
    sign_row: Tensor
    n_types: Tensor

    @classmethod
    def build(cls, unit_sign: Tensor, weight: Tensor) -> DalePlan:
        per_input = weight[0].numel() // weight.shape[1]
        exc = (unit_sign > 0).to(weight.dtype).repeat_interleave(per_input)
        types = torch.stack([exc, 1.0 - exc])
        signed = torch.stack([exc, exc - 1.0])
        sign_row = (2.0 * exc - 1.0).unsqueeze(0)
        n_types = types.sum(1, keepdim=True).clamp_(min=1)
        return cls(unit_sign, types, signed, sign_row, n_types)


def _log2_budget_factors(sums: Tensor, budgets: Tensor, rate: float) -> Tensor:
    """``log2(budget / sum)`` per row and type (``[2, rows]``), 0 where the sum is 0.

    ``budgets`` (``[2, rows]`` view of the excitatory and inhibitory budgets) first moves
    towards the sums by ``rate``, in place.
    """
    if rate:
        budgets.lerp_(sums, rate)
    tiny = torch.finfo(sums.dtype).tiny
    logs = budgets.clamp(min=tiny).log2_().sub_(sums.clamp(min=tiny).log2_())
    return logs.mul_(sums > tiny)


def _metabolic_rows(sums: Tensor, plan: DalePlan, cost: float) -> Tensor:
    """``cost * mbar`` per row and type (``[2, rows]``), kept within ``[tiny, max]``."""
    big = torch.finfo(sums.dtype).max
    cost = kernel_scalar(cost, sums.dtype)
    return (sums / plan.n_types).mul_(cost).clamp_(min=torch.finfo(sums.dtype).tiny, max=big)


def dale_log2_step(
    w: Tensor,
    g: Tensor,
    buf: Tensor | None,
    plan: DalePlan,
    scale: Tensor | None,
    plasticity: Tensor | None,
    budgets: tuple[Tensor, float] | None,
    *,
    lr: float,
    momentum: float,
    cost: float,
    decay: float,
    max_step: float,
    saturation: float = 0.0,
) -> Tensor:
    """Return ``dlog2 m`` of one step of the rule (a new ``[rows, fan_in]`` tensor).

    ``w``, ``g``, ``buf`` are ``[rows, fan_in]`` views; ``scale`` is the gradient normalisation
    (``[rows, 1]``, 0-dim or weight-shaped) or ``None``; ``budgets`` is ``([2, rows] budgets,
    budget_rate)`` or ``None`` (no homeostasis); ``saturation`` needs ``cost > 0``. Updates
    ``buf`` (momentum) and the budgets in place. Noise is added by the caller (in base 2:
    ``noise * LOG2E``).
    """
    # x: the one weight-sized temporary (c * g first, then the drive, then dlog2 m), with a
    # second one for a saturation step
    x = g.clone() if scale is None else torch.mul(g, scale)
    if momentum:
        buf.mul_(momentum).addcmul_(x, plan.sign_row)  # + c * s * g, as the reference path
    else:
        x.mul_(plan.sign_row)
    sums = plan.signed @ w.T if cost or budgets is not None else None
    if cost:
        mbar = _metabolic_rows(sums, plan, cost)
        metabolic = torch.mm(mbar.T, plan.signed, out=x) if momentum else mbar.T @ plan.signed
        crowd = _crowding(w, metabolic, cost, saturation) if saturation else None
        torch.addcdiv(buf if momentum else x, metabolic, w, out=x)  # + cost * mbar / |w|
        if crowd is not None:
            _saturate_(x, crowd)
    elif momentum:
        x.copy_(buf)
    if decay:
        x.add_(kernel_scalar(decay, x.dtype))
    if plasticity is not None:
        x.mul_(plasticity)
    bound = kernel_scalar(max_step / lr, x.dtype)
    x.clamp_(-bound, bound)  # |lr * x| <= max_step
    if budgets is not None:
        logs = _log2_budget_factors(sums, *budgets)
        x.addmm_(logs.T, plan.types, beta=kernel_scalar(-lr * LOG2E, x.dtype))
    else:
        x.mul_(-lr * LOG2E)
    return x


def _crowding(w: Tensor, metabolic: Tensor, cost: float, saturation: float) -> Tensor:
    """``1 + (|w| / (saturation * mbar)) ** 2`` from ``metabolic = cost * mbar * s`` (a new
    weight-sized tensor; 1 on absent synapses)."""
    crowd = torch.div(w, metabolic).mul_(kernel_scalar(cost / saturation, w.dtype))
    return crowd.square_().add_(1.0)


def _saturate_(x: Tensor, crowd: Tensor) -> None:
    """Divide the potentiating entries of the drive ``x`` (``x < 0``) by ``crowd``, in place
    (``crowd`` is overwritten): :func:`bioplastic.functional.saturation_factor`."""
    x.div_(crowd.masked_fill_(x >= 0, 1.0))


def dale_eliminate_(
    w: Tensor, scratch: Tensor, sums: Tensor, plan: DalePlan, prune: float,
    protected: Tensor | None,
) -> None:  # fmt: skip
    """Set every synapse of ``w`` (``[rows, fan_in]``, finite) at or below ``prune`` times its
    row's mean present same-type magnitude to 0 (unless ``protected``, a float 0/1 mask, is 1).

    ``sums`` is ``plan.signed @ w.T``; ``scratch`` (weight-sized) is overwritten.
    """
    present = torch.sign(w, out=scratch)
    counts = plan.signed @ present.T  # present synapses per row and type
    thr = sums.div(counts.clamp_(min=1)).mul_(kernel_scalar(prune, sums.dtype))
    margin = present.mul_(w).addmm_(thr.T, plan.types, alpha=-1)  # |w| - threshold
    keep = torch.gt(margin, 0, out=margin)
    if protected is not None:
        torch.maximum(keep, protected, out=keep)
    w.mul_(keep)


# --------------------------------------------------------------------------------------------
# dispatch (called by BioRule for each synapse tensor, in order)
# --------------------------------------------------------------------------------------------


def _fast_ok(group: dict, p: Tensor, state: dict, lr: float) -> bool:
    """Whether the fast path covers this tensor (otherwise: the reference path)."""
    if not (group["foreach"] or group["fused"]) or not state["dale"] or not p.is_contiguous():
        return False
    if group["max_step"] is None or group["weight_dependence"] != 1.0:
        return False
    if group["saturation"] and not group["cost"]:  # it reads mbar from the metabolic cost
        return False
    cap = torch.finfo(p.dtype).max / 16  # scalars that torch's float kernels accept, with room
    scalars = (lr * LOG2E, group["max_step"] / lr, group["cost"], group["decay"])
    return all(0 <= abs(v) < cap for v in scalars) and group["max_step"] < cap


def protected_mask(group: dict, state: dict, like: Tensor) -> Tensor | None:
    """Float 0/1 mask of the synapses exempt from elimination (consolidated), or ``None``."""
    if not group["protect_consolidated"]:
        return None
    if "plasticity_code" in state:
        return torch.gt(state["plasticity_code"].view_as(like), 0, out=torch.empty_like(like))
    if "plasticity" in state:
        return (state["plasticity"].view_as(like) < 1).to(like.dtype)
    return None


def step_tensor(opt, group, p, g, state, scale, rate, noise, *, eliminate: bool):
    """Step one synapse tensor of ``opt`` (a :class:`~bioplastic.BioRule`).

    Returns ``(scratch, sums, None)`` when the update is written and ``"unit"`` elimination is
    pending (:func:`dale_eliminate_`, after one finiteness check for all tensors), or ``None``
    when the update is written and the reference order follows (keep finite, grow, eliminate).
    """
    lr = layer_rate(group, p, rate)
    if not _fast_ok(group, p, state, lr):
        opt._reference_step(group, p, state, scale, rate, noise)
        return None
    plan = opt._plan(p, state)
    rows = p.shape[0]
    w, g2 = p.detach().view(rows, -1), g.reshape(rows, -1)
    buf = state.get("momentum_buffer")
    buf = None if buf is None else buf.view(rows, -1)
    if scale is not None and scale.dim():
        scale = scale.reshape(rows, -1)
    plasticity = opt._plasticity_of(state, p)
    plasticity = None if plasticity is None else plasticity.view(rows, -1)
    generator = opt._generator(p.device) if noise else None
    offsets = opt._generator(torch.device("cpu")) if noise else None
    budgets = (state["budgets"], group["budget_rate"]) if group["homeostasis"] else None
    x = dale_log2_step(
        w, g2, buf, plan, scale, plasticity, budgets, lr=lr, momentum=group["momentum"],
        cost=group["cost"], decay=group["decay"], max_step=group["max_step"],
        saturation=group["saturation"],
    )  # fmt: skip
    if noise:
        std = min(noise * LOG2E, torch.finfo(p.dtype).max)
        F.add_noise_(x, std, generator, group["noise_reuse"], offsets)
    w.mul_(x.exp2_())
    if eliminate and group["prune_mode"] == "unit" and group["prune_threshold"]:
        return x, plan.signed @ w.T, None
    return None


#: Largest weight whose kept-synapse total is checked in float32 (integers are exact below 2**24).
_EXACT_COUNT = 2**24
#: Smaller weights are counted every step: for them a count costs less than the calls that
#: check the remembered one (measured on CPU, 1 thread: a 128 x 784 weight is a little slower
#: with them, 0.51 against 0.49 ms for the 784-128-10 MLP's step; 1000 x 784 is faster).
COUNT_MIN_NUMEL = 262144


def _remember(w: Tensor, prune: float) -> bool:
    return COUNT_MIN_NUMEL <= w.numel() < _EXACT_COUNT and prune > 0


def layer_rate(group: dict, p: Tensor, rate: float) -> float:
    """The log-domain rate of synapse tensor ``p``: ``rate * fan_in ** -fan_in_exponent``."""
    return rate * (p.numel() // p.shape[0]) ** -group["fan_in_exponent"]


def unchanged_since(p: Tensor, plan: DalePlan, known_plan: DalePlan, version: int,
                    pointer: int) -> bool:  # fmt: skip
    """Whether ``p`` is the weight something was remembered of (``known_plan``, ``version``,
    ``pointer``): same types, no in-place change torch versioned, same storage."""
    return known_plan is plan and version == p._version and pointer == p.data_ptr()


def present_counts(opt, p: Tensor, plan: DalePlan) -> tuple | None:
    """What the optimizer's last elimination of ``p`` left: ``(counts, sums, floor)``, with
    ``counts`` the present synapses per type and row (``[2, rows]``), ``sums`` ``plan.signed @
    w.T`` after it, ``floor`` the smallest threshold that every present synapse exceeds
    (0-dim). ``None`` when ``p`` may have changed since (by
    ``p._version``: any in-place operation counts, so a weight changed by growth, by another
    path of the step, by ``load_state_dict`` or under ``torch.no_grad()`` is counted afresh; a
    write that torch does not version, through ``p.data`` or ``p.numpy()``, is not seen)."""
    entry = opt._counts.get(p) if p.numel() >= COUNT_MIN_NUMEL else None
    if entry is None:
        return None
    counts, sums, floor, *known = entry
    return (counts, sums, floor) if unchanged_since(p, plan, *known) else None


def _floor(thr: Tensor, counts: Tensor) -> Tensor:
    """The smallest threshold of the rows and types that keep synapses (``inf`` if none)."""
    return torch.where(counts > 0, thr, math.inf).amin()


def _eliminate_fresh_(ws, scratch, sums, plans, prune, protected) -> list:
    """:func:`dale_eliminate_` on lists, counting present synapses; returns per tensor
    ``(counts, sums, floor)`` after it, or ``None`` (protected synapses, small weights)."""
    for w, x in zip(ws, scratch, strict=True):
        torch.sign(w, out=x)
    counts = [plan.signed @ x.T for plan, x in zip(plans, scratch, strict=True)]
    torch._foreach_clamp_min_(counts, 1.0)
    thr = torch._foreach_div(sums, counts)
    torch._foreach_mul_(thr, kernel_scalar(prune, thr[0].dtype))
    torch._foreach_mul_(scratch, ws)  # |w|
    after = []
    for x, t, plan, keep in zip(scratch, thr, plans, protected, strict=True):
        x.addmm_(t.T, plan.types, alpha=-1)  # |w| - threshold
        torch.gt(x, 0, out=x)
        if keep is not None:
            torch.maximum(x, keep, out=x)
            after.append(None)
        elif not _remember(x, prune):
            after.append(None)
        else:
            kept = plan.types @ x.T  # present after
            after.append((kept, None, _floor(t, kept)))
    torch._foreach_mul_(ws, scratch)
    for k, (w, plan) in enumerate(zip(ws, plans, strict=True)):
        if after[k] is not None:
            after[k] = after[k][0], plan.signed @ w.T, after[k][2]
    return after


def multi_eliminate_(ws, scratch, sums, plans, prune, protected, known) -> list:
    """:func:`dale_eliminate_` on lists (one ``torch._foreach_*`` call per operation where
    torch has one); returns per tensor what :func:`present_counts` gives next step, or ``None``.

    ``known[i]`` is ``(counts, floor, low)`` or ``None``: ``counts`` and ``floor`` from
    :func:`present_counts`, ``low`` a lower bound of ``log2`` of this step's factors. With
    them no count is needed: ``|w|`` is ``w * sign`` (Dale-typed), and no synapse vanished since
    (underflow, the only way the step's multiplication removes one) if ``floor * 2 ** low``
    is a normal float; then fewer synapses kept than counted means eliminated ones, and as
    many means none (``w`` stays as it is). Otherwise the tensor is counted afresh.
    """
    cached = [
        i for i, (w, k, keep) in enumerate(zip(ws, known, protected, strict=True))
        if k is not None and keep is None and _remember(w, prune)
    ]  # fmt: skip
    after: list = [None] * len(ws)
    redo = [i for i in range(len(ws)) if i not in set(cached)]
    if cached:
        for i in cached:
            torch.mul(ws[i], plans[i].sign_row, out=scratch[i])  # |w|
        counts = torch._foreach_clamp_min([known[i][0] for i in cached], 1.0)
        thr = torch._foreach_div([sums[i] for i in cached], counts)
        torch._foreach_mul_(thr, kernel_scalar(prune, thr[0].dtype))
        for i, t in zip(cached, thr, strict=True):
            x = scratch[i].addmm_(t.T, plans[i].types, alpha=-1)  # |w| - threshold
            torch.gt(x, 0, out=x)
        # kept and counted synapses (sums of 0/1 and of counts: exact in float32), and whether
        # a synapse may have underflowed: log2(floor) + low below log2 of the smallest normal
        totals = [scratch[i].sum() for i in cached] + [known[i][0].sum() for i in cached]
        totals += [known[i][1].log2() + known[i][2] for i in cached]
        totals = torch.stack(totals).tolist()
        n, normal = len(cached), math.log2(torch.finfo(ws[0].dtype).tiny)
        for k, i in enumerate(cached):
            kept, present, margin = totals[k], totals[n + k], totals[2 * n + k]
            if not margin >= normal:  # (also NaN)
                redo.append(i)
            elif kept == present:  # nothing eliminated: w stays
                after[i] = known[i][0], sums[i], _floor(thr[k], known[i][0])
            else:  # the sums now, while w is in the cache, rather than at the next step
                ws[i].mul_(scratch[i])
                kept = plans[i].types @ scratch[i].T
                after[i] = kept, plans[i].signed @ ws[i].T, _floor(thr[k], kept)
    if redo:
        pick = [[items[i] for i in redo] for items in (ws, scratch, sums, plans, protected)]
        for i, result in zip(redo, _eliminate_fresh_(*pick[:4], prune, pick[4]), strict=True):
            after[i] = result
    return after


def finish(opt, group: dict, params: list, states: list, pending: list) -> set[int]:
    """Complete the fast paths of one step; return the indices whose elimination is done.

    ``pending`` holds ``(index, scratch, sums, known)`` from :func:`step_tensor`: one
    synchronisation checks all sums; a weight that overflowed keeps the reference order (made
    finite, then eliminated by the caller).
    """
    done = set()
    if pending:
        totals = torch.stack(torch._foreach_norm([item[2] for item in pending]))
        ok = [item for item, good in zip(pending, torch.isfinite(totals).tolist(), strict=True)
              if good]  # fmt: skip
        if ok:
            index = [item[0] for item in ok]
            ws = [params[i].detach().view(len(params[i]), -1) for i in index]
            plans = [opt._plan(params[i], states[i]) for i in index]
            protected = [protected_mask(group, states[item[0]], item[1]) for item in ok]
            after = multi_eliminate_(ws, [item[1] for item in ok], [item[2] for item in ok],
                                     plans, group["prune_threshold"], protected,
                                     [item[3] for item in ok])  # fmt: skip
            for i, plan, known in zip(index, plans, after, strict=True):
                p = params[i]
                if known is None:
                    opt._counts.pop(p, None)
                else:
                    opt._counts[p] = (*known, plan, p._version, p.data_ptr())
            done.update(index)
    return done


def _foreach_row_masks(sums: list[Tensor]) -> list[Tensor]:
    """1.0 where a row sum is above the smallest normal float (``sum > tiny``), else 0.0."""
    tiny = torch.finfo(sums[0].dtype).tiny
    masks = torch._foreach_sub(sums, tiny)
    torch._foreach_clamp_min_(masks, 0.0)
    torch._foreach_sign_(masks)
    return masks


def multi_ok(opt, group, params, grads, states, rate) -> bool:
    """Whether :func:`multi_step` covers all of these tensors (the eager fast path, with
    momentum, cost, homeostasis and a gradient scale per row or tensor)."""
    if group["fused"] or not (group["momentum"] and group["cost"] and group["homeostasis"]):
        return False
    if not group["normalize"] or group["normalize_by"] == "factored":
        return False
    for p, st in zip(params, states, strict=True):
        if not _fast_ok(group, p, st, layer_rate(group, p, rate)):
            return False
    return len({p.dtype for p in params}) == 1


def _multi_drives_(xs, bufs, ws, mbar, plans, cost: float, saturation: float) -> None:
    """``x <- buf + cost * mbar / |w|`` per tensor (``mbar`` holds ``cost * mbar`` per row and
    type), its potentiating entries saturated if ``saturation`` (one tensor at a time: one
    extra weight-sized temporary at most)."""
    for x, buf, w, m, plan in zip(xs, bufs, ws, mbar, plans, strict=True):
        torch.mm(m.T, plan.signed, out=x)  # cost * mbar * s
        crowd = _crowding(w, x, cost, saturation) if saturation else None
        torch.addcdiv(buf, x, w, out=x)  # drive + cost * mbar / |w|
        if crowd is not None:
            _saturate_(x, crowd)


def multi_step(opt, group, params, grads, states, scales, rate, noise, *, eliminate: bool):
    """:func:`step_tensor` for a list of tensors that the fast path covers, written with one
    ``torch._foreach_*`` call per operation where torch has one (per tensor: the matrix
    products, ``addcdiv`` and the threshold compare): the per-tensor Python overhead is what
    dominates small weights (a conv net's). Same results; returns one result per tensor.
    """
    momentum, cost = group["momentum"], group["cost"]
    plans = [opt._plan(p, st) for p, st in zip(params, states, strict=True)]
    ws = [p.detach().view(len(p), -1) for p in params]
    gs = [g.reshape(len(g), -1) for g in grads]
    bufs = [st["momentum_buffer"].view(len(p), -1) for p, st in zip(params, states, strict=True)]
    lrs = [layer_rate(group, p, rate) for p in params]
    signs = [plan.sign_row for plan in plans]
    xs = torch._foreach_mul(gs, [s.reshape(len(s), -1) if s.dim() else s for s in scales])
    torch._foreach_mul_(bufs, momentum)
    torch._foreach_addcmul_(bufs, xs, signs)  # + c * s * g, as the reference path
    # E/I magnitude sums; equal to the last step's after an elimination that removed nothing
    known = [present_counts(opt, p, plan) for p, plan in zip(params, plans, strict=True)]
    sums = [
        plan.signed @ w.T if k is None or k[1] is None else k[1]
        for plan, w, k in zip(plans, ws, known, strict=True)
    ]
    big, tiny = torch.finfo(ws[0].dtype).max, torch.finfo(ws[0].dtype).tiny
    mbar = torch._foreach_div(sums, [plan.n_types for plan in plans])
    torch._foreach_mul_(mbar, kernel_scalar(cost, ws[0].dtype))
    torch._foreach_clamp_min_(mbar, tiny)
    torch._foreach_clamp_max_(mbar, big)
    _multi_drives_(xs, bufs, ws, mbar, plans, cost, group["saturation"])
    if group["decay"]:
        torch._foreach_add_(xs, kernel_scalar(group["decay"], ws[0].dtype))
    plasticities = [opt._plasticity_of(st, p) for p, st in zip(params, states, strict=True)]
    for x, pl in zip(xs, plasticities, strict=True):
        if pl is not None:
            x.mul_(pl.view_as(x))
    for x, lr in zip(xs, lrs, strict=True):
        bound = kernel_scalar(group["max_step"] / lr, x.dtype)
        x.clamp_(-bound, bound)  # one pass (two _foreach_clamp calls are two)
    budgets = [st["budgets"] for st in states]
    if group["budget_rate"]:
        torch._foreach_lerp_(budgets, sums, group["budget_rate"])
    logs = torch._foreach_clamp_min(budgets, tiny)
    torch._foreach_div_(logs, torch._foreach_clamp_min(sums, tiny))
    torch._foreach_log2_(logs)
    torch._foreach_mul_(logs, _foreach_row_masks(sums))
    generator = opt._generator(ws[0].device) if noise else None
    offsets = opt._generator(torch.device("cpu")) if noise else None
    for x, log, plan, lr in zip(xs, logs, plans, lrs, strict=True):
        x.addmm_(log.T, plan.types, beta=kernel_scalar(-lr * LOG2E, x.dtype))
        if noise:
            std = min(noise * LOG2E, big)
            F.add_noise_(x, std, generator, group["noise_reuse"], offsets)
    eliminate = eliminate and group["prune_mode"] == "unit" and group["prune_threshold"]
    if eliminate and any(k is not None for k in known):  # lower bounds of the exponents:
        if noise:  # their minimum
            lows = [x.amin() for x in xs]
        else:  # or from the clip |x| <= max_step * log2(e), plus max |log2(budget / sum)|
            lows = torch._foreach_norm(logs, math.inf)
            torch._foreach_add_(lows, kernel_scalar(group["max_step"] * LOG2E + 1.0, ws[0].dtype))
            torch._foreach_neg_(lows)
        known = [k and (k[0], k[2], low) for k, low in zip(known, lows, strict=True)]
    for x in xs:
        x.exp2_()  # torch has no _foreach_exp2_
    torch._foreach_mul_(ws, xs)
    if not eliminate:
        return [None] * len(params)
    return [(x, plan.signed @ w.T, k) for x, plan, w, k in zip(xs, plans, ws, known, strict=True)]
