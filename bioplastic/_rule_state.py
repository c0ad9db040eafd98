"""``BioRule``'s bookkeeping beyond the step: consolidation, state round trips and the
read-only views that integrations use (never the state's keys).

:class:`RuleStateMixin` is a base class of :class:`bioplastic.BioRule`; it is kept apart so
that ``optim.py`` holds the step alone.
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from bioplastic._checks import check_number
from bioplastic._rule_options import CONSOLIDATE_BY, LATER_OPTIONS, validate_group

__all__ = ["RuleStateMixin"]


class RuleStateMixin:
    """Consolidation, ``state_dict``/``load_state_dict`` and public views of ``BioRule``."""

    # ---------------------------------------------------------------- consolidation
    @torch.no_grad()
    def consolidate(
        self, fraction: float = 0.5, factor: float = 0.1, by: str = "magnitude"
    ) -> dict[str, int]:
        """Lower the plasticity of the most important present synapses (metaplasticity).

        In every synapse tensor, the top ``fraction`` of present synapses by ``|w|``
        (``by="magnitude"``) or by the path integral of ``-g * dw`` accumulated since the last
        call (``by="importance"``, needs ``track_importance=True``) get their plasticity
        multiplied by ``factor`` in (0, 1]; with ``protect_consolidated`` they are no longer
        eliminated. Call it at experience boundaries. Returns the number of synapses
        consolidated now and in total (plasticity < 1).
        """
        check_number("fraction", fraction, 0.0, 1.0)
        check_number("factor", factor, 0.0, 1.0, lo_open=True)
        if by not in CONSOLIDATE_BY:
            raise ValueError(f"by must be one of {CONSOLIDATE_BY}, got {by!r}")
        now = total = 0
        for group in self.param_groups:
            if by == "importance" and not group["track_importance"]:
                raise ValueError('by="importance" needs track_importance=True in every group')
            for p in group["params"]:
                if not self._is_synapse(group, p):
                    continue
                state = self._init_synapse_state(group, p)
                present = p != 0
                k = round(fraction * int(present.sum()))
                if by == "importance" and "importance" not in state:
                    state["importance"] = torch.zeros_like(p)  # no step taken yet
                if k > 0:
                    score = p.abs() if by == "magnitude" else state["importance"].clone()
                    score = score.masked_fill(~present, -math.inf).reshape(-1)
                    _lower_plasticity_(state, p, torch.topk(score, k, sorted=False).indices, factor)
                    now += k
                elif "plasticity" not in state and "plasticity_code" not in state:
                    _lower_plasticity_(state, p, None, factor)  # fully plastic, but present
                if by == "importance":
                    state["importance"].zero_()
                total += int(_consolidated(state).sum())
        return {"consolidated": now, "consolidated_total": total}

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """The usual optimizer state plus the seed and generator states (noise, growth)."""
        state = super().state_dict()
        # plasticity is kept as a code per synapse and a table of levels; checkpoints hold the
        # float values (the format of earlier versions), so they load anywhere
        state["state"] = {
            idx: _with_float_plasticity(st) if "plasticity_code" in st else st
            for idx, st in state["state"].items()
        }
        state["bio"] = {
            "seed": self._seed,
            "nonfinite_skips": self.nonfinite_skips,
            "rng": {key: gen.get_state() for key, gen in self._generators.items()},
            "group_steps": list(self._group_steps),
            "schedule_start": list(self._schedule_start),
        }
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        bio = state_dict.pop("bio", None)
        # Optimizer.load_state_dict casts every floating tensor to its parameter's dtype; the
        # float64 gradient statistics must survive that exactly for bit-exact resumption.
        exact_keys = ("grad_sq", "grad_sq_row", "grad_sq_col")
        exact = {
            (idx, key): st[key]
            for idx, st in state_dict["state"].items()
            for key in exact_keys
            if key in st
        }
        super().load_state_dict(state_dict)
        params = [p for group in self.param_groups for p in group["params"]]
        for (idx, key), value in exact.items():
            self.state[params[idx]][key] = value.to(params[idx].device).clone()
        # Optimizer.__setstate__ adds torch's own options (e.g. "differentiable") that
        # BioRule does not take; drop them so that BioRule(params, **opt.defaults) still works.
        accepted = set(self._accepted_options())
        for options in (self.defaults, *self.param_groups):
            for key in [k for k in options if k not in accepted and k != "params"]:
                del options[key]
            # a state dict from before an option existed: the rule without it
            for key, value in LATER_OPTIONS.items():
                options.setdefault(key, value)
        for state in self.state.values():
            # Optimizer.load_state_dict casts tensors to the parameter's dtype; restore ours.
            if isinstance(state.get("step"), Tensor):
                state["step"] = int(state["step"])
            if "unit_sign" in state:
                state["unit_sign"] = state["unit_sign"].to(torch.int8)
            _upgrade_state_(state)
        self._plans = {}
        self._counts = {}
        self._fused_sums = {}
        steps = bio.get("group_steps") if bio is not None else None
        if steps is None or len(steps) != len(self.param_groups):
            # an older state dict: the groups' step counts are their parameters' largest
            steps = [
                max((int(self.state[p].get("step", 0)) for p in g["params"] if p in self.state),
                    default=0)
                for g in self.param_groups
            ]  # fmt: skip
        self._group_steps = [int(n) for n in steps]
        start = bio.get("schedule_start") if bio is not None else None
        if start is None or len(start) != len(self.param_groups):
            start = [0] * len(self.param_groups)  # older state dicts had no schedule
        self._schedule_start = [int(n) for n in start]
        if bio is not None:
            self._seed = int(bio["seed"])
            self.nonfinite_skips = int(bio["nonfinite_skips"])
            self._generators = {}
            for key, rng in bio["rng"].items():
                try:
                    gen = torch.Generator(device=key)
                    gen.set_state(rng)
                except RuntimeError:
                    continue  # a device we do not have now: it is re-seeded on first use
                self._generators[key] = gen

    @classmethod
    def _accepted_options(cls) -> list[str]:
        return [k for k in inspect.signature(cls.__init__).parameters if k != "self"]

    # ---------------------------------------------------------------- schedule
    def _rate(self, index: int) -> float:
        """The log-domain rate of param group ``index``'s next step: ``lr`` times the warm-up
        (by the group's step count: a parameter added later gets the current rate) and the
        annealing factor (by the steps since the schedule began)."""
        group, t = self.param_groups[index], self._group_steps[index]
        warmup = min(1.0, (t + 1) / group["warmup"]) if group["warmup"] else 1.0
        return group["lr"] * warmup * self._anneal_factor(group, t - self._schedule_start[index])

    def _anneal_factor(self, group: dict, step: int) -> float:
        """``1 + cos(pi * step / total_steps)`` (1 without ``total_steps``); past the end, the
        last step's (a warning, once)."""
        total = group["total_steps"]
        if total is None:
            return 1.0
        if step >= total:
            if not self._warned_schedule:
                self._warned_schedule = True
                warnings.warn(
                    f"BioRule: step {step + 1} of a schedule of total_steps={total}; the rate "
                    "stays at its last value (restart_schedule(n) starts a new schedule)",
                    RuntimeWarning,
                    stacklevel=5,
                )
            step = total - 1
        return 1.0 + math.cos(math.pi * step / total)

    def restart_schedule(self, total_steps: int | None = None) -> None:
        """Start the annealing schedule again from the next step, in every param group.

        ``total_steps`` (if given) replaces each group's ``total_steps``; ``None`` keeps them
        (a group without one stays at a constant rate): for a new task of a stream, with its
        number of steps.
        """
        if total_steps is not None:
            self.validate_options(total_steps=total_steps)
            for group in self.param_groups:
                group["total_steps"] = total_steps
        self._schedule_start = list(self._group_steps)
        self._schedule_start += [0] * (len(self.param_groups) - len(self._schedule_start))
        self._warned_schedule = False

    # ---------------------------------------------------------------- probes
    def structural_counts(self) -> dict[str, int]:
        """Totals of eliminated and grown synapses and of skipped non-finite updates.

        Elimination is counted from the change in the number of present synapses between
        structural events (so it costs nothing per step); a synapse whose magnitude underflows
        to 0 counts as eliminated.
        """
        eliminated = grown = 0
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state.get(p, {})
                if "n_eliminated" in state:
                    pending = state["n_present"] - int((p != 0).sum())
                    eliminated += state["n_eliminated"] + pending
                    grown += state["n_grown"]
        return {"eliminated": eliminated, "grown": grown, "nonfinite_skips": self.nonfinite_skips}

    # ---------------------------------------------------------------- integrations
    # Public read-only views and state transfer for strategies and plugins, which must not
    # depend on the keys of ``self.state`` (they may change with the rule's equations).

    #: Accepted values of :meth:`consolidate`'s ``by``.
    CONSOLIDATE_BY: tuple[str, ...] = CONSOLIDATE_BY

    @classmethod
    def validate_options(cls, **options: Any) -> None:
        """Check group hyper-parameters as the constructor does, without building anything.

        ``options`` are keyword arguments of :class:`BioRule` other than ``params`` and
        ``seed``; missing ones take the constructor's defaults. Raises the constructor's
        ``ValueError`` (naming the parameter and its allowed range) for a bad value and
        ``TypeError`` for an unknown name.

        Example::

            BioRule.validate_options(lr=0.01, grow_every=20)  # passes
            BioRule.validate_options(momentum=1.5)  # ValueError: momentum must be in [0, 1)
        """
        signature = inspect.signature(cls.__init__).parameters
        skip = ("self", "params", "seed")
        defaults = {k: v.default for k, v in signature.items() if k not in skip}
        unknown = sorted(set(options) - set(defaults))
        if unknown:
            raise TypeError(f"unknown BioRule options {unknown}; allowed: {sorted(defaults)}")
        validate_group({**defaults, **options})

    def plasticity(self, p: Tensor) -> Tensor | None:
        """A copy of ``p``'s per-synapse plasticity in (0, 1] (1: fully plastic).

        ``None`` while every synapse of ``p`` is fully plastic (no :meth:`consolidate` yet) or
        when ``p`` is not a synapse parameter of this rule.
        """
        state = self.state.get(p, {})
        value = self._plasticity_of(state, p)
        return None if value is None else value.detach().clone()

    def presynaptic_sign(self, p: Tensor) -> Tensor | None:
        """The fixed type (+1 excitatory, -1 inhibitory) of each presynaptic unit of ``p``.

        A tensor of shape ``[p.shape[1]]`` in ``p``'s dtype, or ``None`` before the rule has
        seen ``p`` (types are fixed at its first step or :meth:`consolidate`).
        """
        sign = self.state.get(p, {}).get("unit_sign")
        return None if sign is None else sign.to(p.dtype)

    def consolidated_count(self) -> int:
        """Number of synapses (over all groups) whose plasticity is below 1."""
        total = 0
        for group in self.param_groups:
            for p in group["params"]:
                total += int(_consolidated(self.state.get(p, {})).sum())
        return total

    @staticmethod
    def _plasticity_of(state: dict, p: Tensor) -> Tensor | None:
        """The per-synapse plasticity as a float tensor shaped like ``p`` (``None``: all 1)."""
        code = state.get("plasticity_code")
        if code is None:
            return state.get("plasticity")
        levels = state["plasticity_levels"]
        return levels.index_select(0, code.reshape(-1).int()).view(p.shape)

    @staticmethod
    def _consolidated_mask(state: dict) -> Tensor | None:
        mask = _consolidated(state)
        return None if mask.dim() == 0 else mask

    def adopt_state(self, source: RuleStateMixin | Mapping[Tensor, Mapping[str, Any]]) -> int:
        """Take over rule state, e.g. when another component rebuilt or reset the optimizer.

        Args:
            source: a :class:`BioRule` over (some of) the same parameters, whose per-parameter
                state, group options (when both have the same number of groups), seed,
                non-finite counter and generator states are taken over; or a mapping
                ``parameter -> state`` that was this rule's :attr:`state` before something
                replaced it (Avalanche's ``reset_optimizer_state``), of which only the
                per-parameter state is taken.

        Every parameter of this rule that has state in ``source`` gets that state (shared, not
        copied: ``source`` should not be stepped afterwards); other parameters keep theirs.
        Returns the number of parameters whose state was taken over.
        """
        if source is self:
            return 0
        if isinstance(source, RuleStateMixin):
            if len(source.param_groups) == len(self.param_groups):
                for theirs, ours in zip(source.param_groups, self.param_groups, strict=True):
                    ours.update({k: v for k, v in theirs.items() if k != "params"})
                self._group_steps = list(source._group_steps)
                self._schedule_start = list(source._schedule_start)
            self._seed = source._seed
            self.nonfinite_skips = source.nonfinite_skips
            self._generators = {}
            for key, gen in source._generators.items():
                clone = torch.Generator(device=gen.device)
                clone.set_state(gen.get_state())
                self._generators[key] = clone
            states = source.state
        else:
            states = source
        adopted = 0
        for group in self.param_groups:
            for p in group["params"]:
                state = states.get(p)
                if state and state is not self.state.get(p):
                    self.state[p] = state
                    adopted += 1
        return adopted


# ------------------------------------------------------------------------------ plasticity
# A synapse's plasticity is a product of consolidation factors, so a tensor holds few distinct
# values: they are stored as a uint8 code per synapse and a table of levels (code 0 = 1.0),
# 1 byte per synapse instead of 4, with the exact float32 values. A tensor whose values do not
# fit 256 levels keeps a float tensor ("plasticity"), as before.
_MAX_LEVELS = 256


def _consolidated(state: dict) -> Tensor:
    """Bool mask of the consolidated synapses (plasticity < 1), or a 0-dim False."""
    if "plasticity_code" in state:
        return state["plasticity_code"] != 0
    if "plasticity" in state:
        return state["plasticity"] < 1
    return torch.tensor(False)


def _encode(plasticity: Tensor) -> tuple[Tensor, Tensor] | None:
    """``(code, levels)`` of a float plasticity tensor, or ``None`` if it needs the floats."""
    values, inverse = torch.unique(plasticity.reshape(-1), return_inverse=True)
    table = values.tolist()
    if len(table) > _MAX_LEVELS or max(table, default=1.0) > 1.0:
        return None
    order = [1.0] + [v for v in table if v != 1.0]
    lookup = torch.tensor([order.index(v) for v in table], dtype=torch.uint8)
    code = lookup.to(plasticity.device)[inverse].view(plasticity.shape)
    return code, torch.tensor(order, dtype=plasticity.dtype, device=plasticity.device)


def _lower_plasticity_(state: dict, p: Tensor, idx: Tensor | None, factor: float) -> None:
    """Multiply the plasticity of the synapses ``idx`` (flat indices) by ``factor``."""
    if "plasticity" not in state and "plasticity_code" not in state:
        state["plasticity_code"] = torch.zeros(p.shape, dtype=torch.uint8, device=p.device)
        state["plasticity_levels"] = torch.ones(1, dtype=p.dtype, device=p.device)
    if idx is None:
        return
    if "plasticity_code" in state and len(state["plasticity_levels"]) * 2 > _MAX_LEVELS:
        _compact_levels_(state)
        if len(state["plasticity_levels"]) * 2 > _MAX_LEVELS:  # too many: back to floats
            state["plasticity"] = RuleStateMixin._plasticity_of(state, p).clone()
            del state["plasticity_code"], state["plasticity_levels"]
    if "plasticity" in state:
        state["plasticity"].view(-1)[idx] *= factor
        return
    levels = state["plasticity_levels"]
    table = levels.tolist()
    lookup = {v: i for i, v in enumerate(table)}
    mapping = []
    for v in (levels * factor).tolist():  # the same float32 products as floats would hold
        if v not in lookup:
            lookup[v] = len(table)
            table.append(v)
        mapping.append(lookup[v])
    code = state["plasticity_code"].view(-1)
    mapped = torch.tensor(mapping, dtype=torch.uint8, device=p.device)
    code[idx] = mapped[code[idx].long()]
    state["plasticity_levels"] = torch.tensor(table, dtype=levels.dtype, device=levels.device)
    _compact_levels_(state)


def _compact_levels_(state: dict) -> None:
    code, levels = state["plasticity_code"], state["plasticity_levels"]
    used = torch.bincount(code.reshape(-1), minlength=len(levels)).cpu() > 0
    used[0] = True
    if bool(used.all()):
        return
    renumber = (used.cumsum(0) - 1).to(torch.uint8).to(code.device)
    state["plasticity_code"] = renumber[code.long()]
    state["plasticity_levels"] = levels[used.to(levels.device)]


def _with_float_plasticity(state: dict) -> dict:
    out = {k: v for k, v in state.items() if k not in ("plasticity_code", "plasticity_levels")}
    levels = state["plasticity_levels"]
    out["plasticity"] = levels.index_select(0, state["plasticity_code"].reshape(-1).int()).view(
        state["plasticity_code"].shape
    )
    return out


def _upgrade_state_(state: dict) -> None:
    """Bring a loaded per-parameter state to the current layout (older checkpoints too)."""
    if "budget_exc" in state:
        state["budgets"] = torch.stack([state.pop("budget_exc"), state.pop("budget_inh")])
    state.pop("type_masks", None)  # derived from unit_sign; cached outside the state
    if "grad_sq_row" in state and state["grad_sq_row"].dtype == torch.float64:
        state["grad_sq_row"] = state["grad_sq_row"].float()  # kept in float32 since v2
    if "plasticity" in state:
        encoded = _encode(state["plasticity"])
        if encoded is not None:
            del state["plasticity"]
            state["plasticity_code"], state["plasticity_levels"] = encoded
