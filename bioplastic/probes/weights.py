"""Weight probes: connectivity, Dale violations, sign flips, magnitudes, E/I totals.

Conventions (synapses, presynaptic dimension, ``dale_sign``): see :mod:`bioplastic.probes`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from bioplastic.probes._validation import (
    _by_presynaptic,
    _check_tensor,
    _is_synaptic,
    _ks_normal,
    _moments,
    _weight_and_sign,
)

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
    weight, sign = _weight_and_sign(module_or_weight, dale_sign, "module_or_weight")
    rows = _by_presynaptic(weight)
    has_pos = (rows > 0).any(dim=1)
    has_neg = (rows < 0).any(dim=1)
    bad = has_pos & has_neg
    if sign is not None:
        bad = bad | (has_pos & (sign < 0)) | (has_neg & (sign > 0))
    return int(bad.sum())


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
    """
    weight = _check_tensor(weight, "weight")
    present = weight[weight != 0]
    x = torch.log(present.abs().to(torch.float64))
    stats = _moments(x)
    stats["ks_normal"] = _ks_normal(x)
    stats["n"] = int(present.numel())
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
    rows = _by_presynaptic(weight).to(torch.float64)
    if sign is None:
        exc = float(rows.clamp(min=0).sum())
        inh = float((-rows).clamp(min=0).sum())
    else:
        mags = rows.abs().sum(dim=1)
        exc = float(mags[sign > 0].sum())
        inh = float(mags[sign < 0].sum())
    if inh > 0:
        ratio = exc / inh
    else:
        ratio = math.inf if exc > 0 else math.nan
    return {"excitatory": exc, "inhibitory": inh, "ei_ratio": ratio}


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
        weight = module.weight.detach()
        row: dict[str, float] = {
            "n_synapses": weight.numel(),
            "n_present": int(torch.count_nonzero(weight)),
            "connectivity": connectivity(weight),
            "dale_violations": dale_violations(module),
        }
        row.update({f"log_mag_{k}": v for k, v in log_magnitude_stats(weight).items() if k != "n"})
        row.update(ei_totals(module))
        key = f"{name}.weight" if name else "weight"
        if reference_state is not None and key in reference_state:
            row["sign_flips"] = sign_flips(weight, reference_state[key])
        report[name] = row
    return report
