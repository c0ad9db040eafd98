"""``BioRule``: the bio rule as a ``torch.optim.Optimizer`` (baselines: ``bioplastic.baselines``).

The equations live in :mod:`bioplastic.functional`; this module is bookkeeping: validation,
per-parameter state, the random generator, structural schedules and consolidation.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable

import torch
from torch import Tensor
from torch.optim import Optimizer

from bioplastic import _fast_step as fast
from bioplastic import _fused_step as compiled_step
from bioplastic import functional as F
from bioplastic._fast_step import DalePlan
from bioplastic._grad_scale import grad_scales_of
from bioplastic._rule_options import validate_group
from bioplastic._rule_state import RuleStateMixin

__all__ = ["BioRule"]

# Row norms at or above this have squares beyond float32's range (~3.4e38).
_HUGE_NORM = 1.8e19


class BioRule(RuleStateMixin, Optimizer):
    r"""Sign-preserving multiplicative plasticity with homeostasis and structural plasticity.

    For every synapse (an entry of a weight with two or more dimensions, or of any parameter in
    a group with ``synapse=True``) with fixed sign ``s_j`` (its presynaptic unit ``j``),
    magnitude ``m_ij`` and postsynaptic unit (row) ``i`` of a weight with fan-in ``n``
    (``weight[0].numel()``), one step is (rule v2)::

        r_i    <- beta r_i + (1 - beta) mean_j g_ij^2              (per-unit gradient power)
        u_ij   <- mu u_ij + s_j g_ij / sqrt(rhat_i + 0.1 mean_k rhat_k)
                  (momentum on the normalised drive; rhat = r / (1 - beta^t), bias-corrected)
        lr_n    = lr * min(1, t / warmup) * a_t * n^(-fan_in_exponent)   (per-layer rate)
        B_i   <- B_i + budget_rate (S_i - B_i)                     (slowly adapting budgets)
        dlog m_ij = clip(-lr_n p_ij (u_ij + cost * mbar_i / m_ij + decay), +-max_step)
                    (with weight_dependence mu < 1: u + cost term times (mbar_i / m_ij)^(1-mu);
                    with saturation k > 0, where it is negative, times 1 / (1 + (m_ij / (k
                    mbar_i))^2))
                    + noise * xi + log(B_i / S_i)                 (homeostasis, E and I apart)
        m_ij  <- m_ij exp(dlog m_ij)
        m_ij  <- 0  if m_ij <= prune_threshold * mean of the row's present same-type m

    ``a_t`` is 1, or with ``total_steps = T`` the annealing ``1 + cos(pi t / T)`` (``t``
    counted from the schedule's start; its mean over the ``T`` steps is ``1 + 1/T``, so ``lr``
    stays the mean rate: twice ``lr`` at the start, near 0 at the end).
    ``S_i`` is the unit's summed excitatory (or inhibitory) magnitude before the step and
    ``B_i`` its budget (initialised to ``S_i`` at the first step; E and I apart); ``mbar_i = S_i
    / n_type`` is the budget per potential synapse of that type, so ``cost * mbar / m`` is a
    fixed cost per synapse (it weighs 1/m in the log domain: weak synapses pay most, and the
    homeostatic rescale hands what they lose to the strong ones). The cost acts where the credit
    ``u`` does not support a synapse: synapses then shrink under competition until they cross
    the elimination threshold, which follows the survivors (a fraction of the mean present
    magnitude), so sparsity arises from credit and competition, not from noise; as connectivity
    falls, survivors grow (``~1/connectivity``) and feel less cost, so it settles.
    ``normalize_by`` chooses the statistics of the normalisation: ``"row"`` (above, one number
    per postsynaptic unit), ``"tensor"`` (rule v1: one RMS per tensor) or ``"factored"``
    (Adafactor's row x column estimate). Then (optionally) growth of absent synapses.
    ``prune_mode="relative"`` (rule v1: a fraction of the layer's initial median magnitude) and
    ``"absolute"`` remain available. No weight ever changes sign and a zero weight stays zero
    unless growth recreates it with its presynaptic unit's sign.

    Parameters that are not synapses (biases, norm layers; ``dim < 2`` by default) get a plain
    additive update: ``other="adam"`` (``torch.optim.Adam`` semantics with ``other_lr``,
    ``betas``, ``eps``, ``weight_decay``) or ``other="sgd"``.

    Args:
        params: parameters or param groups; every hyper-parameter below can be set per group.
        lr: plasticity rate of the log-domain step (> 0). A layer of fan-in ``n`` uses
            ``lr * n ** -fan_in_exponent`` (0.08 / sqrt(256) = 0.005 per step before momentum
            for a 256-input layer): with E/I-balanced rows a coherent relative change of a
            unit's synapses moves its input by about ``sqrt(n)`` times as much.
        normalize: divide each gradient by its root-mean-square, smoothed over steps with
            ``grad_beta``, so that ``lr`` does not depend on the scale of the loss, the
            inputs or the unit; ``normalize_by`` says over what (see above).
        normalize_by: ``"row"`` (per postsynaptic unit; default), ``"tensor"`` or
            ``"factored"``.
        fan_in_exponent: in [0, 2]; the per-layer rate is ``lr * fan_in ** -fan_in_exponent``.
        cost: fixed metabolic cost per synapse >= 0, in units of the normalised drive
            (``cost * mbar / m`` added to ``s*g``; see above). It drives elimination.
        weight_dependence: exponent ``mu`` in [0, 1] of the weight dependence of plasticity:
            the drive is multiplied by ``(mbar / m) ** (1 - mu)``, so a step changes a magnitude
            by about ``m ** mu * mbar ** (1 - mu)`` (1, the default: multiplicative; 0:
            additive in the magnitude; Gutig et al. 2003). Weak synapses then move relatively
            faster. Takes the reference path (slower) when below 1.
        weight_dependence_on: ``"both"`` (potentiation and depression) or ``"potentiation"``
            (only where the drive is negative: additive-like potentiation, multiplicative
            depression, as van Rossum et al. 2000 measured).
        saturation: soft upper bound ``k`` of potentiation, 0 (none) or in [1e-6, 1e6] (30,
            the default): where the drive potentiates, it is multiplied by ``1 / (1 + (m / (k *
            mbar)) ** 2)`` (before the ``max_step`` clip): halved at ``k`` times the row's
            budget per potential synapse and fading as ``(k * mbar / m) ** 2`` above (a
            fixed level while budgets hold; the soft bounds of Gutig et al. 2003, a spine's
            limited room), so the strongest synapses stop taking the whole budget: the
            hidden units then spread their budget over more synapses and generalise better
            (the 500-class glyph MLP 0.681 against 0.606 without, 3 seeds; MNIST-1D loses
            0.015-0.021; ``benchmarks/results/defaults_sweep_saturation_annealed``). Without
            ``cost``, the reference path (use 0 there).
        total_steps: the length of training in steps, or ``None`` (the default: a constant
            rate). Given it, the rate anneals over those steps as ``lr * (1 + cos(pi * t /
            total_steps))``, with mean ``lr`` (the same total plasticity as a constant rate):
            at a constant rate the normalised drive keeps the weights moving as much at the end
            as at the start, so they never settle (``benchmarks/results/rulebench.md``
            measures both). Steps past ``total_steps`` keep the last rate (with a warning);
            :meth:`restart_schedule` starts a new schedule (a new task).
        warmup: steps over which the rate ramps up linearly from ``lr / warmup`` (0: none),
            counted from the param group's steps: a parameter added to a group later (a new
            task head) gets the group's current rate.
        grad_beta: smoothing in [0, 1) of the squared gradient RMS (bias-corrected, as Adam's).
        momentum: momentum on ``s*g`` in [0, 1) (SGD-style, no dampening).
        decay: uniform cost >= 0 added to ``s*g`` (a uniform log shrinkage; homeostasis
            undoes it unless budgets adapt, so it is 0 by default; see ``cost``).
        noise: std >= 0 of the log-domain synaptic noise per step.
        noise_halflife: steps over which the noise std halves (0: constant noise); a
            developmental period of high structural turnover that settles down.
        max_step: bound on ``|dlog m|`` per step (> 0), or ``None`` for no clipping.
        prune_threshold: elimination threshold >= 0 (0 disables elimination).
        prune_mode: ``"unit"`` (a fraction of the mean present magnitude of the same type in
            the synapse's row; default), ``"relative"`` (of the layer's initial median
            magnitude) or ``"absolute"``.
        homeostasis: rescale E and I input budgets of each postsynaptic unit after every step.
        budget_rate: in [0, 1]; budgets follow the current sums with this rate (0: fixed),
            so the coherent part of the credit can change a unit's overall gain slowly.
        grow_every: grow absent synapses every this many steps (0 disables growth).
        grow_fraction: fraction in [0, 1] of the absent synapses grown per growth event.
        grow_mode: ``"gradient"`` (only where ``s*g < 0``, strongest first) or ``"random"``.
        grow_scale: magnitude of new synapses relative to the initial median (> 0).
        max_connectivity: synapse budget per layer in (0, 1]: growth never exceeds it.
        track_importance: accumulate the path integral ``-g * dw`` per synapse (for
            :meth:`consolidate` with ``by="importance"``; costs one weight-sized buffer).
        protect_consolidated: consolidated synapses (plasticity < 1) are never eliminated.
        other, other_lr, betas, eps, weight_decay: update of non-synapse parameters
            (``other_lr`` and ``weight_decay`` in [0, 1e6]).
        synapse: ``None`` (auto: ``dim >= 2``), ``True`` or ``False`` for a whole group.
        seed: seed of the generator used for noise and growth (``None``: drawn from torch's
            global generator, so ``torch.manual_seed`` makes runs reproducible).
        foreach: use the fast implementation (default: for Dale-typed weights, fewer passes
            over the weight, the log-step in base 2) or the reference per-tensor loop; both
            give the same results up to float rounding. The fast path remembers each large
            weight's present synapses between steps (recounted when ``p._version`` moved:
            change weights in place under ``torch.no_grad()``, not through ``p.data``).
        fused: compile the weight-sized part of the step with ``torch.compile`` (inductor; the
            first step compiles, seconds to tens of seconds): a kernel for the update, one for
            elimination that returns the E/I sums the next step starts from (kept like the
            counts above). Random draws stay eager (the same noise). The eager path takes
            weights under 65,536 entries, steps that could overflow, growth steps, groups
            without momentum, cost, homeostasis or per-row/per-synapse normalisation, and
            non-"unit" pruning. Results (a resumed run's too) equal the
            others up to rounding.

    State (created lazily in :meth:`step`, so wiping ``optimizer.state`` only resets it) and the
    generator round-trip through :meth:`state_dict`; a resumed run continues bit-for-bit (with
    ``fused``: up to rounding). Non-finite gradients skip that tensor's update; the first one
    warns, all are counted in :attr:`nonfinite_skips`. A finite update that overflows (a huge
    ``lr`` without ``max_step``, huge noise or growth) saturates at the dtype's largest
    magnitude, keeping the sign; an absent synapse stays absent.

    Presynaptic signs come from ``weight.dale_sign`` (set by :func:`bioplastic.dalify`) when
    present, otherwise from the sign pattern of each weight column at the first step.

    Reference: SPEC section 3; Cornford et al. (2024) "Brain-like learning with exponentiated
    gradients"; Knoblauch et al. (2014) on structural plasticity.

    Example::

        model = bioplastic.dalify(nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10)))
        opt = BioRule(model.parameters())
        loss_fn(model(x), y).backward(); opt.step(); opt.zero_grad()
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict],
        lr: float = 0.08,
        *,
        normalize: bool = True,
        normalize_by: str = "row",
        fan_in_exponent: float = 0.5,
        cost: float = 0.4,
        weight_dependence: float = 1.0,
        weight_dependence_on: str = "both",
        saturation: float = 30.0,
        warmup: int = 200,
        total_steps: int | None = None,
        grad_beta: float = 0.99,
        momentum: float = 0.9,
        decay: float = 0.0,
        noise: float = 0.0,
        noise_halflife: float = 400.0,
        noise_reuse: int = 16,
        max_step: float | None = 0.2,
        prune_threshold: float = 0.1,
        prune_mode: str = "unit",
        homeostasis: bool = True,
        budget_rate: float = 0.01,
        grow_every: int = 0,
        grow_fraction: float = 0.0,
        grow_mode: str = "gradient",
        grow_scale: float = 0.25,
        max_connectivity: float = 1.0,
        track_importance: bool = False,
        protect_consolidated: bool = True,
        other: str = "adam",
        other_lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        synapse: bool | None = None,
        seed: int | None = None,
        foreach: bool = True,
        fused: bool = False,
    ):
        defaults = dict(
            lr=lr, normalize=normalize, normalize_by=normalize_by,
            fan_in_exponent=fan_in_exponent, cost=cost, weight_dependence=weight_dependence,
            weight_dependence_on=weight_dependence_on, saturation=saturation, warmup=warmup,
            total_steps=total_steps, grad_beta=grad_beta,
            momentum=momentum, decay=decay,
            noise=noise, noise_halflife=noise_halflife, noise_reuse=noise_reuse, max_step=max_step,
            prune_threshold=prune_threshold, prune_mode=prune_mode, homeostasis=homeostasis,
            budget_rate=budget_rate, grow_every=grow_every, grow_fraction=grow_fraction,
            grow_mode=grow_mode, grow_scale=grow_scale, max_connectivity=max_connectivity,
            track_importance=track_importance, protect_consolidated=protect_consolidated,
            other=other, other_lr=other_lr, betas=betas, eps=eps, weight_decay=weight_decay,
            synapse=synapse, foreach=foreach, fused=fused,
        )  # fmt: skip
        if seed is None:
            seed = int(torch.randint(0, 2**62, (), dtype=torch.int64))
        elif not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= 2**63 - 1:
            # torch generators take a signed 64-bit seed: refuse a larger one now, not at step 1
            raise ValueError(f"seed must be an int in [0, 2**63 - 1] or None, got {seed!r}")
        self._seed = seed
        self._generators: dict[str, torch.Generator] = {}
        self._group_steps: list[int] = []  # steps taken per param group (warm-up, noise decay)
        self._schedule_start: list[int] = []  # each group's step count when its schedule began
        self._warned_schedule = False
        self._plans: dict[Tensor, DalePlan] = {}  # constants derived from the unit signs
        self._counts: dict[Tensor, tuple] = {}  # present synapses after the last elimination
        self._fused_sums: dict[Tensor, tuple] = {}  # E/I sums after the last compiled step
        self.nonfinite_skips = 0
        self._warned_nonfinite = False
        super().__init__(params, defaults)

    # ---------------------------------------------------------------- validation
    def add_param_group(self, param_group: dict) -> None:
        for key, value in self.defaults.items():
            param_group.setdefault(key, value)
        validate_group(param_group)
        super().add_param_group(param_group)
        self._group_steps.append(0)

    # ---------------------------------------------------------------- helpers
    def _generator(self, device: torch.device) -> torch.Generator:
        key = str(device)
        gen = self._generators.get(key)
        if gen is None:
            gen = torch.Generator(device=device)
            gen.manual_seed(self._seed)
            self._generators[key] = gen
        return gen

    @staticmethod
    def _is_synapse(group: dict, p: Tensor) -> bool:
        return p.dim() >= 2 if group["synapse"] is None else bool(group["synapse"])

    def _init_synapse_state(self, group: dict, p: Tensor) -> dict:
        state = self.state[p]
        if "unit_sign" in state:
            return state
        if p.dim() < 2:
            raise ValueError(
                f"a synapse parameter needs at least 2 dimensions, got shape {tuple(p.shape)}; "
                "put it in a group with synapse=False"
            )
        with torch.no_grad():
            sign = getattr(p, "dale_sign", None)
            if sign is None or sign.numel() != p.shape[1]:
                dims = [d for d in range(p.dim()) if d != 1]
                votes = torch.sign(p).sum(dim=dims)
                sign = torch.where(votes < 0, -1.0, 1.0)
            sign = sign.detach().to(device=p.device, dtype=p.dtype)
            state["unit_sign"] = sign.to(torch.int8)
            # Dale-typed: every present synapse carries its presynaptic unit's sign, which
            # lets the step use the per-unit sign (cheaper than sign(w) per entry).
            mismatch = torch.sign(p) * sign.reshape(F.presynaptic_shape(p)) < 0
            state["dale"] = not bool(mismatch.any())
            present = p[p != 0].abs()
            state["ref_magnitude"] = float(present.median()) if present.numel() else 1.0
            state["step"] = 0
            state["n_present"] = int((p != 0).sum())  # at the last structural event
            state["n_eliminated"] = 0
            state["n_grown"] = 0
            state["n_nonfinite"] = 0
        return state

    def _plan(self, p: Tensor, state: dict) -> DalePlan:
        plan = self._plans.get(p)
        unit_sign = state["unit_sign"]
        if plan is None or plan.unit_sign is not unit_sign or plan.types.dtype != p.dtype:
            plan = self._plans[p] = DalePlan.build(unit_sign.to(p.device), p)
        return plan

    def _types(self, p: Tensor, state: dict) -> Tensor | None:
        return self._plan(p, state).types if state["dale"] else None

    def _row_norms(self, group: dict, p: Tensor) -> Tensor | None:
        """L2 norm of each row of ``p.grad`` (float32): the finite check and the row statistics."""
        if not (group["normalize"] and group["normalize_by"] == "row" and p.numel()):
            return None
        if not self._is_synapse(group, p) or p.dim() < 2:
            return None
        return torch.linalg.vector_norm(p.grad.reshape(p.shape[0], -1), dim=1)

    def _finite_mask(self, params: list[Tensor], row_norms: list) -> tuple[list[bool], list]:
        """Which gradients are finite, and per tensor its row norms or its L2 norm."""
        if not params:
            return [], []
        rest = [i for i, r in enumerate(row_norms) if r is None]
        norms = list(row_norms)
        if rest:
            for i, n in zip(rest, torch._foreach_norm([params[i].grad for i in rest]), strict=True):
                norms[i] = n
        totals = torch._foreach_norm([n.reshape(-1) for n in norms])
        if len({n.device for n in totals}) == 1:  # one transfer to the host, not one per tensor
            values = torch.stack([n.float() for n in totals]).cpu().tolist()
        else:
            values = [float(n) for n in totals]
        result = [math.isfinite(v) for v in values]
        for i, ok in enumerate(result):
            # A huge but finite gradient can overflow the norm; confirm element-wise.
            if not ok and torch.isfinite(params[i].grad).all():
                result[i] = True
                norms[i] = None if row_norms[i] is not None else params[i].grad.double().norm()
            elif row_norms[i] is not None and values[i] >= _HUGE_NORM:
                norms[i] = None  # its square would overflow float32: float64 statistics
        return result, norms

    def _skip(self, p: Tensor) -> None:
        self.nonfinite_skips += 1
        if "n_nonfinite" in self.state[p]:
            self.state[p]["n_nonfinite"] += 1
        if not self._warned_nonfinite:
            self._warned_nonfinite = True
            warnings.warn(
                "BioRule: non-finite gradient; that tensor's update was skipped (further "
                "skips are counted in optimizer.nonfinite_skips without a warning)",
                RuntimeWarning,
                stacklevel=3,
            )

    # ---------------------------------------------------------------- the step
    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        """Perform one step of the rule (see the class docstring)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if len(self._group_steps) < len(self.param_groups):  # groups appended by hand
            self._group_steps += [0] * (len(self.param_groups) - len(self._group_steps))
        if len(self._schedule_start) < len(self.param_groups):
            self._schedule_start += [0] * (len(self.param_groups) - len(self._schedule_start))
        for index, group in enumerate(self.param_groups):
            with_grad = [p for p in group["params"] if p.grad is not None]
            if any(p.grad.is_sparse for p in with_grad):
                raise ValueError("BioRule does not support sparse gradients")
            row_norms = [self._row_norms(group, p) for p in with_grad]
            finite, norms = self._finite_mask(with_grad, row_norms)
            synapses, synapse_norms, others = [], [], []
            for p, ok, norm in zip(with_grad, finite, norms, strict=True):
                if not ok:
                    self._skip(p)
                elif p.numel() == 0:
                    continue  # nothing to update (a zero-size layer)
                elif self._is_synapse(group, p):
                    synapses.append(p)
                    synapse_norms.append(norm)
                else:
                    others.append(p)
            if synapses:
                t = self._group_steps[index]
                self._step_synapses(group, t, synapses, synapse_norms, self._rate(index))
                self._group_steps[index] += 1
            self._step_others(group, others)
            _keep_finite_(others)
        return loss

    def _step_synapses(self, group: dict, t: int, params: list[Tensor], norms: list,
                       rate: float) -> None:  # fmt: skip
        """One step of the group's synapses; ``t`` is the group's step count before it."""
        states = [self._prepare_state(group, p) for p in params]
        grads = [p.grad for p in params]
        before = [p.clone() for p in params] if group["track_importance"] else None
        noise = self._noise_now(group, t)
        grad_scales = grad_scales_of(group, params, states, norms)
        grow_due = bool(group["grow_every"]) and (t + 1) % group["grow_every"] == 0
        by_device: dict[torch.device, list[int]] = {}
        for i, p in enumerate(params):
            by_device.setdefault(p.device, []).append(i)
        pending, compiled = [], set()  # fast paths: elimination pending, or done (compiled)
        for device, idx in by_device.items():
            self._generator(device)  # created now even without noise: its state round-trips
            pick = [params[i] for i in idx], [grads[i] for i in idx], [states[i] for i in idx]
            if fast.multi_ok(self, group, *pick, rate):
                results = fast.multi_step(self, group, *pick, [grad_scales[i] for i in idx], rate,
                                          noise, eliminate=not grow_due)  # fmt: skip
            else:  # one tensor at a time: the same noise stream on every path
                results = [self._step_tensor(group, params[i], grads[i], states[i],
                                             grad_scales[i], rate, noise, not grow_due)
                           for i in idx]  # fmt: skip
            for i, result in zip(idx, results, strict=True):
                if isinstance(result, tuple):
                    pending.append((i, *result))
                elif result is True:  # the compiled path updated and eliminated
                    compiled.add(i)
        done = fast.finish(self, group, params, states, pending) | compiled
        rest = [i for i in range(len(params)) if i not in done]
        _keep_finite_([params[i] for i in rest], [states[i].get("momentum_buffer") for i in rest])
        for i, (p, state) in enumerate(zip(params, states, strict=True)):
            state["step"] += 1
            if grow_due:
                self._grow(group, p, state)
            if group["prune_threshold"] and i not in done:
                self._eliminate(group, p, state)
            if before is not None:
                state["importance"].addcmul_(grads[i], p - before[i], value=-1.0)

    def _step_tensor(self, group, p, g, state, scale, rate, noise, eliminate: bool):
        """One synapse tensor's update on the compiled path when it covers it, else eagerly."""
        if compiled_step.fused_ok(group, p, state, scale, rate, eliminate):
            return compiled_step.step_fused(self, group, p, g, state, scale, rate, noise)
        return fast.step_tensor(self, group, p, g, state, scale, rate, noise, eliminate=eliminate)

    def _prepare_state(self, group: dict, p: Tensor) -> dict:
        state = self._init_synapse_state(group, p)
        # a group's options may change between steps (e.g. momentum switched on)
        if group["momentum"] and "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(p)
        if group["track_importance"] and "importance" not in state:
            state["importance"] = torch.zeros_like(p)
        if group["homeostasis"] and "budgets" not in state:
            state["budgets"] = torch.stack(F.row_budgets(p, self._types(p, state)))  # E, I
        return state

    def _reference_step(self, group, p, state, scale, rate, noise) -> None:
        """Equation 1 (plasticity and homeostasis) of one tensor on the reference path."""
        # Scalars beyond the dtype's range make torch raise; these substitutes give the same
        # result (exp of such a step overflows or underflows either way).
        cap = torch.finfo(p.dtype).max
        max_step = group["max_step"]
        if max_step is not None and max_step >= cap:
            max_step = None
        types = self._types(p, state)
        unit_sign = None if types is None else state["unit_sign"].to(p.dtype)
        homeostasis = None
        if group["homeostasis"]:
            homeostasis = (*state["budgets"].unbind(0), types, group["budget_rate"])
        generator = self._generator(p.device) if noise else None
        F.bio_step(
            [p], [p.grad], [state.get("momentum_buffer")], [self._plasticity_of(state, p)],
            [None if unit_sign is None else unit_sign.reshape(F.presynaptic_shape(p))],
            [homeostasis], [scale], lr=fast.layer_rate(group, p, rate),
            momentum=group["momentum"], decay=group["decay"], noise=min(noise, cap),
            max_step=max_step, generator=generator, noise_reuse=group["noise_reuse"],
            offset_generator=self._generator(torch.device("cpu")) if noise else None,
            cost=group["cost"], foreach=group["foreach"],
            weight_dependence=(group["weight_dependence"], group["weight_dependence_on"]),
            saturation=group["saturation"],
        )  # fmt: skip

    def _eliminate(self, group: dict, p: Tensor, state: dict) -> None:
        threshold = group["prune_threshold"]
        if group["prune_mode"] == "unit":
            threshold = F.row_mean_magnitudes(p, self._types(p, state), True)
            threshold.mul_(group["prune_threshold"])
        else:
            if group["prune_mode"] == "relative":
                threshold *= state["ref_magnitude"]
            threshold = min(threshold, torch.finfo(p.dtype).max)
        protected = None
        if group["protect_consolidated"]:
            protected = self._consolidated_mask(state)
        F.eliminate_(p, threshold, protected)

    @staticmethod
    def _noise_now(group: dict, step: int) -> float:
        if not group["noise"] or not group["noise_halflife"]:
            return group["noise"]
        return group["noise"] * 0.5 ** (step / group["noise_halflife"])

    def _grow(self, group: dict, p: Tensor, state: dict) -> None:
        numel = p.numel()
        present = int((p != 0).sum())
        # whatever disappeared since the last structural event was eliminated
        state["n_eliminated"] += state["n_present"] - present
        state["n_present"] = present
        room = math.floor(group["max_connectivity"] * numel + 1e-9) - present
        n_grow = min(round(group["grow_fraction"] * (numel - present)), room)
        if n_grow <= 0:
            return
        signed_grad = None
        if group["grow_mode"] == "gradient":
            signed_grad = state["unit_sign"].to(p.dtype).reshape(F.presynaptic_shape(p)) * p.grad
        grown = F.grow_(
            p,
            state["unit_sign"],
            n_grow,
            magnitude=group["grow_scale"] * state["ref_magnitude"],
            generator=self._generator(p.device),
            signed_grad=signed_grad,
        )
        if group["grow_scale"] * state["ref_magnitude"] * 100 >= torch.finfo(p.dtype).max:
            _keep_finite_([p])  # a huge grow_scale: new synapses at the largest magnitude
        n_grown = int(grown.sum())
        state["n_grown"] += n_grown
        state["n_present"] += n_grown
        for key in ("plasticity", "plasticity_code", "momentum_buffer", "importance"):
            if key in state:  # a grown synapse is fully plastic (code 0: plasticity 1)
                fill = 1.0 if key == "plasticity" else 0.0
                state[key].masked_fill_(grown, fill)

    def _step_others(self, group: dict, params: list[Tensor]) -> None:
        if not params:
            return
        grads = [p.grad for p in params]
        if group["other"] == "sgd":
            F.sgd_step(params, grads, lr=group["other_lr"], weight_decay=group["weight_decay"])
            return
        exp_avgs, exp_avg_sqs, steps = [], [], []
        for p in params:
            state = self.state[p]
            if "exp_avg" not in state:
                state["step"] = 0
                state["exp_avg"] = torch.zeros_like(p)
                state["exp_avg_sq"] = torch.zeros_like(p)
            state["step"] += 1
            exp_avgs.append(state["exp_avg"])
            exp_avg_sqs.append(state["exp_avg_sq"])
            steps.append(state["step"])
        F.adam_step(
            params, grads, exp_avgs, exp_avg_sqs, steps, lr=group["other_lr"],
            betas=group["betas"], eps=group["eps"], weight_decay=group["weight_decay"],
        )  # fmt: skip


def _keep_finite_(params: list[Tensor], buffers: list[Tensor | None] | None = None) -> None:
    """Keep weights finite after an update that overflowed (huge step, noise or growth).

    ``inf`` becomes the largest finite value of its sign (the sign is kept) and NaN, which an
    update of a finite weight can only produce as ``0 * inf`` (an absent synapse times an
    overflowed factor) or ``inf - inf``, becomes 0 (absent). The momentum buffer of such a
    tensor is cleaned the same way. Costs one norm per tensor when nothing overflowed.
    """
    if not params:
        return
    norms = [n.float() for n in torch._foreach_norm(params)]
    if len({n.device for n in norms}) == 1:  # one synchronisation, not one per tensor
        finite = torch.isfinite(torch.stack(norms)).tolist()
    else:
        finite = [bool(torch.isfinite(n)) for n in norms]
    for i, ok in enumerate(finite):
        if ok:
            continue
        for t in (params[i], buffers[i] if buffers else None):
            if t is not None:
                big = torch.finfo(t.dtype).max
                torch.nan_to_num_(t, nan=0.0, posinf=big, neginf=-big)
