"""Dale's law for any model: presynaptic types, lognormal initialisation, Dale layers.

Convention used across bioplastic: a *synaptic layer* is an ``nn.Linear`` or a convolution;
its presynaptic units are dimension 1 of the weight (input features / input channels). After
:func:`dalify` every synaptic layer has a buffer ``dale_sign`` (shape ``[weight.shape[1]]``,
+1 excitatory, -1 inhibitory) and its weight carries the same tensor as ``weight.dale_sign``,
where :class:`bioplastic.BioRule` finds it.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from bioplastic._checks import check_fraction
from bioplastic.probes import synaptic_layers

__all__ = [
    "BioConvNet",
    "BioMLP",
    "DaleConv2d",
    "DaleLinear",
    "OnOffSplit",
    "dale_init_",
    "dalify",
    "on_off_sign",
]


def dale_init_(
    weight: Tensor,
    dale_sign: Tensor,
    sigma: float = 0.5,
    gain: float = math.sqrt(2.0),
    connectivity: float = 1.0,
    balance: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Re-initialise ``weight`` in place as ``dale_sign[j] * m`` with lognormal ``m``.

    Magnitudes are ``m = a_j * exp(sigma * xi)``, ``xi ~ N(0, 1)``. With ``f`` the fraction of
    inhibitory presynaptic units and fan-in ``n`` (``weight[0].numel()``), excitatory medians are
    ``a_E = gain * exp(-sigma^2) / sqrt(n * c * (1 - f) / f)`` and inhibitory medians
    ``a_I = a_E * (1 - f) / f``, which gives zero mean input for independent inputs
    (E and I totals balance) and ``E[w^2] = gain^2 / (n * c)`` (Kaiming's variance for ``gain =
    sqrt(2)``) with ``c`` the ``connectivity``. With ``balance=True`` each postsynaptic unit's
    inhibitory magnitudes are then rescaled so that its E and I totals are exactly equal.
    With ``connectivity < 1`` a random subset of synapses starts absent (exactly 0). When all
    units share one type, ``a = gain * exp(-sigma^2) / sqrt(n * c)`` and no balancing applies.
    """
    if dale_sign.numel() != weight.shape[1]:
        raise ValueError(
            f"dale_sign has {dale_sign.numel()} entries, the weight has {weight.shape[1]} "
            "presynaptic units (dimension 1)"
        )
    check_fraction("connectivity", connectivity, lo_open=True, hi_open=False)
    fan_in = weight[0].numel()
    shape = [1] * weight.dim()
    shape[1] = -1
    s = dale_sign.to(weight.dtype).reshape(shape)
    n_inh = int((dale_sign < 0).sum())
    f = n_inh / dale_sign.numel()
    with torch.no_grad():
        xi = torch.randn(weight.shape, generator=generator, dtype=weight.dtype)
        base = gain * math.exp(-(sigma**2)) / math.sqrt(fan_in * connectivity)
        if 0 < f < 1:
            a_e = base / math.sqrt((1 - f) / f)
            a_i = a_e * (1 - f) / f
            median = torch.where(s > 0, a_e, a_i)
        else:
            median = torch.full_like(s, base)
        mag = median * torch.exp(sigma * xi)
        if connectivity < 1:
            keep = torch.rand(weight.shape, generator=generator, dtype=weight.dtype)
            mag = mag * (keep < connectivity)
        w = (s * mag).to(weight.device)
        if balance and 0 < f < 1:
            rows = w.reshape(w.shape[0], -1)
            exc = rows.clamp(min=0).sum(1, keepdim=True)
            inh = (-rows).clamp(min=0).sum(1, keepdim=True)
            scale = torch.where(inh > 0, exc / inh.clamp(min=1e-30), torch.ones_like(inh))
            rows.copy_(torch.where(rows < 0, rows * scale, rows))
        weight.copy_(w)
    return weight


def _assign_sign(module: nn.Module, sign: Tensor) -> None:
    if "dale_sign" in module._buffers:
        module.dale_sign.copy_(sign)
    else:
        module.register_buffer("dale_sign", sign)
    module.weight.dale_sign = module.dale_sign


