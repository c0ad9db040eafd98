"""``BioMetaSGD``: Meta-SGD whose inner step is the bio rule, with a learned rate per synapse.

learn2learn's ``MetaSGD`` is MAML with one learnable inner learning rate per parameter entry
(Li et al. 2017). :class:`BioMetaSGD` is the same on top of :class:`BioMAML`: each synapse has
its own log-domain plasticity rate (a tensor shaped like the weight, passed to
:func:`bioplastic.functional.bio_update` as a tensor ``lr``), each bias its own additive rate.
The rates are meta-learned with the weights.

Which outer optimizer. The rates are not synapses: they must not be Dale-typed, rescaled by
homeostasis or eliminated. :meth:`BioMetaSGD.param_groups` returns the weights as one group and
the rates as a second group with ``synapse=False``, so that :class:`bioplastic.BioRule` updates
the weights with the bio rule and the rates additively (its ``other`` update, Adam by default),
as learn2learn users update MetaSGD's rates with Adam.
"""

from __future__ import annotations

import torch
from learn2learn.utils import clone_module
from torch import Tensor, nn

from strategies.fewshot.maml import BioMAML

__all__ = ["BioMetaSGD"]


class BioMetaSGD(BioMAML):
    """Meta-SGD with the bio rule as the inner update: a learnable rate per parameter entry.

    The same arguments as :class:`BioMAML`; ``lr`` and ``other_lr`` initialise the rates of the
    synapses and of the other parameters. ``lrs`` (internal, used by :meth:`clone`) are the
    rates to use instead.

    Reference: Li et al. 2017, "Meta-SGD: Learning to Learn Quickly for Few-Shot Learning";
    learn2learn's ``MetaSGD``.

    Example::

        meta = BioMetaSGD(bioplastic.dalify(net), lr=0.3, other_lr=0.4)
        outer = bioplastic.make_optimizer("bio", meta.param_groups(), warmup=0)
        # (make_maml(net, "bio") in bioplastic.experiments.metatrain builds both with the
        # settings of our results: no outer warm-up, cost or elimination)
        learner = meta.clone()
        learner.adapt(loss_fn(learner(support_x), support_y))
        loss_fn(learner(query_x), query_y).backward()
        outer.step(); outer.zero_grad()
    """

    def __init__(
        self, model: nn.Module, lr: float, *args, lrs: list[Tensor] | None = None, **kwargs
    ) -> None:
        super().__init__(model, lr, *args, **kwargs)
        if lrs is None:
            other = lr if self.other_lr is None else self.other_lr
            lrs = nn.ParameterList(
                nn.Parameter(torch.full_like(p, lr if p.dim() >= 2 else other).detach())
                for p in model.parameters()
            )
        elif len(lrs) != len(list(model.parameters())):
            raise ValueError(f"lrs has {len(lrs)} entries, the model parameters do not match")
        self.lrs = lrs

    def _rates(self) -> list[Tensor]:
        return list(self.lrs)

    def param_groups(self) -> list[dict]:
        """Param groups for the outer optimizer: the model's parameters, then the rates with
        ``synapse=False`` (updated additively by :class:`bioplastic.BioRule`)."""
        return [
            {"params": list(self.module.parameters())},
            {"params": list(self.lrs), "synapse": False},
        ]

    def clone(
        self,
        first_order: bool | None = None,
        allow_unused: bool | None = None,
        allow_nograd: bool | None = None,
    ) -> BioMetaSGD:
        """A copy whose parameters and rates are ``torch.clone``-d (the graph to them is kept)."""
        self._check_outer_signs()
        return BioMetaSGD(
            clone_module(self.module),
            lrs=[r.clone() for r in self.lrs],
            **self._clone_settings(first_order, allow_unused, allow_nograd),
        )
