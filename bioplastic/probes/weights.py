"""Weight probes: connectivity, Dale violations, sign flips, magnitudes, E/I totals.

Conventions (synapses, presynaptic dimension, ``dale_sign``): see :mod:`bioplastic.probes`.

The probes scale to layers of millions of synapses: reductions run over the weight in place
(``amax``/``amin``/``count_nonzero`` per presynaptic unit) or over slices of at most
:data:`CHUNK` entries, so no full-size copy (float64, ``abs``, a transpose) of a large weight
is made. Log-magnitude statistics of a layer with more than :data:`EXACT_LIMIT` entries are
streamed (two passes; the KS distance from a fine histogram, see :func:`log_magnitude_stats`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from bioplastic.probes._validation import (
    _check_tensor,
    _is_synaptic,
    _ks_normal,
    _moments,
    _weight_and_sign,
)

#: Entries per slice when a large weight is reduced piecewise (a float64 slice is 2 MiB).
CHUNK = 1 << 18
#: Layers with more entries than this get streamed log-magnitude statistics.
EXACT_LIMIT = 1 << 20
#: Histogram of the standardised log-magnitudes used for the streamed KS distance.
_KS_BINS, _KS_RANGE = 1 << 14, 8.0

# --------------------------------------------------------------------------------------------
# weight probes
# --------------------------------------------------------------------------------------------


def synaptic_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The layers whose weights are synapses: every ``nn.Linear`` and ``nn.Conv*d`` of ``model``.

    Returns ``(name, module)`` pairs in ``model.named_modules()`` order; names are the same
    prefixes as in ``model.state_dict()`` (``""`` when ``model`` itself is such a layer).
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be an nn.Module, got {type(model).__name__}")
    return [(name, m) for name, m in model.named_modules() if _is_synaptic(m)]


def connectivity(weight: Tensor) -> float:
    """Fraction of present synapses, ``#(w != 0) / #w``, in ``[0, 1]``."""
    weight = _check_tensor(weight, "weight")
    return float(torch.count_nonzero(weight)) / weight.numel()


def connectivity_per_layer(model: nn.Module) -> dict[str, float]:
    """:func:`connectivity` of every synaptic layer of ``model``, keyed by layer name."""
    return {name: connectivity(m.weight) for name, m in synaptic_layers(model)}


def dale_violations(module_or_weight: nn.Module | Tensor, dale_sign: Tensor | None = None) -> int:
    """Number of presynaptic units whose present outgoing synapses break Dale's law.

    Unit ``j`` (dimension 1 of the weight) violates Dale's law if its present weights
    ``w[:, j, ...] != 0`` have mixed signs, or, when its type ``s_j`` is known (``dale_sign``
    argument, else the module's ``dale_sign`` buffer), if any present weight has
    ``sign(w) != s_j``. Range ``[0, weight.shape[1]]``; always 0 under the bio rule.
    """
    has_pos, has_neg = _unit_signs(module_or_weight, dale_sign)
    return int((has_pos & has_neg).sum())


def shared_dale_violations(layers: Sequence[nn.Module | Tensor]) -> int:
    """:func:`dale_violations` of layers that read the same presynaptic units (the heads of a
    multi-head model): a unit breaks Dale's law if its present synapses onto all of them have
    mixed signs or any goes against its type in that layer, since a unit has one type whatever
    it projects to. Every layer needs the same number of presynaptic units."""
    if not layers:
        return 0
    signs = [_unit_signs(layer) for layer in layers]
    if len({pos.shape for pos, _ in signs}) != 1:
        raise ValueError(
            "layers must read the same presynaptic units, got "
            f"{sorted({tuple(pos.shape) for pos, _ in signs})} of them"
        )
    has_pos = torch.stack([pos for pos, _ in signs]).any(dim=0)
    has_neg = torch.stack([neg for _, neg in signs]).any(dim=0)
    return int((has_pos & has_neg).sum())


def _unit_signs(module_or_weight: nn.Module | Tensor, dale_sign: Tensor | None = None):
    """Per presynaptic unit: whether it has a present positive and a present negative synapse;
    a synapse against the unit's known type counts as both."""
    weight, sign = _weight_and_sign(module_or_weight, dale_sign, "module_or_weight")
    others = _non_presynaptic_dims(weight)
    has_pos = weight.amax(dim=others) > 0
    has_neg = weight.amin(dim=others) < 0
    if sign is not None:
        against = (has_pos & (sign < 0)) | (has_neg & (sign > 0))
        has_pos, has_neg = has_pos | against, has_neg | against
    return has_pos, has_neg


def _non_presynaptic_dims(weight: Tensor) -> tuple[int, ...]:
    return tuple(d for d in range(weight.dim()) if d != 1)


def _slices(flat: Tensor):
    """Consecutive slices of at most :data:`CHUNK` entries of a 1-D tensor (views)."""
    return flat.split(CHUNK)