def dalify(
    model: nn.Module,
    inh_fraction: float = 0.2,
    sigma: float = 0.5,
    gain: float = math.sqrt(2.0),
    connectivity: float = 1.0,
    balance: bool = True,
    seed: int | None = 0,
    skip: tuple[str, ...] = (),
) -> nn.Module:
    """Give every presynaptic unit of every Linear/Conv layer a type and re-initialise it.

    For each synaptic layer (except names in ``skip``), a random ``inh_fraction`` of its
    presynaptic units (dimension 1 of the weight) becomes inhibitory, the rest excitatory; a
    layer that already has a ``dale_sign`` buffer (e.g. :class:`DaleLinear`, or an ON/OFF input
    layer) keeps its types. Magnitudes are re-initialised lognormally by :func:`dale_init_`
    (fan-in-aware scale, E/I balance); biases are set to 0. Works on any model built from
    Linear/Conv layers, e.g. Avalanche's ``SimpleMLP``. Returns ``model`` (modified in place).
    """
    check_fraction("inh_fraction", inh_fraction, lo_open=False)
    if not (isinstance(sigma, (int, float)) and 0 < sigma < 5):
        raise ValueError(f"sigma must be in (0, 5), got {sigma!r}")
    if not (isinstance(connectivity, (int, float)) and 0 < connectivity <= 1):
        raise ValueError(f"connectivity must be in (0, 1], got {connectivity!r}")
    layers = synaptic_layers(model)
    if not layers:
        raise ValueError("dalify found no nn.Linear or convolution layer in the model")
    unknown = set(skip) - {name for name, _ in layers}
    if unknown:
        raise ValueError(f"skip names unknown layers: {sorted(unknown)}")
    gen = torch.Generator()
    gen.manual_seed(int(torch.randint(0, 2**62, ())) if seed is None else seed)
    for name, m in layers:
        if name in skip:
            continue
        n_pre = m.weight.shape[1]
        sign = getattr(m, "dale_sign", None)
        if sign is None:
            n_inh = round(inh_fraction * n_pre)
            sign = torch.ones(n_pre)
            sign[torch.randperm(n_pre, generator=gen)[:n_inh]] = -1.0
            sign = sign.to(device=m.weight.device, dtype=m.weight.dtype)
        _assign_sign(m, sign)
        dale_init_(m.weight, m.dale_sign, sigma, gain, connectivity, balance, gen)
        if m.bias is not None:
            with torch.no_grad():
                m.bias.zero_()
    return model


