"""The baselines the bio rule is compared with, selectable by name (SPEC section 3).

* ``sgd`` and ``adam``: backprop with ``torch.optim``;
* ``eg``: exponentiated gradient, :class:`~bioplastic.BioRule` with its structural and
  homeostatic mechanisms switched off;
* ``enforced``: :class:`EnforcedAdam`, Adam with the properties *enforced* (sign projection,
  L1, magnitude pruning) instead of emerging.

:func:`make_optimizer` builds any of them, or the bio rule, by name.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import warnings
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer

from bioplastic._checks import check_number
from bioplastic.dale import INTERNEURONS
from bioplastic.inhibition import INTERNEURON_MARK
from bioplastic.optim import BioRule

__all__ = [
    "EnforcedAdam", "OPTIMIZER_NAMES", "PEER_NAMES", "SparsePeer", "interneurons_for",
    "interneurons_on_purpose", "make_optimizer", "optimizer_options",
]  # fmt: skip


class EnforcedAdam(torch.optim.Adam):
    """Adam with the properties *enforced*: sign projection, L1 shrinkage, magnitude pruning.

    The "explicit enforcement" baseline: after every Adam step, each synapse (``dim >= 2``) is
    projected onto its presynaptic unit's sign (a weight that crossed zero is set to 0: Dale's
    law by clamping), shrunk towards 0 by ``lr * l1`` (the proximal step of an L1 penalty), and
    every ``prune_every`` steps the weakest present synapses are pruned so that connectivity
    falls by ``prune_rate`` (relative) per event until ``target_connectivity``; pruned
    synapses stay at 0 (a mask). Compare with :class:`BioRule`, where these properties are
    meant to emerge from the update.
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        *,
        l1: float = 1e-4,
        target_connectivity: float = 0.3,
        prune_every: int = 50,
        prune_rate: float = 0.2,
        **adam_kwargs,
    ):
        check_number("l1", l1, 0.0, math.inf, hi_open=True)
        check_number("target_connectivity", target_connectivity, 0.0, 1.0, lo_open=True)
        if not isinstance(prune_every, int) or isinstance(prune_every, bool) or prune_every < 1:
            raise ValueError(f"prune_every must be an int >= 1, got {prune_every!r}")
        check_number("prune_rate", prune_rate, 0.0, 1.0, hi_open=True)
        self.l1 = l1
        self.target_connectivity = target_connectivity
        self.prune_every = prune_every
        self.prune_rate = prune_rate
        self._enforce_steps = 0
        super().__init__(params, lr=lr, **adam_kwargs)

    @torch.no_grad()
    def step(self, closure=None):
        loss = super().step(closure)
        self._enforce_steps += 1
        prune_now = self._enforce_steps % self.prune_every == 0
        for group in self.param_groups:
            for p in group["params"]:
                # Adam skipped it (no gradient, e.g. another task's head); state made here
                # before Adam's own would make Adam think it had initialised it.
                if p.dim() < 2 or p.grad is None:
                    continue
                state = self.state[p]
                if "enforce_sign" not in state:
                    sign = getattr(p, "dale_sign", None)
                    if sign is None or sign.numel() != p.shape[1]:
                        votes = torch.sign(p).sum(dim=[d for d in range(p.dim()) if d != 1])
                        sign = torch.where(votes < 0, -1.0, 1.0)
                    shape = [1] * p.dim()
                    shape[1] = -1
                    state["enforce_sign"] = sign.to(p.device, p.dtype).reshape(shape).clone()
                    state["enforce_mask"] = p != 0
                s = state["enforce_sign"]
                mag = (p * s).clamp_(min=0)  # sign projection
                mag.sub_(group["lr"] * self.l1).clamp_(min=0)  # L1 proximal step
                mask = state["enforce_mask"]
                if prune_now:
                    mask &= mag > 0
                    n = int(mask.sum())
                    keep = max(
                        math.ceil(self.target_connectivity * p.numel()),
                        math.ceil(n * (1 - self.prune_rate)),
                    )
                    if keep < n:
                        score = mag.masked_fill(~mask, -1.0).reshape(-1)
                        idx = torch.topk(score, keep, sorted=False).indices
                        mask.zero_()
                        mask.view(-1)[idx] = True
                p.copy_(mag * s * mask)
        return loss

    def state_dict(self) -> dict[str, Any]:
        """Adam's state plus the enforcement's step counter (it times the pruning)."""
        state = super().state_dict()
        state["enforced"] = {"steps": self._enforce_steps}
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output exactly: ``Optimizer.load_state_dict`` casts the
        boolean pruning masks to the parameters' float dtype; they come back boolean."""
        state_dict = dict(state_dict)
        enforced = state_dict.pop("enforced", None)
        masks = {
            idx: st["enforce_mask"]
            for idx, st in state_dict["state"].items()
            if isinstance(st, dict) and "enforce_mask" in st
        }
        super().load_state_dict(state_dict)
        params = [p for group in self.param_groups for p in group["params"]]
        for idx, mask in masks.items():
            p = params[idx]
            self.state[p]["enforce_mask"] = mask.to(device=p.device, dtype=torch.bool).clone()
        if enforced is not None:
            self._enforce_steps = int(enforced["steps"])


