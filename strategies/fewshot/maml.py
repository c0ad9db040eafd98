"""``BioMAML``: MAML whose inner (fast-adaptation) step is the bio rule.

The same thin-wrapper design as learn2learn's ``MAML``: :meth:`BioMAML.clone` copies the wrapped
model with ``torch.clone`` (the graph to the meta-parameters is kept), :meth:`BioMAML.adapt`
takes one differentiable step on a loss, and the step itself is a pure function,
:func:`bioplastic.functional.bio_update`, which the optimizer :class:`bioplastic.BioRule`
shares (one place for the equations).

Which outer optimizer. The meta-parameters must keep Dale's law too. An additive outer
optimizer (Adam, SGD) adds ``-lr * m_hat / sqrt(v_hat)`` to each weight: any weight smaller
than the step crosses zero and changes sign, and an absent synapse (``w == 0``) becomes present
with either sign. Adam does so fastest, because its normalised step has the same size
(about ``lr``) for every weight however small it is. Second-order MAML makes this certain
rather than likely: ``d/dw [w * exp(step)] = exp(step) != 0`` even at ``w == 0``, so absent
synapses receive meta-gradients. Use :class:`bioplastic.BioRule` (or ``make_optimizer("eg")``)
as the outer optimizer: its update is multiplicative, so it keeps every sign and every absent
synapse by construction. :meth:`BioMAML.clone` checks this: when synapses of the wrapped
model have changed sign since the previous ``clone()``, it warns once (``RuntimeWarning``).
"""

from __future__ import annotations

import math
import warnings

import torch
from learn2learn.algorithms.base_learner import BaseLearner
from learn2learn.utils import clone_module
from torch import Tensor, nn

from bioplastic._checks import check_bool
from bioplastic.functional import bio_update

__all__ = ["BioMAML"]


def _check_positive(name: str, value: float | None, allow_none: bool, allow_zero: bool) -> None:
    if value is None and allow_none:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value >= 0 if allow_zero else value > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        none = " or None" if allow_none else ""
        raise ValueError(f"{name} must be a finite number {bound}{none}, got {value!r}")