def sign_flips(weight: Tensor, reference: Tensor) -> int:
    """Number of synapses present in both ``weight`` and ``reference`` whose signs differ.

    ``#{i : w_i != 0, r_i != 0, sign(w_i) != sign(r_i)}``; 0 under the bio rule (a synapse
    that was eliminated and regrown is not a flip).
    """
    weight = _check_tensor(weight, "weight")
    reference = _check_tensor(reference, "reference").to(weight.device)
    if weight.shape != reference.shape:
        raise ValueError(
            f"reference must have the shape of weight {tuple(weight.shape)}, "
            f"got {tuple(reference.shape)}"
        )
    both = (weight != 0) & (reference != 0)
    return int((both & (torch.sign(weight) != torch.sign(reference))).sum())


def log_magnitude_stats(weight: Tensor) -> dict[str, float]:
    """Shape of the distribution of ``x = ln|w|`` over present synapses (``w != 0``).

    Returns ``mean`` and ``std`` of ``x`` (natural log of the weight's units; std with ddof=0),
    ``skewness`` ``g1 = m3 / m2**1.5`` and ``excess_kurtosis`` ``g2 = m4 / m2**2 - 3`` (both 0
    for a lognormal ``|w|``), ``ks_normal``: the Kolmogorov-Smirnov distance
    ``sup_z |F_n(z) - Phi(z)|`` in ``[0, 1]`` between the standardised ``x`` and N(0, 1) (mean
    and std are estimated, so this is the Lilliefors statistic: compare it across layers or
    runs, not to KS tables), and ``n``, the number of present synapses. Statistics that are
    undefined (no present synapse, or all magnitudes equal) are NaN.

    Weights of more than :data:`EXACT_LIMIT` entries are streamed in slices of :data:`CHUNK`
    (two passes in float64: the same moments to rounding); their ``ks_normal`` is read off a
    2^14-bin histogram of the standardised ``x`` on ``[-8, 8]`` (values beyond it counted), which
    is within about ``1e-3`` of the exact statistic (the CDFs are compared at bin edges).
    """
    weight = _check_tensor(weight, "weight")
    if weight.numel() > EXACT_LIMIT:
        return _streamed_log_magnitude_stats(weight.reshape(-1))
    present = weight[weight != 0]
    x = torch.log(_sorted_magnitudes(present).to(torch.float64))  # ascending: a cheap re-sort
    stats = _moments(x)
    stats["ks_normal"] = _ks_normal(x)
    stats["n"] = int(present.numel())
    return stats


_INT_VIEW = {torch.float64: torch.int64, torch.float32: torch.int32, torch.float16: torch.int16}
_INT_VIEW[torch.bfloat16] = torch.int16


def _sorted_magnitudes(values: Tensor) -> Tensor:
    """``values.abs()`` in ascending order, exactly.

    Non-negative IEEE floats order as their bit patterns read as integers, and torch sorts
    integers far faster than floats on the CPU (about 1 ms against 12 ms for 2^18 entries), so
    :func:`_ks_normal`'s own sort of the (monotone) log-magnitudes then runs over sorted data.
    """
    mags = values.abs()
    as_int = _INT_VIEW.get(mags.dtype)
    if as_int is None:
        return torch.sort(mags).values
    return torch.sort(mags.contiguous().view(as_int)).values.view(mags.dtype)


def _log_present(piece: Tensor) -> Tensor:
    piece = piece[piece != 0]
    return torch.log(piece.abs().to(torch.float64))


def _streamed_log_magnitude_stats(flat: Tensor) -> dict[str, float]:
    """:func:`log_magnitude_stats` over slices: never a full-size copy of ``flat``."""
    n, total = 0, 0.0
    for piece in _slices(flat):
        x = _log_present(piece)
        n, total = n + x.numel(), total + float(x.sum())
    if n == 0:
        return {**_moments(flat[:0]), "ks_normal": math.nan, "n": 0}
    mean = total / n
    m2 = m3 = m4 = 0.0
    for piece in _slices(flat):
        d = _log_present(piece) - mean
        d2 = d * d
        m2, m3, m4 = m2 + float(d2.sum()), m3 + float((d2 * d).sum()), m4 + float((d2 * d2).sum())
    m2, m3, m4 = m2 / n, m3 / n, m4 / n
    stats = {"mean": mean, "std": math.sqrt(m2), "n": n}
    if m2 <= 0.0:
        return {**stats, "skewness": math.nan, "excess_kurtosis": math.nan, "ks_normal": math.nan}
    stats["skewness"], stats["excess_kurtosis"] = m3 / m2**1.5, m4 / m2**2 - 3.0
    counts = torch.zeros(_KS_BINS, dtype=torch.float64)
    below = 0
    for piece in _slices(flat):
        z = (_log_present(piece) - mean) / stats["std"]
        below += int((z < -_KS_RANGE).sum())
        counts += torch.histc(z.cpu(), _KS_BINS, -_KS_RANGE, _KS_RANGE)
    edges = torch.linspace(-_KS_RANGE, _KS_RANGE, _KS_BINS + 1, dtype=torch.float64)
    empirical = (below + torch.cat([counts.new_zeros(1), counts.cumsum(0)])) / n
    normal = 0.5 * (1.0 + torch.erf(edges / math.sqrt(2.0)))
    stats["ks_normal"] = float((empirical - normal).abs().max())
    return stats