# Defaults per name: the first try of a user must work.
_OPTIMIZER_DEFAULTS: dict[str, dict[str, Any]] = {
    "bio": {},
    "eg": dict(
        lr=1.0,
        normalize=False,
        fan_in_exponent=0.0,
        cost=0.0,
        warmup=0,
        budget_rate=0.0,
        decay=0.0,
        noise=0.0,
        noise_halflife=0.0,
        max_step=None,
        prune_threshold=0.0,
        homeostasis=False,
        grow_every=0,
        momentum=0.0,
        saturation=0.0,
    ),  # fmt: skip
    "sgd": dict(lr=0.05, momentum=0.9),
    "adam": dict(lr=1e-3),
    "enforced": dict(lr=1e-3),
}
OPTIMIZER_NAMES = tuple(_OPTIMIZER_DEFAULTS)


def interneurons_for(rule: str) -> float:
    """BioMLP's ``interneurons`` for a network that ``rule`` trains: the default
    (:data:`bioplastic.dale.INTERNEURONS`) for ``bio``, whose homeostasis holds the
    interneurons' totals and each unit's E/I balance, and 0 (the plain network) for the other
    rules, which have no homeostasis: from an inhibited network's Dale init of two or more
    hidden layers Adam and SGD fail in some seeds (``benchmarks/results/interneurons.md``; EG
    and enforcement lost accuracy too in a first run that gave it to them), and on the plain
    one they do as well or better."""
    if rule not in _OPTIMIZER_DEFAULTS:
        raise ValueError(f"unknown optimizer {rule!r}; choose one of {', '.join(OPTIMIZER_NAMES)}")
    return INTERNEURONS if rule == "bio" else 0.0