class BioMAML(BaseLearner):
    """Model-agnostic meta-learning with the bio rule as the inner update.

    Wraps ``model`` and adds :meth:`clone` and :meth:`adapt`, exactly like
    ``learn2learn.algorithms.MAML``, except that one adaptation step is
    :func:`bioplastic.functional.bio_update`: synapses (``dim >= 2``, fan-in ``n``) change
    multiplicatively with a fixed sign, ``w <- w * exp(clip(-lr * n**-0.5 * sign(w) * c * g,
    +-max_step))`` with ``c`` one over the RMS of all the model's synapse gradients of the step
    (``normalize="model"``), so no weight changes sign and absent synapses stay absent during
    adaptation; biases take
    ``b <- b - other_lr * g``. With ``first_order=False`` the meta-gradient flows through the
    step (second order); with ``True`` it does not (first-order MAML).

    Args:
        model: the module to meta-learn, ideally Dale-typed (:func:`bioplastic.dalify`).
        lr: plasticity rate of the inner log-domain step (> 0).
        first_order: use the first-order approximation.
        allow_unused: allow parameters that do not affect the loss (default: ``allow_nograd``).
        allow_nograd: adapt only parameters with ``requires_grad``; the others are left as is.
        max_step: bound on ``|dlog m|`` per inner step (> 0) or ``None``; it keeps a large
            gradient of an untrained model from exploding a magnitude within one step.
        other_lr: inner learning rate of non-synapse parameters (>= 0; ``None``: ``lr``).
        normalize: ``"model"`` (default) divides every synapse's gradient by one number, the
            RMS over all the model's synapse gradients of this step: free of the loss scale,
            and it keeps how much larger one unit's or layer's gradient is than another's,
            which one adaptation step needs. ``True`` is BioRule's per-unit normalisation
            (:func:`~bioplastic.functional.bio_update`), which gives every unit the same step
            whatever its share of the loss: in learn2learn's loop on glyphs (5-way,
            ``benchmarks/fewshot_l2l.py``) BioMAML reached 0.649 / 0.776 (1- / 5-shot) with it
            against 0.816 / 0.897 now. ``False``: the raw ``lr * sign(w) * g``, whose size
            relative to the weights depends on the loss, the input scale and the layer.
        fan_in_exponent: the rate is ``lr * n ** -fan_in_exponent`` (BioRule's scaling).

    Reference: Finn et al. 2017, "Model-Agnostic Meta-Learning for Fast Adaptation of Deep
    Networks"; Cornford et al. 2024, "Brain-like learning with exponentiated gradients".

    Example::

        meta = BioMAML(bioplastic.dalify(net), lr=0.3, other_lr=0.4)
        outer = bioplastic.make_optimizer("bio", meta.parameters(), warmup=0)  # keeps Dale's law
        # (make_maml(net, "bio") in bioplastic.experiments.metatrain builds both with the
        # settings of our results: no outer warm-up, cost, saturation or elimination)
        learner = meta.clone()
        learner.adapt(loss_fn(learner(support_x), support_y))
        loss_fn(learner(query_x), query_y).backward()
        outer.step(); outer.zero_grad()
    """

    def __init__(
        self,
        model: nn.Module,
        lr: float,
        first_order: bool = False,
        allow_unused: bool | None = None,
        allow_nograd: bool = False,
        max_step: float | None = 0.5,
        other_lr: float | None = None,
        normalize: bool | str = "model",
        fan_in_exponent: float = 0.5,
        _check_signs: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise ValueError(f"model must be an nn.Module, got {type(model).__name__}")
        _check_positive("lr", lr, allow_none=False, allow_zero=False)
        _check_positive("max_step", max_step, allow_none=True, allow_zero=False)
        _check_positive("other_lr", other_lr, allow_none=True, allow_zero=True)
        # Booleans must be bools: bool("no") is True, the opposite of what was meant.
        check_bool("first_order", first_order)
        check_bool("allow_nograd", allow_nograd)
        if allow_unused is not None:
            check_bool("allow_unused (or None)", allow_unused)
        self.module = model
        self.lr = lr
        self.first_order = first_order
        self.allow_nograd = allow_nograd
        self.allow_unused = self.allow_nograd if allow_unused is None else allow_unused
        self.max_step = max_step
        self.other_lr = other_lr
        if normalize not in (True, False, "model") or not isinstance(normalize, (bool, str)):
            raise ValueError(f"normalize must be True, False or 'model', got {normalize!r}")
        self.normalize = normalize
        self.fan_in_exponent = fan_in_exponent
        # signs at the last clone(): a flip since then is the outer optimizer's doing
        self._signs: list[Tensor] | None = None if _check_signs else []
        self._warned_flips = False

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def adapt(
        self,
        loss: Tensor,
        first_order: bool | None = None,
        allow_unused: bool | None = None,
        allow_nograd: bool | None = None,
    ) -> None:
        """Take one bio step on ``loss`` and re-route the clone's parameters to the result.

        Args:
            loss: the adaptation (support) loss, a scalar.
            first_order, allow_unused, allow_nograd: override the wrapper's settings.

        Raises:
            ValueError: if a parameter does not affect ``loss`` and unused parameters are not
                allowed, or no parameter requires a gradient.
        """
        for name, value in (
            ("first_order", first_order),
            ("allow_unused", allow_unused),
            ("allow_nograd", allow_nograd),
        ):
            if value is not None:
                check_bool(f"{name} (or None)", value)
        first_order = self.first_order if first_order is None else first_order
        allow_unused = self.allow_unused if allow_unused is None else allow_unused
        allow_nograd = self.allow_nograd if allow_nograd is None else allow_nograd
        second_order = not first_order
        params = list(self.module.parameters())
        if allow_nograd:
            diff = [p for p in params if p.requires_grad]
        else:
            diff = params
        if not diff:
            raise ValueError("no parameter of the model requires a gradient")
        try:
            grads = torch.autograd.grad(
                loss,
                diff,
                retain_graph=second_order,
                create_graph=second_order,
                allow_unused=allow_unused,
            )
        except RuntimeError as err:
            raise ValueError(
                f"BioMAML.adapt could not differentiate the loss ({err}); "
                "try allow_unused=True and/or allow_nograd=True"
            ) from err
        gradients: list[Tensor | None] = list(grads)
        if allow_nograd:
            it = iter(grads)
            gradients = [next(it) if p.requires_grad else None for p in params]
        rates, normalize = self._rates(), self.normalize
        if normalize == "model":
            rates, normalize = self._model_scaled(rates, params, gradients), False
        bio_update(self.module, rates, gradients, self.max_step, self.other_lr, normalize,
                   self.fan_in_exponent)  # fmt: skip

    def _rates(self) -> float | list[Tensor]:
        return self.lr

    def _model_scaled(self, rates, params: list[Tensor], grads: list[Tensor | None]) -> list:
        """Per-parameter rates with every synapse's divided by the RMS of all the finite
        synapse gradients (float64 inside; differentiable, as the per-unit scale is)."""
        synapse = [g for p, g in zip(params, grads, strict=True)
                   if g is not None and p.dim() >= 2 and bool(torch.isfinite(g).all())]  # fmt: skip
        other = self.lr if self.other_lr is None else self.other_lr
        if not synapse:
            return rates if isinstance(rates, list) else [
                self.lr if p.dim() >= 2 else other for p in params
            ]  # fmt: skip
        total = sum(g.double().square().sum() for g in synapse)
        scale = (total / sum(g.numel() for g in synapse) + 1e-16).rsqrt()
        each = rates if isinstance(rates, list) else [None] * len(params)
        return [
            (self.lr if r is None else r) * scale.to(p.dtype) if p.dim() >= 2
            else (other if r is None else r)
            for p, r in zip(params, each, strict=True)
        ]  # fmt: skip

    def _check_outer_signs(self) -> None:
        """Warn once if synapses changed sign since the last call (a non-sign-preserving outer
        optimizer, e.g. Adam: see the module docstring)."""
        if self._signs == [] or self._warned_flips:
            return
        with torch.no_grad():
            signs = [torch.sign(p).to(torch.int8) for p in self.module.parameters() if p.dim() >= 2]
            if self._signs is not None:
                flips = sum(int((a * b < 0).sum()) for a, b in zip(self._signs, signs, strict=True))
                if flips:
                    self._warned_flips = True
                    warnings.warn(
                        f"{type(self).__name__}: {flips} synapses changed sign since the last "
                        "clone(): the outer optimizer is not sign-preserving (Dale's law is "
                        "lost); use bioplastic.BioRule or make_optimizer('eg')",
                        RuntimeWarning,
                        stacklevel=3,
                    )
            self._signs = signs

    def clone(
        self,
        first_order: bool | None = None,
        allow_unused: bool | None = None,
        allow_nograd: bool | None = None,
    ) -> BioMAML:
        """A ``BioMAML``-wrapped copy whose parameters are ``torch.clone``-d from this one's.

        Gradients of losses computed with the clone flow back to this module's parameters
        (learn2learn's ``clone_module``).
        """
        self._check_outer_signs()
        settings = self._clone_settings(first_order, allow_unused, allow_nograd)
        return BioMAML(clone_module(self.module), **settings)

    def _clone_settings(
        self, first_order: bool | None, allow_unused: bool | None, allow_nograd: bool | None
    ) -> dict:
        """This learner's constructor arguments for a clone (``None``: keep this one's)."""
        return {
            "lr": self.lr,
            "first_order": self.first_order if first_order is None else first_order,
            "allow_unused": self.allow_unused if allow_unused is None else allow_unused,
            "allow_nograd": self.allow_nograd if allow_nograd is None else allow_nograd,
            "max_step": self.max_step,
            "other_lr": self.other_lr,
            "normalize": self.normalize,
            "fan_in_exponent": self.fan_in_exponent,
            "_check_signs": False,
        }