def ei_totals(
    module_or_weight: nn.Module | Tensor, dale_sign: Tensor | None = None
) -> dict[str, float]:
    """Summed excitatory and inhibitory synaptic magnitudes and their ratio.

    With presynaptic types ``s`` (``dale_sign`` argument or the module's buffer):
    ``excitatory = sum_{j: s_j = +1} |w[:, j]|`` and ``inhibitory = sum_{j: s_j = -1} |w[:, j]|``.
    Without types each synapse counts by its own sign: ``excitatory = sum_{w > 0} w``,
    ``inhibitory = sum_{w < 0} |w|``. Both are in the weight's units, ``>= 0``.
    ``ei_ratio = excitatory / inhibitory`` (``inf`` if there is no inhibition, NaN if neither).
    """
    weight, sign = _weight_and_sign(module_or_weight, dale_sign, "module_or_weight")
    exc = inh = 0.0
    if sign is None:
        for piece in _slices(weight.reshape(-1)):
            exc += float(piece.clamp(min=0).sum(dtype=torch.float64))
            inh -= float(piece.clamp(max=0).sum(dtype=torch.float64))
    else:
        # |w| summed per presynaptic unit, a few postsynaptic rows at a time
        rows_per_slice = max(1, CHUNK // max(1, weight[0].numel()))
        mags = torch.zeros(weight.shape[1], dtype=torch.float64, device=weight.device)
        for rows in weight.split(rows_per_slice, dim=0):
            mags += rows.abs().sum(dim=_non_presynaptic_dims(rows), dtype=torch.float64)
        exc = float(mags[sign > 0].sum())
        inh = float(mags[sign < 0].sum())
    if inh > 0:
        ratio = exc / inh
    else:
        ratio = math.inf if exc > 0 else math.nan
    return {"excitatory": exc, "inhibitory": inh, "ei_ratio": ratio}


_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def norm_scale_signs(model: nn.Module) -> dict[str, dict[str, int]]:
    """Signs of the affine scales of every normalisation layer (BatchNorm, GroupNorm, LayerNorm).

    A normalisation layer multiplies channel ``c`` by its scale ``gamma_c`` after the synaptic
    sum: with ``gamma_c < 0`` every synapse onto that channel acts with the opposite sign, so
    Dale's law, which holds for the weights, no longer holds for their effect. Returns, per
    layer with an affine scale, ``n`` (channels), ``negative`` (``gamma < 0``) and ``zero``
    (``gamma == 0``: the channel is silenced). Norm scales are not synapses: ``BioRule``
    gives them its additive ``other`` update, which can cross 0.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be an nn.Module, got {type(model).__name__}")
    out: dict[str, dict[str, int]] = {}
    for name, m in model.named_modules():
        gamma = getattr(m, "weight", None)
        if isinstance(m, _NORMS) and isinstance(gamma, Tensor):
            gamma = gamma.detach()
            out[name] = {
                "n": gamma.numel(),
                "negative": int((gamma < 0).sum()),
                "zero": int((gamma == 0).sum()),
            }
    return out


def layer_report(module: nn.Module, reference: Tensor | None = None) -> dict[str, float]:
    """:func:`weight_report`'s numbers for one synaptic layer (``sign_flips`` against
    ``reference``, the layer's earlier weight, when given)."""
    weight = module.weight.detach()
    row: dict[str, float] = {
        "n_synapses": weight.numel(),
        "n_present": int(torch.count_nonzero(weight)),
        "connectivity": connectivity(weight),
        "dale_violations": dale_violations(module),
    }
    row.update({f"log_mag_{k}": v for k, v in log_magnitude_stats(weight).items() if k != "n"})
    row.update(ei_totals(module))
    if reference is not None:
        row["sign_flips"] = sign_flips(weight, reference)
    return row


def weight_report(
    model: nn.Module, reference_state: Mapping[str, Tensor] | None = None
) -> dict[str, dict[str, float]]:
    """All weight probes for every synaptic layer, as a flat dict of numbers per layer.

    Keys per layer: ``n_synapses``, ``n_present``, ``connectivity``, ``dale_violations``,
    ``log_mag_mean``, ``log_mag_std``, ``log_mag_skewness``, ``log_mag_excess_kurtosis``,
    ``log_mag_ks_normal`` (see :func:`log_magnitude_stats`), ``excitatory``, ``inhibitory``,
    ``ei_ratio`` (see :func:`ei_totals`), and ``sign_flips`` against
    ``reference_state[f"{name}.weight"]`` when ``reference_state`` (a ``state_dict()``
    snapshot, e.g. taken right after initialisation) is given and holds that key.
    """
    layers = synaptic_layers(model)
    if reference_state is not None and not isinstance(reference_state, Mapping):
        raise ValueError(
            f"reference_state must be a state_dict mapping, got {type(reference_state).__name__}"
        )
    report: dict[str, dict[str, float]] = {}
    for name, module in layers:
        key = f"{name}.weight" if name else "weight"
        reference = reference_state.get(key) if reference_state is not None else None
        report[name] = layer_report(module, reference)
    return report