@contextlib.contextmanager
def interneurons_on_purpose() -> Iterator[None]:
    """Silence :func:`make_optimizer`'s warning about interneurons within the block, for code
    that trains another rule on an inhibited network on purpose (to measure it, or to compare
    rules on one network); forked worker processes started within it inherit this."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "make_optimizer.*interneurons", UserWarning)
        yield


def _tensors(params: list) -> list:
    """The tensors of ``params`` (tensors, or param group dicts)."""
    return [t for p in params for t in (p["params"] if isinstance(p, dict) else [p])]


def optimizer_options(name: str) -> tuple[str, ...]:
    """The keyword arguments :func:`make_optimizer` accepts for ``name`` (sorted)."""
    if name not in _OPTIMIZER_DEFAULTS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZER_NAMES)}")
    cls = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "enforced": EnforcedAdam}
    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    names = {
        p.name
        for p in inspect.signature(cls.get(name, BioRule)).parameters.values()
        if p.kind in keyword and p.name != "params"
    }
    if name == "enforced":  # EnforcedAdam passes the rest to Adam
        names |= set(optimizer_options("adam"))
    return tuple(sorted(names | ({"other_weight_decay"} if name == "eg" else set())))


def make_optimizer(name: str, params, **kwargs) -> Optimizer:
    """Build an optimizer by name: ``bio``, ``eg``, ``sgd``, ``adam`` or ``enforced``.

    ``eg`` is textbook exponentiated gradient on the same sign-fixed parameterisation
    (``w <- w * exp(-lr * sign(w) * (g + weight_decay * sign(w)))``): :class:`BioRule` without
    homeostasis, noise, clipping, elimination or growth, plasticity 1 and momentum 0 unless
    given. For ``eg``, ``weight_decay`` is the EG decay on synapses (it is ``decay``);
    ``other_weight_decay`` is the L2 decay of non-synapse parameters. Keyword arguments
    override the defaults of each name.

    Warns when a rule other than ``bio`` gets interneurons (BioMLP's default network): they need
    bio's homeostasis (see :func:`interneurons_for`). An option the rule does not take is
    refused with a ValueError listing the ones it does (:func:`optimizer_options`).
    """
    unknown = sorted(set(kwargs) - set(optimizer_options(name)))
    if unknown:
        raise ValueError(
            f"{name} takes no option {', '.join(unknown)}; its options: "
            f"{', '.join(optimizer_options(name))}"
        )
    params = list(params)
    if name != "bio" and any(getattr(p, INTERNEURON_MARK, False) for p in _tensors(params)):
        warnings.warn(
            f"make_optimizer({name!r}): the model has interneurons (BioMLP's default), which "
            f"need bio's homeostasis; {name} learns worse or fails from this init. Build the model "
            f"with interneurons=bioplastic.baselines.interneurons_for({name!r}) (0)",
            UserWarning,
            stacklevel=2,
        )
    options = {**_OPTIMIZER_DEFAULTS[name], **kwargs}
    if name in ("bio", "eg"):
        if name == "eg":
            options["decay"] = options.pop("weight_decay", options.get("decay", 0.0))
            if "other_weight_decay" in options:
                options["weight_decay"] = options.pop("other_weight_decay")
        return BioRule(params, **options)
    if name == "sgd":
        return torch.optim.SGD(params, **options)
    if name == "adam":
        return torch.optim.Adam(params, **options)
    return EnforcedAdam(params, **options)


# --------------------------------------------------------------------------------------------
# published peers of sparse, sign-constrained training (optional extra ``peers``)
# --------------------------------------------------------------------------------------------

PEER_NAMES = ("deepr", "softdeepr", "rigl")


class SparsePeer:
    """A published sparse-training method driven like an optimizer.

    ``zero_grad()``, ``step()`` as usual; ``finish()`` once after training returns the model to
    a plain ``nn.Module`` whose zero weights are the absent synapses (for evaluation and probes).

    * ``deepr``: DEEP R (Bellec et al. 2018, ``deep_rewire.DEEPR``): each synapse has a fixed
      sign and a parameter ``theta``; it is present while ``theta > 0``, Langevin updates move
      it, and a dormant synapse is revived at random whenever one dies so that exactly
      ``connectivity`` of the synapses are present. Signs are kept from the model's weights
      (``keep_signs=True``), biases get plain SGD; lr 0.05, l1 1e-4 (the package's defaults).
    * ``softdeepr``: Soft-DEEP R (same paper, ``deep_rewire.SoftDEEPR``): no hard budget, so the
      connectivity it reaches is its own (``connectivity`` is ignored); lr 0.05, l1 1e-5.
    * ``rigl``: RigL (Evci et al. 2020, ``rigl_torch.RigL.RigLScheduler``) around Adam (lr 1e-3):
      magnitude drop and gradient regrowth every 100 steps until 75% of training. rigl-torch
      keeps the first layer dense and, by default, every Linear layer dense too (so an MLP
      stayed at connectivity 1.0): here Linear layers are included and the other layers'
      density is solved so that the whole model's connectivity is ``connectivity``.

    Requires ``pip install 'bioplastic[peers]'`` (deep-rewire 1.0.5, rigl-torch 0.5.2).
    """

    def __init__(
        self, name: str, model: nn.Module, connectivity: float = 0.25, total_steps: int = 1000
    ):
        if name not in PEER_NAMES:
            raise ValueError(f"unknown peer {name!r}; choose one of {', '.join(PEER_NAMES)}")
        check_number("connectivity", connectivity, 0.0, 1.0, lo_open=True)
        if not isinstance(total_steps, int) or isinstance(total_steps, bool) or total_steps < 1:
            raise ValueError(f"total_steps must be an int >= 1, got {total_steps!r}")
        self.name = name
        self.model = model
        self.scheduler = None
        self._converted = name in ("deepr", "softdeepr")
        if self._converted:
            self.optimizers = self._rewire(name, model, connectivity)
        else:
            self.optimizers = self._rigl(model, connectivity, total_steps)

    @staticmethod
    def _rewire(name: str, model: nn.Module, connectivity: float) -> list[Optimizer]:
        from deep_rewire import DEEPR, SoftDEEPR, convert

        rewired, other = (list(group) for group in convert(model, keep_signs=True))
        if name == "deepr":
            n = sum(p.numel() for p in rewired)
            main: Optimizer = DEEPR(rewired, nc=max(1, round(connectivity * n)), lr=0.05, l1=1e-4)
        else:
            main = SoftDEEPR(rewired, lr=0.05, l1=1e-5)
        return [main] + ([torch.optim.SGD(other, lr=0.05)] if other else [])

    def _rigl(self, model: nn.Module, connectivity: float, total_steps: int) -> list[Optimizer]:
        from rigl_torch.RigL import RigLScheduler
        from rigl_torch.util import get_W

        sizes = [w.numel() for w in get_W(model)]
        total, first = sum(sizes), sizes[0] if len(sizes) > 1 else 0
        density = (connectivity * total - first) / max(total - first, 1)
        if not 0 < density <= 1:
            raise ValueError(
                f"rigl keeps the first layer dense ({first} of {total} synapses): whole-model "
                f"connectivity {connectivity:.3f} cannot be reached"
            )
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        self.scheduler = RigLScheduler(
            model, optimizer, dense_allocation=density, T_end=int(0.75 * total_steps),
            delta=100, ignore_linear_layers=False,
        )  # fmt: skip
        return [optimizer]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        # RigL's scheduler returns False on the steps where it rewires instead of stepping.
        if self.scheduler is None or self.scheduler():
            for optimizer in self.optimizers:
                optimizer.step()

    def finish(self) -> nn.Module:
        """Return the model with plain weights (DEEP R's parameterisation folded back)."""
        if self._converted:
            from deep_rewire import reconvert

            reconvert(self.model)
            self._converted = False
        return self.model
