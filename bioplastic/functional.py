"""The bio rule's equations, in one place (SPEC section 3).

Every weight of a synaptic layer is ``w = s * m`` with a fixed sign ``s`` (the type of its
presynaptic unit) and a magnitude ``m >= 0``. One step of the rule (v2) is

1. homeostatic scaling and multiplicative plasticity, in one multiplication::

       u      = momentum-averaged c * s * g   (c = 1 / RMS of the unit's (row's) gradient)
       dlog m = clip(-lr_n * p * (u + cost * mbar / m + decay), -max_step, max_step)
                + noise * xi + log(budget / current sum)   (per row, E and I separately)
       m <- m * exp(dlog m)

   with ``lr_n = lr * fan_in ** -fan_in_exponent`` per tensor (``lr`` may be a list) and
   ``mbar`` the row's summed same-type magnitude per potential synapse of that type
   (:func:`row_mean_magnitudes`), so ``cost * mbar / m`` (:func:`metabolic_drive`) is a fixed
   cost per synapse that weak synapses feel most (optionally, :func:`weight_dependence`
   scales ``u + cost * mbar / m`` by ``(mbar / m) ** (1 - mu)``, and :func:`saturation_factor`
   bounds potentiation softly); because ``s`` never
   changes, the step can neither flip a sign nor revive a zero weight; the last term rescales
   each unit's summed excitatory and summed inhibitory magnitudes to their budgets
   (heterosynaptic competition);
2. growth of absent synapses (optional, every ``grow_every`` steps);
3. elimination: magnitudes at or below ``threshold`` (a number, or per synapse a fraction of
   its row's mean present same-type magnitude) become exactly 0 (unless protected).

:func:`bio_step` applies step 1 to lists of tensors in place, through a single-tensor loop or
through ``torch._foreach_*`` kernels; :func:`grow_` and :func:`eliminate_` are steps 2-3.
:func:`multiplicative_update` is the plastic part of step 1 written out-of-place and
differentiable, for inner loops of meta-learning; :func:`bio_update` applies it to a whole
module in the style of learn2learn's ``maml_update`` (see ``strategies.fewshot``).
:func:`adam_step` and :func:`sgd_step` are the plain additive updates used for parameters that
are not synapses (biases, norm layers).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from bioplastic._additive import adam_step, sgd_step
from bioplastic._checks import check_number
from bioplastic._row_terms import (
    _mbar_over_m,
    _weight_factor,
    metabolic_drive,
    presynaptic_shape,
    row_budgets,
    row_mean_magnitudes,
    saturation_factor,
    type_masks,
    weight_dependence,
)
from bioplastic._scalars import kernel_scalar

__all__ = [
    "adam_step", "bio_step", "bio_update", "add_noise_", "eliminate_", "grow_",
    "homeostatic_log_factors", "log_step", "multiplicative_update", "presynaptic_shape",
    "row_budgets", "row_mean_magnitudes", "metabolic_drive", "saturation_factor", "sgd_step",
    "type_masks", "weight_dependence",
]  # fmt: skip


def log_step(
    signed_grad: Tensor, lr: float | Tensor, plasticity: Tensor | None = None,
    decay: float = 0.0, max_step: float | None = None,
) -> Tensor:  # fmt: skip
    """Return ``clip(-lr * p * (s*g + decay), -max_step, max_step)`` (out of place).

    ``signed_grad`` is ``s * g`` (in :class:`~bioplastic.BioRule`, normalised and
    momentum-averaged). Differentiable in all tensor arguments. The single-tensor path of
    :func:`bio_step` and :func:`multiplicative_update` both use it; the ``torch._foreach_``
    path writes the same expression with list kernels. Noise is added by the caller (it needs
    a generator) after clipping.
    """
    drive = signed_grad + decay if decay else signed_grad
    step = drive * (-lr) if plasticity is None else drive * plasticity * (-lr)
    if max_step is not None:
        bound = kernel_scalar(max_step, step.dtype)
        step = step.clamp(-bound, bound)
    return step


def multiplicative_update(
    weight: Tensor, grad: Tensor, lr: float | Tensor, max_step: float | None = 0.5,
    decay: float = 0.0, plasticity: Tensor | None = None,
) -> Tensor:  # fmt: skip
    """Differentiable bio step: ``w * exp(clip(-lr * p * (sign(w) * g + decay)))``.

    The sign is read from ``weight`` itself, so zeros stay zero and no entry changes sign.
    Gradients flow to ``weight``, ``grad`` and a tensor ``lr`` (second-order meta-learning).
    """
    return weight * torch.exp(log_step(torch.sign(weight) * grad, lr, plasticity, decay, max_step))


def bio_update(
    module: nn.Module, lr: float | Sequence[float | Tensor | None],
    grads: Sequence[Tensor | None] | None = None, max_step: float | None = 0.5,
    other_lr: float | None = None, normalize: bool = True, fan_in_exponent: float = 0.5,
) -> nn.Module:  # fmt: skip
    """Differentiable bio step on every parameter of ``module``, re-routing its tensors.

    The bio rule's counterpart of learn2learn's ``maml_update``: a synapse (``dim >= 2``) ``w``
    of fan-in ``n`` with gradient ``g`` gets :func:`multiplicative_update` with BioRule's drive
    ``c * s * g`` (``c = 1 / sqrt(r_i + 0.1 mean(r))``, ``r_i`` the mean squared gradient of
    postsynaptic unit ``i``; ``c = 1`` if not ``normalize``) and rate ``lr * n **
    -fan_in_exponent``: the step of :class:`~bioplastic.BioRule` with ``momentum=0``,
    ``warmup=0``, ``weight_dependence=1``, ``saturation=0``, no homeostasis, cost, noise or
    elimination. Signs
    are fixed, an absent synapse stays absent, ``|dlog m| <= max_step``. Other parameters
    (biases) get ``p - other_lr * g``.
    As in ``maml_update``, each parameter slot (shared: once; a buffer that is one follows it)
    is pointed at a new tensor, so gradients flow back to the old parameters and ``grads``.

    Args:
        module: the model to update, typically a clone (``BioMAML.clone()``).
        lr: log-domain rate (> 0), or one rate per parameter (a number or a tensor that
            broadcasts to it, e.g. MetaSGD's learned rates; ``other_lr`` then unused).
        grads: one gradient (or ``None``: no update) per ``module.parameters()`` entry; if
            ``None``, ``.grad``. A non-finite gradient is skipped with a ``RuntimeWarning``.
        max_step: bound on ``|dlog m|`` per step (> 0), or ``None``.
        other_lr: rate of non-synapse parameters (>= 0); ``None`` means ``lr``.
        normalize, fan_in_exponent: as in BioRule (per-unit normalised drive; rate scaled by
            ``fan_in ** -fan_in_exponent``, exponent in [0, 2]).

    Reference: Cornford et al. 2024; Finn et al. 2017 (MAML); Li et al. 2017 (Meta-SGD).
    Example: ``bio_update(clone, 1.0, torch.autograd.grad(loss, list(clone.parameters())))``.
    """
    params = list(module.parameters())
    rates = _rates(lr, other_lr, params)
    if max_step is not None:
        max_step = check_number("max_step (or None)", max_step, 0.0, lo_open=True, hi_open=True)
    fan_in_exponent = check_number("fan_in_exponent", fan_in_exponent, 0.0, 2.0)
    grads = [p.grad for p in params] if grads is None else list(grads)
    if len(grads) != len(params):
        raise ValueError(f"grads has {len(grads)} entries, the module {len(params)} parameters")
    new: dict[int, Tensor] = {}
    skipped = []
    for i, (p, g, rate) in enumerate(zip(params, grads, rates, strict=True)):
        if g is None or rate is None or id(p) in new:
            continue
        if g.shape != p.shape:
            raise ValueError(f"grads[{i}] has shape {tuple(g.shape)}, parameter {tuple(p.shape)}")
        if not bool(torch.isfinite(g).all()):  # as BioRule: no step rather than NaN weights
            skipped.append(i)
            continue
        if isinstance(rate, float) and rate > torch.finfo(p.dtype).max:  # rate * 0 would be NaN
            raise ValueError(f"lr must be <= {torch.finfo(p.dtype).max:.3g}, got {rate!r}")
        if p.dim() < 2:
            new[id(p)] = p - rate * g
            continue
        g = g * row_grad_scale(g) if normalize else g
        new[id(p)] = multiplicative_update(p, g, rate * p[0].numel() ** -fan_in_exponent, max_step)
    if skipped:
        message = f"bio_update: non-finite gradients of parameters {skipped}: not updated"
        warnings.warn(message, RuntimeWarning, stacklevel=2)
    _reroute(module, new, set())
    return module


def row_grad_scale(grad: Tensor, floor: float = 0.1, eps: float = 1e-8) -> Tensor:
    """``1 / sqrt(r_i + floor * mean(r) + eps**2)`` per row, ``r_i = mean_j grad_ij ** 2``.

    BioRule's per-unit normalisation of one step (float64 inside; shape ``[out, 1, ...]``).
    """
    row = grad.reshape(grad.shape[0], -1).double().square().mean(1)
    scale = (row + floor * row.mean() + eps**2).rsqrt().to(grad.dtype)
    return scale.reshape([grad.shape[0]] + [1] * (grad.dim() - 1))


def _rates(lr, other_lr, params: list[Tensor]) -> list:
    """One rate per parameter from ``bio_update``'s ``lr`` and ``other_lr`` (validated)."""
    if isinstance(lr, (Tensor, str)) or not isinstance(lr, Sequence):
        lr = check_number("lr", lr, 0.0, lo_open=True, hi_open=True)
        other_lr = check_number("other_lr (or None)", lr if other_lr is None else other_lr, 0.0)
        return [lr if p.dim() >= 2 else other_lr for p in params]
    if len(lr) != len(params):
        raise ValueError(f"lr has {len(lr)} entries, the module {len(params)} parameters")
    return [r if isinstance(r, Tensor) or r is None else check_number(f"lr[{i}]", r, 0.0)
            for i, r in enumerate(lr)]  # fmt: skip


def _reroute(module: nn.Module, new: dict[int, Tensor], seen: set[int]) -> None:
    """Point every parameter and buffer slot holding an updated tensor at its new tensor."""
    if id(module) in seen:
        return
    seen.add(id(module))
    for key, p in module._parameters.items():
        if p is not None and id(p) in new:
            # Assigning to the dict (not setattr) allows a non-leaf tensor, as learn2learn does.
            module._parameters[key] = new[id(p)]
    for key, b in module._buffers.items():
        if b is not None and id(b) in new:
            module._buffers[key] = new[id(b)]
    for child in module._modules.values():
        if child is not None:
            _reroute(child, new, seen)
    if hasattr(module, "flatten_parameters"):
        module._apply(lambda x: x)  # RNNs: rebuild the flattened weights (learn2learn #139)


# --------------------------------------------------------------------------------------------
# structural and homeostatic parts (in place, per tensor)
# --------------------------------------------------------------------------------------------


def homeostatic_log_factors(
    weight: Tensor,
    budget_exc: Tensor,
    budget_inh: Tensor,
    types: Tensor | None = None,
    budget_rate: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """``log(budget / current sum)`` for the excitatory and inhibitory inputs of each row.

    Rows whose current sum is zero get 0 (nothing to rescale). With ``budget_rate > 0`` the
    budgets first move towards the current sums by that fraction (slow adaptation), in place.
    """
    exc, inh = row_budgets(weight, types)
    if budget_rate:
        budget_exc.lerp_(exc, budget_rate)
        budget_inh.lerp_(inh, budget_rate)
    tiny = torch.finfo(weight.dtype).tiny
    zero = torch.zeros((), dtype=weight.dtype, device=weight.device)
    log_e = torch.where(
        exc > tiny, budget_exc.clamp(min=tiny).log() - exc.clamp(min=tiny).log(), zero
    )
    log_i = torch.where(
        inh > tiny, budget_inh.clamp(min=tiny).log() - inh.clamp(min=tiny).log(), zero
    )
    return log_e, log_i


def _add_homeostatic_(
    step: Tensor, weight: Tensor, homeostasis: tuple[Tensor, Tensor, Tensor | None, float]
) -> None:
    budget_exc, budget_inh, types, rate = homeostasis
    log_e, log_i = homeostatic_log_factors(weight, budget_exc, budget_inh, types, rate)
    rows = step.view(step.shape[0], -1)
    if types is not None:
        rows.addmm_(torch.stack([log_e, log_i], 1), types)  # log_e on E entries, log_i on I
    else:
        sign = torch.sign(weight).view(weight.shape[0], -1)
        rows.add_(((log_e + log_i) / 2).unsqueeze(1))
        rows.addcmul_(((log_e - log_i) / 2).unsqueeze(1), sign)


def eliminate_(weight: Tensor, threshold: float | Tensor, protected: Tensor | None = None) -> None:
    """Set every synapse with ``|w| <= threshold`` (absolute) to exactly 0, in place.

    ``threshold`` is a number or a tensor broadcastable to ``weight`` (e.g. a fraction of
    :func:`row_mean_magnitudes`). ``protected`` (bool, same shape) marks synapses exempt.
    """
    if isinstance(threshold, Tensor):
        drop = weight.abs() <= threshold
        if protected is not None:
            drop &= ~protected
        weight.masked_fill_(drop, 0.0)
        return
    if protected is None:
        torch.hardshrink(weight, threshold, out=weight)
    else:
        weight.copy_(torch.where(protected, weight, torch.hardshrink(weight, threshold)))


def add_noise_(
    step: Tensor,
    std: float,
    generator: torch.Generator | None,
    reuse: int = 1,
    offset_generator: torch.Generator | None = None,
) -> None:
    """Add ``std * xi`` with ``xi ~ N(0, 1)`` per entry of ``step``, in place.

    With ``reuse = k > 1`` (and a large tensor), only ``n/k`` normal numbers are drawn per
    call; each of the ``k`` blocks of the flattened tensor reads them cyclically shifted by its
    own random offset (drawn from ``offset_generator``, a CPU generator). Every entry still
    gets a fresh standard normal every call, and two entries share a draw in a given call
    only by chance (probability about ``k/n``), so their noise is practically uncorrelated;
    drawing normals is the dominant cost of noise on CPUs and this divides it by ``k``.
    """
    flat = step.view(-1)
    n = flat.numel()
    if reuse <= 1 or n < 64 * reuse:
        flat.add_(torch.randn(n, generator=generator, device=step.device, dtype=step.dtype),
                  alpha=std)  # fmt: skip
        return
    length = -(-n // reuse)
    pool = torch.randn(length, generator=generator, device=step.device, dtype=step.dtype)
    offsets = torch.randint(0, length, (reuse,), generator=offset_generator).tolist()
    for block, offset in enumerate(offsets):
        chunk = flat[block * length : (block + 1) * length]
        head = min(chunk.numel(), length - offset)
        chunk[:head].add_(pool[offset : offset + head], alpha=std)
        if chunk.numel() > head:
            chunk[head:].add_(pool[: chunk.numel() - head], alpha=std)


def grow_(
    weight: Tensor,
    unit_sign: Tensor,
    n_grow: int,
    magnitude: float,
    generator: torch.Generator | None,
    signed_grad: Tensor | None = None,
    spread: float = 0.25,
) -> Tensor:
    """Create up to ``n_grow`` synapses among the absent ones, in place; return the grown mask.

    New magnitudes are ``magnitude * exp(spread * xi)`` (lognormal), with the sign of the
    presynaptic unit (``unit_sign`` along dimension 1). With ``signed_grad`` (``s*g`` evaluated
    with the presynaptic sign), only synapses whose growth would lower the loss (``s*g < 0``)
    are candidates, strongest evidence first; otherwise locations are chosen uniformly at random.
    """
    absent = weight == 0
    n_absent = int(absent.sum())
    n_grow = min(n_grow, n_absent)
    grown = torch.zeros_like(absent)
    if n_grow <= 0:
        return grown
    noise = torch.rand(weight.shape, generator=generator, device=weight.device, dtype=weight.dtype)
    if signed_grad is None:
        score = noise
        score.masked_fill_(~absent, -1.0)
    else:
        candidates = absent & (signed_grad < 0)
        n_grow = min(n_grow, int(candidates.sum()))
        if n_grow <= 0:
            return grown
        # Random tie-break among equal evidence; the evidence dominates otherwise.
        score = -signed_grad * (1.0 + 1e-3 * noise)
        score.masked_fill_(~candidates, -math.inf)
    idx = torch.topk(score.reshape(-1), n_grow, sorted=False).indices
    grown.view(-1)[idx] = True
    xi = torch.randn(n_grow, generator=generator, device=weight.device, dtype=weight.dtype)
    sign = unit_sign.to(weight.dtype).reshape(presynaptic_shape(weight)).expand_as(weight)
    weight.view(-1)[idx] = sign.reshape(-1)[idx] * magnitude * torch.exp(spread * xi)
    return grown


# --------------------------------------------------------------------------------------------
# the step
# --------------------------------------------------------------------------------------------


def bio_step(
    weights: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor | None],
    plasticities: list[Tensor | None],
    unit_signs: list[Tensor | None],
    homeostasis: list[tuple[Tensor, Tensor, Tensor | None, float] | None],
    grad_scales: list[Tensor | None] | None = None,
    *,
    lr: float | Sequence[float],
    momentum: float,
    decay: float,
    noise: float,
    max_step: float | None,
    generator: torch.Generator | None,
    noise_reuse: int = 1,
    offset_generator: torch.Generator | None = None,
    cost: float | Sequence[float] = 0.0,
    weight_dependence: tuple[float, str] = (1.0, "both"),
    saturation: float = 0.0,
    foreach: bool,
) -> None:
    """Equation 1 of the rule, with homeostatic scaling folded in, on lists of tensors.

    Per weight ``w`` with gradient ``g`` and rate ``lr`` (a number, or one per weight)::

        drive = c * s * g                   (momentum: buf <- momentum * buf + c * s * g)
        drive = (drive + cost * mbar / |w|) * (mbar / |w|) ** (1 - mu)   (mu < 1 only)
        drive = drive / (1 + (|w| / (sat * mbar)) ** 2)   where drive < 0   (sat > 0 only)
        dlog  = clip(-lr * p * (drive + decay), -max_step, max_step)
                + noise * xi
        dlog += log(budget / current sum)   (per row, E and I separately: homeostasis)
        w    <- w * exp(dlog)

    Homeostatic scaling is applied in the same multiplication as plasticity: each row's E and
    I magnitudes are brought back to their budgets just before the plastic change, so after
    a step they deviate from the budgets by at most that step's plastic change.

    ``unit_signs[i]`` is the presynaptic sign broadcast along dimension 1 (a Dale-typed
    weight, whose present entries all carry their unit's sign) or ``None`` (``s = sign(w)``
    element-wise). ``homeostasis[i]`` is ``(budget_exc, budget_inh, type_masks or None,
    budget_rate)`` or ``None``. ``grad_scales[i]`` is a tensor ``c`` broadcastable to the
    weight that normalises the gradient (``1 / RMS`` per tensor, per row or factored, see
    ``BioRule(normalize_by=...)``) or ``None`` (``c = 1``). ``cost`` (a number or one per
    weight) is the fixed cost per synapse of :func:`metabolic_drive` (not accumulated in the
    momentum buffer). ``weight_dependence`` is ``(mu, on)``: the exponent (1: none) and
    ``"both"`` or ``"potentiation"`` (only where the drive is negative; :func:`weight_dependence`).
    ``saturation`` (``sat``, 0: none) is the soft upper bound of potentiation
    (:func:`saturation_factor`).
    ``momentum_buffers`` must hold tensors where ``momentum > 0``;
    ``plasticities`` entries are ``p`` tensors or ``None`` for ``p = 1``.
    """
    if not weights:
        return
    impl = _multi_tensor_bio_step if foreach else _single_tensor_bio_step
    lr = [float(lr)] * len(weights) if isinstance(lr, (int, float)) else [float(x) for x in lr]
    if isinstance(cost, (int, float)):
        cost = [float(cost)] * len(weights)
    if grad_scales is None:
        grad_scales = [None] * len(weights)
    impl(
        weights, grads, momentum_buffers, plasticities, unit_signs, homeostasis, grad_scales, lr=lr,
        momentum=momentum, decay=decay, noise=noise, max_step=max_step, generator=generator,
        noise_reuse=noise_reuse, offset_generator=offset_generator, cost=cost,
        dependence=tuple(weight_dependence), saturation=float(saturation),
    )  # fmt: skip


def _accumulate_(
    buf: Tensor, w: Tensor, g: Tensor, s: Tensor | None, c: Tensor | None, momentum: float
) -> None:
    """``buf <- momentum * buf + c * s * g`` in two passes over the weight."""
    buf.mul_(momentum)
    if s is not None:  # Dale-typed: s * c is a small tensor broadcast along dimension 1
        buf.addcmul_(g, s if c is None else s * c)
    else:
        drive = torch.sign(w).mul_(g)
        buf.add_(drive if c is None else drive.mul_(c))


def _single_tensor_bio_step(
    weights, grads, momentum_buffers, plasticities, unit_signs, homeostasis, grad_scales, *, lr,
    momentum, decay, noise, max_step, generator, noise_reuse, offset_generator, cost, dependence,
    saturation,
):  # fmt: skip
    for w, g, buf, p, s, h, c, lr_w, cost_w in zip(
        weights, grads, momentum_buffers, plasticities, unit_signs, homeostasis, grad_scales, lr,
        cost, strict=True,
    ):  # fmt: skip
        if momentum:
            _accumulate_(buf, w, g, s, c, momentum)
            drive = buf
        else:
            drive = g * s if s is not None else torch.sign(w).mul_(g)
            if c is not None:
                drive.mul_(c)
        depends = dependence[0] != 1.0 or saturation > 0
        ratio = _mbar_over_m(w, h[2] if h is not None else None) if cost_w or depends else None
        if cost_w:
            drive = drive + ratio * cost_w  # metabolic_drive
        if depends:
            drive = drive * _weight_factor(ratio, dependence, drive < 0, saturation)
        step = log_step(drive, lr_w, p, decay, max_step)  # the same function as the meta path
        if noise:
            add_noise_(step, noise, generator, noise_reuse, offset_generator)
        if h is not None:
            _add_homeostatic_(step, w, h)
        w.mul_(step.exp_())


def _multi_tensor_bio_step(
    weights, grads, momentum_buffers, plasticities, unit_signs, homeostasis, grad_scales, *, lr,
    momentum, decay, noise, max_step, generator, noise_reuse, offset_generator, cost, dependence,
    saturation,
):  # fmt: skip
    if momentum:
        for w, g, s, c, buf in zip(
            weights, grads, unit_signs, grad_scales, momentum_buffers, strict=True
        ):
            _accumulate_(buf, w, g, s, c, momentum)
        rates = [kernel_scalar(-x, b.dtype) for x, b in zip(lr, momentum_buffers, strict=True)]
        steps = torch._foreach_mul(momentum_buffers, rates)
    else:
        rates = [-x if c is None else c * -x for c, x in zip(grad_scales, lr, strict=True)]
        rates = [kernel_scalar(r, w.dtype)
                 for r, w in zip(rates, weights, strict=True)]  # fmt: skip
        scales = [s * r if s is not None else torch.sign(w).mul_(r)
                  for w, s, r in zip(weights, unit_signs, rates, strict=True)]  # fmt: skip
        steps = torch._foreach_mul(grads, scales)
    depends = dependence[0] != 1.0 or saturation > 0
    for step, w, h, x, cost_w in zip(steps, weights, homeostasis, lr, cost, strict=True):
        ratio = _mbar_over_m(w, h[2] if h is not None else None) if cost_w or depends else None
        if cost_w:
            # mul_ rather than add_(alpha=...): a huge rate must saturate, not raise
            step.sub_((ratio * cost_w).mul_(x))  # metabolic_drive
        if depends:  # the steps are -lr * drive: a drive < 0 (growth) is a step > 0
            step.mul_(_weight_factor(ratio, dependence, step > 0, saturation))
    if decay:
        shifts = [kernel_scalar(-x * decay, s.dtype) for x, s in zip(lr, steps, strict=True)]
        torch._foreach_add_(steps, shifts)
    idx = [i for i, p in enumerate(plasticities) if p is not None]
    if idx:
        torch._foreach_mul_([steps[i] for i in idx], [plasticities[i] for i in idx])
    if max_step is not None:
        for step in steps:  # one pass each, where the foreach pair needs two
            bound = kernel_scalar(max_step, step.dtype)
            step.clamp_(-bound, bound)
    if noise:
        for step in steps:
            add_noise_(step, noise, generator, noise_reuse, offset_generator)
    for step, w, h in zip(steps, weights, homeostasis, strict=True):
        if h is not None:
            _add_homeostatic_(step, w, h)
    torch._foreach_exp_(steps)
    torch._foreach_mul_(weights, steps)
