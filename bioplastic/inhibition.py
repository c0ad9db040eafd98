"""Feedforward inhibition: excitatory units and the interneurons that inhibit the next layer.

A Dale-typed layer whose inputs are all non-negative (ReLU units) gives every postsynaptic unit
the same sample-dependent shift (most of the pre-activation variance; see
``benchmarks/init_structure.py``). Here every input unit is excitatory and a few linear
inhibitory interneurons, each a weighted mean of the inputs, feed the layer too, so that the
shared drive is subtracted: the layer of Cornford et al. (2021, "Learning to live with Dale's
principle"). :class:`bioplastic.BioRule`'s homeostasis holds the interneurons' weight totals
and each unit's E/I balance while it learns (as far as its ``budget_rate`` lets the budgets
follow the weights). ``benchmarks/interneurons.py`` measures it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bioplastic._checks import check_int
from bioplastic.dale import DaleConv2d, DaleLinear

__all__ = [
    "ConvInterneurons", "InhibitedConv2d", "InhibitedLinear", "Interneurons",
    "is_interneuron_layer",
]  # fmt: skip

#: The attribute that marks an interneuron layer's weight (``make_optimizer`` warns when a rule
#: without homeostasis gets one).
INTERNEURON_MARK = "interneuron_weight"


def is_interneuron_layer(module: nn.Module) -> bool:
    """Whether ``module`` is a layer of interneurons (:class:`Interneurons`,
    :class:`ConvInterneurons`): its rows are weighted means, so it passes its inputs' scale on."""
    return isinstance(module, _WeightedMeans)


class _WeightedMeans:
    """Interneuron weights normalised to a total of 1 per interneuron (a weighted mean)."""

    weight: Tensor

    def __setstate__(self, state) -> None:  # a deep copy or unpickled copy keeps the mark
        super().__setstate__(state)
        setattr(self.weight, INTERNEURON_MARK, True)

    @torch.no_grad()
    def normalise_rows_(self) -> None:
        totals = self.weight.abs().flatten(1).sum(1)
        totals = totals.reshape(-1, *[1] * (self.weight.dim() - 1))
        self.weight.div_(totals.clamp(min=torch.finfo(self.weight.dtype).tiny))


class Interneurons(_WeightedMeans, DaleLinear):
    """Linear inhibitory interneurons: each one's weights from its (excitatory) inputs sum to 1.

    An interneuron's activity is then a weighted mean of its inputs, the drive that all the
    layer's principal cells share. Rows are rescaled to a total of 1 after every
    (re-)initialisation (:func:`dalify` too). During training :class:`bioplastic.BioRule`'s
    homeostasis holds each total near its budget, and the budget follows the total at
    ``budget_rate``: with the default 0.01 they stay near 1 (within 5% over 8 epochs of digits,
    ``tests/test_interneurons.py``); the streams' 0.1 lets them drift by up to a third within an
    experience. Without the rescaling (the lognormal Dale init gives row totals of about
    ``sqrt(fan-in)``) the inhibition would start that many times too strong.
    """

    def __init__(self, in_features: int, n: int, sigma: float = 0.5, generator=None):
        check_int("in_features", in_features, 1, None)
        check_int("n (interneurons)", n, 1, None)
        DaleLinear.__init__(self, in_features, n, bias=False, sigma=sigma,
                            dale_sign=torch.ones(in_features), generator=generator)  # fmt: skip
        self.normalise_rows_()
        setattr(self.weight, INTERNEURON_MARK, True)


class ConvInterneurons(_WeightedMeans, DaleConv2d):
    """:class:`Interneurons` of a conv layer: 1x1, so each interneuron channel is, at every
    location, a weighted mean of the input channels there."""

    def __init__(self, in_channels: int, n: int, sigma: float = 0.5, generator=None):
        check_int("in_channels", in_channels, 1, None)
        check_int("n (interneurons)", n, 1, None)
        DaleConv2d.__init__(self, in_channels, n, 1, sigma=sigma, bias=False,
                            dale_sign=torch.ones(in_channels), generator=generator)  # fmt: skip
        self.normalise_rows_()
        setattr(self.weight, INTERNEURON_MARK, True)


class InhibitedLinear(nn.Module):
    """Excitatory inputs with feedforward inhibition through ``interneurons`` interneurons.

    ``out = W_E h - W_I z + b`` with ``z = Interneurons(h)`` (linear, non-negative for
    non-negative ``h``): the layer of Cornford et al. (2021, "Learning to live with Dale's
    principle"), in which inhibition cancels the input's common mode. Both weights are
    Dale-typed :class:`DaleLinear` layers: ``principal`` reads ``cat(h, z)`` with types ``+1``
    for ``h`` and ``-1`` for ``z``; every input unit is excitatory onto both.
    """

    def __init__(
        self, in_features: int, out_features: int, interneurons: int, sigma: float = 0.5,
        generator: torch.Generator | None = None,
    ):  # fmt: skip
        super().__init__()
        check_int("interneurons", interneurons, 1, None)
        self.interneurons = Interneurons(in_features, interneurons, sigma, generator)
        sign = torch.cat([torch.ones(in_features), -torch.ones(interneurons)])
        self.principal = DaleLinear(in_features + interneurons, out_features, sigma=sigma,
                                    dale_sign=sign, generator=generator)  # fmt: skip

    def principal_inputs(self, h: Tensor) -> Tensor:
        """What ``principal`` reads: ``h`` (excitatory) and the interneurons' activity."""
        return torch.cat([h, self.interneurons(h)], dim=-1)

    def forward(self, h: Tensor) -> Tensor:
        return self.principal(self.principal_inputs(h))

    def extra_repr(self) -> str:
        n = self.interneurons.out_features
        return f"principal reads {self.interneurons.in_features} inputs + {n} interneurons"


class InhibitedConv2d(nn.Module):
    """:class:`InhibitedLinear` for convolutions: ``principal`` (a :class:`DaleConv2d` with
    ``conv_kwargs``) reads the input channels (excitatory) and ``interneurons`` 1x1
    interneuron channels (inhibitory), ``cat``-ed along the channel dimension."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
        interneurons: int, sigma: float = 0.5, generator: torch.Generator | None = None,
        **conv_kwargs,
    ):  # fmt: skip
        super().__init__()
        check_int("interneurons", interneurons, 1, None)
        self.interneurons = ConvInterneurons(in_channels, interneurons, sigma, generator)
        sign = torch.cat([torch.ones(in_channels), -torch.ones(interneurons)])
        self.principal = DaleConv2d(in_channels + interneurons, out_channels, kernel_size,
                                    sigma=sigma, dale_sign=sign, generator=generator,
                                    **conv_kwargs)  # fmt: skip

    def forward(self, h: Tensor) -> Tensor:
        return self.principal(torch.cat([h, self.interneurons(h)], dim=1))