class DaleLinear(nn.Linear):
    """``nn.Linear`` whose presynaptic units have fixed types, initialised by ``dale_init_``."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        inh_fraction: float = 0.2,
        sigma: float = 0.5,
        connectivity: float = 1.0,
        dale_sign: Tensor | None = None,
        generator: torch.Generator | None = None,
    ):
        super().__init__(in_features, out_features, bias)
        check_fraction("inh_fraction", inh_fraction, lo_open=False)
        if dale_sign is None:
            dale_sign = torch.ones(in_features)
            n_inh = round(inh_fraction * in_features)
            dale_sign[torch.randperm(in_features, generator=generator)[:n_inh]] = -1.0
        _assign_sign(self, dale_sign.to(self.weight.dtype))
        dale_init_(self.weight, self.dale_sign, sigma, connectivity=connectivity,
                   generator=generator)  # fmt: skip
        if self.bias is not None:
            nn.init.zeros_(self.bias)


class DaleConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose input channels have fixed types, initialised by ``dale_init_``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        inh_fraction: float = 0.2,
        sigma: float = 0.5,
        dale_sign: Tensor | None = None,
        generator: torch.Generator | None = None,
        **conv_kwargs,
    ):
        super().__init__(in_channels, out_channels, kernel_size, **conv_kwargs)
        check_fraction("inh_fraction", inh_fraction, lo_open=False)
        if dale_sign is None:
            dale_sign = torch.ones(in_channels)
            n_inh = round(inh_fraction * in_channels)
            dale_sign[torch.randperm(in_channels, generator=generator)[:n_inh]] = -1.0
        _assign_sign(self, dale_sign.to(self.weight.dtype))
        dale_init_(self.weight, self.dale_sign, sigma, generator=generator)
        if self.bias is not None:
            nn.init.zeros_(self.bias)


class OnOffSplit(nn.Module):
    """Feed the input through an excitatory and an inhibitory copy: ``[x, x]`` along ``dim``.

    The next layer then sees each input feature twice, once through an excitatory and once
    through an inhibitory presynaptic unit (see :func:`on_off_sign`), so its filters can be
    signed while every afferent obeys Dale's law.
    """

    def __init__(self, dim: int = 1):
        super().__init__()
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([x, x], dim=self.dim)


def on_off_sign(n_inputs: int) -> Tensor:
    """Types for an :class:`OnOffSplit` input: ``n`` excitatory, then ``n`` inhibitory units."""
    return torch.cat([torch.ones(n_inputs), -torch.ones(n_inputs)])


class BioMLP(nn.Module):
    """A ReLU multilayer perceptron with Dale-typed layers.

    Args:
        in_features, hidden, out_features: layer sizes (``hidden`` a tuple of widths).
        inh_fraction: fraction of inhibitory units in every hidden layer.
        on_off: feed the input through :class:`OnOffSplit` so the first layer has one
            excitatory and one inhibitory afferent per input feature.
        flatten: flatten inputs of any shape to ``[batch, in_features]`` first.
    """

    def __init__(
        self,
        in_features: int = 64,
        hidden: tuple[int, ...] = (256,),
        out_features: int = 10,
        inh_fraction: float = 0.2,
        sigma: float = 0.5,
        on_off: bool = True,
        flatten: bool = True,
        seed: int | None = 0,
    ):
        super().__init__()
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if any(not isinstance(h, int) or h < 1 for h in hidden):
            raise ValueError(f"hidden must be a tuple of positive ints, got {hidden!r}")
        gen = torch.Generator()
        gen.manual_seed(int(torch.randint(0, 2**62, ())) if seed is None else seed)
        layers: list[nn.Module] = [nn.Flatten()] if flatten else []
        n_in = in_features
        first_sign = None
        if on_off:
            layers.append(OnOffSplit())
            n_in = 2 * in_features
            first_sign = on_off_sign(in_features)
        for i, width in enumerate(hidden):
            sign = first_sign if i == 0 else None
            layers += [DaleLinear(n_in, width, inh_fraction=inh_fraction, sigma=sigma,
                                  dale_sign=sign, generator=gen), nn.ReLU()]  # fmt: skip
            n_in = width
        sign = first_sign if not hidden else None
        layers.append(DaleLinear(n_in, out_features, inh_fraction=inh_fraction, sigma=sigma,
                                 dale_sign=sign, generator=gen))  # fmt: skip
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class BioConvNet(nn.Module):
    """A small Dale-typed conv net for 1x28x28 (or ``in_channels`` x H x W) images.

    Two 3x3 conv blocks (ReLU, 2x2 max-pool), global average pooling and a linear readout;
    ``on_off`` duplicates the input channels into excitatory and inhibitory copies.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_features: int = 10,
        channels: tuple[int, int] = (32, 64),
        inh_fraction: float = 0.2,
        on_off: bool = True,
        seed: int | None = 0,
    ):
        super().__init__()
        gen = torch.Generator()
        gen.manual_seed(int(torch.randint(0, 2**62, ())) if seed is None else seed)
        c_in = 2 * in_channels if on_off else in_channels
        first_sign = on_off_sign(in_channels) if on_off else None
        c1, c2 = channels
        self.features = nn.Sequential(
            *([OnOffSplit()] if on_off else []),
            DaleConv2d(c_in, c1, 3, padding=1, inh_fraction=inh_fraction, dale_sign=first_sign,
                       generator=gen),
            nn.ReLU(),
            nn.MaxPool2d(2),
            DaleConv2d(c1, c2, 3, padding=1, inh_fraction=inh_fraction, generator=gen),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )  # fmt: skip
        self.readout = DaleLinear(c2, out_features, inh_fraction=inh_fraction, generator=gen)

    def forward(self, x: Tensor) -> Tensor:
        return self.readout(self.features(x))
