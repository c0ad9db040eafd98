"""Dale's law for any model: presynaptic types, lognormal initialisation, Dale layers.

Convention used across bioplastic: a *synaptic layer* is an ``nn.Linear`` or a convolution;
its presynaptic units are dimension 1 of the weight (input features / input channels). After
:func:`dalify` every synaptic layer has a buffer ``dale_sign`` (shape ``[weight.shape[1]]``,
+1 excitatory, -1 inhibitory) and its weight carries the same tensor as ``weight.dale_sign``,
where :class:`bioplastic.BioRule` finds it.
"""

from __future__ import annotations

import inspect
import math
import warnings
from typing import Any

import torch
from torch import Tensor, nn

from bioplastic._checks import check_bool, check_choice, check_fraction, check_int, check_number
from bioplastic.probes import synaptic_layers

__all__ = [
    "INTERNEURONS",
    "BioConvNet",
    "BioMLP",
    "DaleConv2d",
    "DaleLinear",
    "OnOffSplit",
    "check_dalify_args",
    "dale_init_",
    "dalify",
    "looks_freshly_initialised",
    "on_off_sign",
    "shared_input_layers",
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
    _check_shape_args(sigma, gain, balance)
    fan_in = weight[0].numel()
    shape = [1] * weight.dim()
    shape[1] = -1
    # drawn on the CPU whatever the weight's device: the same weights on every device
    s = dale_sign.detach().to("cpu", weight.dtype).reshape(shape)
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


#: Largest seed: torch generators take a signed 64-bit seed.
_MAX_SEED = 2**63 - 1
_INITS = ("reinit", "keep")


def _check_shape_args(sigma: float, gain: float, balance: bool) -> None:
    check_number("sigma", sigma, 0.0, 5.0, lo_open=True, hi_open=True)
    check_number("gain", gain, 0.0, lo_open=True, hi_open=True)  # gain < 0 flips every sign
    check_bool("balance", balance)


def _check_dalify_args(
    model, inh_fraction, sigma, gain, connectivity, balance, seed, skip, init, example_input=None
):
    """Every argument of :func:`dalify`, before the model is touched; returns its layers."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be an nn.Module, got {type(model).__name__}")
    check_fraction("inh_fraction", inh_fraction, lo_open=False)
    check_fraction("connectivity", connectivity, lo_open=True, hi_open=False)
    _check_shape_args(sigma, gain, balance)
    if seed is not None:
        check_int("seed (or None)", seed, 0, _MAX_SEED)
    check_choice("init", init, _INITS)
    if example_input is not None and not isinstance(example_input, (Tensor, tuple)):
        raise ValueError(
            "example_input must be a tensor (or a tuple of forward arguments) or None, "
            f"got {type(example_input).__name__}"
        )
    if isinstance(skip, str) or not all(isinstance(n, str) for n in skip):
        raise ValueError(f"skip must be a tuple of layer names, got {skip!r}")
    layers = synaptic_layers(model)
    if not layers:
        raise ValueError("dalify found no nn.Linear or convolution layer in the model")
    unknown = set(skip) - {name for name, _ in layers}
    if unknown:
        raise ValueError(f"skip names unknown layers: {sorted(unknown)}")
    for name, m in layers:
        if name in skip:
            continue
        if m.weight.is_meta:
            raise ValueError(f"layer {name!r} is on the meta device: materialise it first")
        if m.weight.numel() == 0:
            raise ValueError(
                f"layer {name!r} has an empty weight {tuple(m.weight.shape)}: "
                "no synapse to give a type"
            )
    return layers


def check_dalify_args(model: nn.Module, **kwargs: Any) -> None:
    """Raise the ValueError :func:`dalify` would raise for these arguments, changing nothing."""
    params = inspect.signature(dalify).parameters
    unknown = sorted(set(kwargs) - set(params) | ({"model"} & set(kwargs)))
    if unknown:
        raise ValueError(f"unknown dalify arguments {unknown}; allowed: {sorted(params)[1:]}")
    args = {k: v.default for k, v in params.items() if k != "model"} | kwargs
    _check_dalify_args(model, **args)


def looks_freshly_initialised(model: nn.Module) -> bool:
    """Whether every synaptic layer still holds torch's default initialisation.

    torch initialises ``nn.Linear`` and convolutions uniformly in ``+-1/sqrt(fan_in)``; a
    trained (or otherwise initialised) model almost always has some weight beyond that bound.
    """
    for _, m in synaptic_layers(model):
        bound = 1.0 / math.sqrt(max(1, m.weight[0].numel()))
        if m.weight.numel() and float(m.weight.detach().abs().max()) > bound * (1 + 1e-6):
            return False
    return True


def shared_input_layers(model: nn.Module, example_input: Tensor | tuple) -> dict[str, str]:
    """Synaptic layers that read the very same tensor in a forward pass, and whom they follow.

    Runs ``model(example_input)`` once (``torch.no_grad()``, eval mode; every module's training
    flag is restored and the hooks removed) and returns ``{name: leader}`` for every synaptic
    layer whose input tensor an earlier layer (``leader``, the first reader) also read. In a
    ResNet the first block of a stage feeds its input ``x`` both to ``conv1`` and to the
    shortcut's 1x1 convolution: channel ``j`` of ``x`` is one presynaptic neuron with synapses
    in both layers, so under Dale's law both must give it the same type.
    """
    first_reader: dict[int, str] = {}
    inputs: list[Tensor] = []  # held so that no id is reused during the pass
    leaders: dict[str, str] = {}

    def make_hook(name: str):
        def hook(_module: nn.Module, args: tuple) -> None:
            if args and isinstance(args[0], Tensor):
                inputs.append(args[0])
                leader = first_reader.setdefault(id(args[0]), name)
                if leader != name:
                    leaders.setdefault(name, leader)

        return hook

    layers = synaptic_layers(model)
    training = [(m, m.training) for m in model.modules()]
    handles = [m.register_forward_pre_hook(make_hook(name)) for name, m in layers]
    try:
        model.eval()
        with torch.no_grad():
            args = example_input if isinstance(example_input, tuple) else (example_input,)
            model(*args)
    finally:
        for handle in handles:
            handle.remove()
        for m, flag in training:
            m.training = flag
    return leaders


def _keep_types(name: str, m: nn.Module) -> tuple[Tensor, int]:
    """Types by each presynaptic unit's majority sign (or its existing ``dale_sign``), and the
    weight with the minority entries removed (set to 0); returns the types and that count."""
    w = m.weight.detach()
    sign = getattr(m, "dale_sign", None)
    if sign is None:
        per_unit = w.transpose(0, 1).reshape(w.shape[1], -1)
        majority = (per_unit > 0).sum(1) >= (per_unit < 0).sum(1)
        sign = torch.where(majority, 1.0, -1.0).to(device=w.device, dtype=w.dtype)
    shape = [1] * w.dim()
    shape[1] = -1
    wrong = w * sign.reshape(shape) < 0
    with torch.no_grad():
        m.weight.masked_fill_(wrong, 0.0)
    return sign, int(wrong.sum())


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
    init: str = "reinit",
    example_input: Tensor | tuple | None = None,
) -> nn.Module:
    """Give every presynaptic unit of every Linear/Conv layer a type and (re-)initialise it.

    ``init="reinit"`` (the default, for a fresh model): for each synaptic layer (except names
    in ``skip``), a random ``inh_fraction`` of its presynaptic units (dimension 1 of the
    weight) becomes inhibitory, the rest excitatory; a layer that already has a ``dale_sign``
    buffer (e.g. :class:`DaleLinear`, or an ON/OFF input layer) keeps its types. Magnitudes
    are re-initialised lognormally by :func:`dale_init_` (fan-in-aware scale, E/I balance);
    biases are set to 0. A layer with so few presynaptic units that ``round(inh_fraction *
    n)`` is 0 (a 1-channel input conv) gets no inhibitory unit, with a warning: feed such an
    input through :class:`OnOffSplit` (``on_off=True`` in :class:`BioMLP`/:class:`BioConvNet`).

    ``init="keep"`` (for a trained model): each presynaptic unit takes the sign of the
    majority of its outgoing weights (or its existing ``dale_sign``); magnitudes and biases
    are kept and the minority entries, which would break Dale's law, are removed (set to 0),
    with a warning that says how many. ``inh_fraction``, ``sigma``, ``gain``,
    ``connectivity`` and ``balance`` are then unused (but still validated).

    ``example_input`` (a batch, or a tuple of forward arguments): run the model once and give
    layers that read the same tensor the same presynaptic types (see
    :func:`shared_input_layers`; e.g. a ResNet block's ``conv1`` and its 1x1 shortcut
    convolution), so that a unit feeding several layers has one type, as Dale's law means.
    Without it each layer draws its types independently. Only with ``init="reinit"``.

    Every argument is checked before the model is changed (ValueError naming it). Works on
    any model built from Linear/Conv layers, e.g. Avalanche's ``SimpleMLP``. Returns
    ``model`` (modified in place).
    """
    layers = _check_dalify_args(
        model, inh_fraction, sigma, gain, connectivity, balance, seed, skip, init, example_input
    )
    if example_input is not None and init == "keep":
        raise ValueError("example_input ties types of a fresh model: use it with init='reinit'")
    leaders = {} if example_input is None else shared_input_layers(model, example_input)
    if init == "keep":
        removed = total = 0
        for name, m in layers:
            if name not in skip:
                sign, n = _keep_types(name, m)
                _assign_sign(m, sign)
                removed, total = removed + n, total + m.weight.numel()
        if removed:
            warnings.warn(
                f"dalify(init='keep'): removed {removed} of {total} weights whose sign "
                "disagreed with their presynaptic unit's majority type",
                stacklevel=2,
            )
        return model
    gen = torch.Generator()
    gen.manual_seed(int(torch.randint(0, 2**62, ())) if seed is None else seed)
    by_name = dict(layers)
    # leaders first, so that a follower finds its leader's types whatever the module order
    for name, m in sorted(layers, key=lambda layer: layer[0] in leaders):
        if name in skip:
            continue
        n_pre = m.weight.shape[1]
        sign = getattr(m, "dale_sign", None)
        leader = by_name.get(leaders.get(name))
        if sign is None and leader is not None and hasattr(leader, "dale_sign"):
            sign = leader.dale_sign.detach().clone()
        if sign is None:
            n_inh = round(inh_fraction * n_pre)
            if n_inh == 0 and inh_fraction > 0:
                warnings.warn(
                    f"dalify: layer {name!r} has {n_pre} presynaptic unit(s), so "
                    f"round({inh_fraction} * {n_pre}) = 0 are inhibitory; feed its input "
                    "through OnOffSplit (on_off=True) to give it inhibitory afferents",
                    stacklevel=2,
                )
            sign = torch.ones(n_pre)
            sign[torch.randperm(n_pre, generator=gen)[:n_inh]] = -1.0
            sign = sign.to(device=m.weight.device, dtype=m.weight.dtype)
        _assign_sign(m, sign)
        dale_init_(m.weight, m.dale_sign, sigma, gain, connectivity, balance, gen)
        if hasattr(m, "normalise_rows_"):  # interneurons (bioplastic.inhibition)
            m.normalise_rows_()
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


#: BioMLP's feedforward inhibition: interneurons per layer after the first, as a fraction of
#: the layer's inputs (``benchmarks/interneurons.py`` measured it; 0 gives the plain Dale MLP).
INTERNEURONS = 0.1


class BioMLP(nn.Module):
    """A ReLU multilayer perceptron with Dale-typed layers.

    Args:
        in_features, hidden, out_features: layer sizes (``hidden`` a tuple of widths, or
            one int for one hidden layer).
        inh_fraction: fraction of inhibitory units in every hidden layer of the plain Dale MLP
            (``interneurons=0``; default 0.2). With interneurons every hidden unit is
            excitatory, so it types only the first layer's inputs without ``on_off``, and
            passing it with ``on_off`` is an error (it would do nothing).
        on_off: feed the input through :class:`OnOffSplit` so the first layer has one
            excitatory and one inhibitory afferent per input feature.
        flatten: flatten inputs of any shape to ``[batch, in_features]`` first.
        interneurons: feedforward inhibition (default :data:`INTERNEURONS`, 0.1): every hidden
            unit is excitatory and every layer after the first is an :class:`InhibitedLinear`
            fed by ``max(1, round(interneurons * width))`` interneurons, each a weighted mean of
            the layer's inputs. It removes the input shift that all units of a Dale layer
            share. 0 gives the plain Dale MLP instead: a fraction ``inh_fraction`` of every
            hidden layer's units inhibitory. The first layer reads the ON/OFF input either way.
            The interneurons need :class:`~bioplastic.BioRule`'s homeostasis: for another rule
            pass ``interneurons=bioplastic.baselines.interneurons_for(rule)`` (0), since from
            this init EG, SGD and Adam learn worse or fail. A state dict of one layout does not
            load into the other (the error says which to build).
    """

    def __init__(
        self,
        in_features: int = 64,
        hidden: tuple[int, ...] = (256,),
        out_features: int = 10,
        inh_fraction: float | None = None,
        sigma: float = 0.5,
        on_off: bool = True,
        flatten: bool = True,
        seed: int | None = 0,
        interneurons: float = INTERNEURONS,
    ):
        super().__init__()
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if isinstance(hidden, int) and not isinstance(hidden, bool):
            hidden = (hidden,)  # one hidden layer
        if isinstance(hidden, (str, bytes)) or not hasattr(hidden, "__iter__"):
            raise ValueError(f"hidden must be an int or a tuple of positive ints, got {hidden!r}")
        hidden = tuple(hidden)
        if any(not isinstance(h, int) or isinstance(h, bool) or h < 1 for h in hidden):
            raise ValueError(f"hidden must be a tuple of positive ints, got {hidden!r}")
        check_number("sigma", sigma, 0.0, 5.0, lo_open=True, hi_open=True)
        check_bool("on_off", on_off)
        check_bool("flatten", flatten)
        check_number("interneurons", interneurons, 0.0, 1.0)
        if inh_fraction is not None and interneurons and on_off:
            raise ValueError(
                f"inh_fraction={inh_fraction!r} has no effect with interneurons={interneurons!r} "
                "(every hidden unit is excitatory): pass interneurons=0 for the plain Dale MLP, "
                "or drop inh_fraction to keep the feedforward inhibition"
            )
        inh_fraction = 0.2 if inh_fraction is None else inh_fraction
        check_fraction("inh_fraction", inh_fraction, lo_open=False)
        if seed is not None:
            check_int("seed (or None)", seed, 0, _MAX_SEED)
        gen = torch.Generator()
        gen.manual_seed(int(torch.randint(0, 2**62, ())) if seed is None else seed)
        layers: list[nn.Module] = [nn.Flatten()] if flatten else []
        n_in = in_features
        first_sign = None
        if on_off:
            layers.append(OnOffSplit())
            n_in = 2 * in_features
            first_sign = on_off_sign(in_features)
        for i, n_out in enumerate((*hidden, out_features)):
            if i > 0 and interneurons:
                from bioplastic.inhibition import InhibitedLinear  # (it imports this module)

                k = max(1, round(interneurons * n_in))
                layers.append(InhibitedLinear(n_in, n_out, k, sigma=sigma, generator=gen))
            else:
                layers.append(DaleLinear(n_in, n_out, inh_fraction=inh_fraction, sigma=sigma,
                                         dale_sign=first_sign if i == 0 else None,
                                         generator=gen))  # fmt: skip
            layers.append(nn.ReLU())
            n_in = n_out
        self.net = nn.Sequential(*layers[:-1])  # no ReLU after the readout

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """``nn.Module.load_state_dict``; a state dict of the other layout (with or without
        interneurons: ``BioMLP``'s default changed) is refused with the argument to build."""
        theirs = any(".interneurons." in k for k in state_dict)
        if strict and theirs != any(".interneurons." in k for k in self.state_dict()):
            build = f"interneurons={INTERNEURONS} (the default)" if theirs else "interneurons=0"
            raise RuntimeError(
                f"the state dict is of a BioMLP {'with' if theirs else 'without'} interneurons, "
                f"this one {'has none' if theirs else 'has them'}: build it with {build}"
            )
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


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
