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
synapse by construction.
"""

from __future__ import annotations

import math

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
    :func:`bioplastic.functional.bio_update`: synapses (``dim >= 2``) change multiplicatively
    with a fixed sign, ``w <- w * exp(clip(-lr * sign(w) * g, +-max_step))``, so no weight
    changes sign and absent synapses stay absent during adaptation; biases take
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

    Reference: Finn et al. 2017, "Model-Agnostic Meta-Learning for Fast Adaptation of Deep
    Networks"; Cornford et al. 2024, "Brain-like learning with exponentiated gradients".

    Example::

        meta = BioMAML(bioplastic.dalify(net), lr=1.0, other_lr=0.1)
        outer = bioplastic.make_optimizer("bio", meta.parameters())  # keeps Dale's law
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
        bio_update(self.module, self.lr, gradients, self.max_step, self.other_lr)

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
        return BioMAML(
            clone_module(self.module),
            lr=self.lr,
            first_order=self.first_order if first_order is None else first_order,
            allow_unused=self.allow_unused if allow_unused is None else allow_unused,
            allow_nograd=self.allow_nograd if allow_nograd is None else allow_nograd,
            max_step=self.max_step,
            other_lr=self.other_lr,
        )
