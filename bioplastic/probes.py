"""Probes: pure measurements of weights, activity and task encoding (SPEC section 4).

Every function here reads tensors or modules and returns numbers or tensors; nothing is modified
(``record_activations`` restores the model's training flags and removes its hooks). The Avalanche
metrics in ``strategies`` wrap these functions; benchmarks call them directly.

Conventions shared with the rest of ``bioplastic``:

* A *synapse* is an entry of the weight of an :class:`torch.nn.Linear` or of a convolution
  (any :class:`torch.nn.modules.conv._ConvNd`). Dimension 1 of the weight indexes the
  *presynaptic* unit (input feature or input channel), dimension 0 the *postsynaptic* unit.
* A synapse is *present* iff its weight is non-zero.
* A Dale-typed module carries a buffer ``dale_sign`` of shape ``[weight.shape[1]]`` with entries
  ``+1`` (excitatory) or ``-1`` (inhibitory). Probes also work on modules without it.

Groups of functions:

* weights: :func:`synaptic_layers`, :func:`connectivity`, :func:`connectivity_per_layer`,
  :func:`dale_violations`, :func:`sign_flips`, :func:`log_magnitude_stats`, :func:`ei_totals`,
  :func:`weight_report`;
* activity (``acts`` is ``[n_samples, n_units]``): :func:`population_sparseness`,
  :func:`lifetime_sparseness`, :func:`silent_fraction`, :func:`participation_ratio`,
  :func:`ei_input_balance`, :func:`activity_distribution_stats`, :func:`record_activations`;
* task encoding: :func:`recruited_synapses`, :func:`task_selectivity`, :func:`recruited_units`,
  :func:`jaccard_matrix`, :func:`capacity`, :func:`allocation_matrix`.

Example::

    >>> import torch
    >>> from torch import nn
    >>> from bioplastic.probes import connectivity, population_sparseness
    >>> connectivity(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
    0.5
    >>> population_sparseness(torch.eye(4))
    1.0
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn
from torch.nn.modules.conv import _ConvNd

__all__ = [
    "TaskSelectivity",
    "activity_distribution_stats",
    "allocation_matrix",
    "capacity",
    "connectivity",
    "connectivity_per_layer",
    "dale_violations",
    "ei_input_balance",
    "ei_totals",
    "jaccard_matrix",
    "lifetime_sparseness",
    "log_magnitude_stats",
    "participation_ratio",
    "population_sparseness",
    "record_activations",
    "recruited_synapses",
    "recruited_units",
    "sign_flips",
    "silent_fraction",
    "synaptic_layers",
    "task_selectivity",
    "weight_report",
]

Reduction = Literal["mean", "none"]


# --------------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------------


def _is_synaptic(module: nn.Module) -> bool:
    return isinstance(module, (nn.Linear, _ConvNd)) and isinstance(
        getattr(module, "weight", None), Tensor
    )


def _check_tensor(x: object, name: str, *, min_dim: int = 0, dim: int | None = None) -> Tensor:
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if dim is not None and x.dim() != dim:
        raise ValueError(f"{name} must have {dim} dimensions, got shape {tuple(x.shape)}")
    if x.dim() < min_dim:
        raise ValueError(
            f"{name} must have at least {min_dim} dimensions, got shape {tuple(x.shape)}"
        )
    if x.numel() == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(x.shape)}")
    return x.detach()


def _check_weight(weight: object, name: str = "weight") -> Tensor:
    return _check_tensor(weight, name, min_dim=2)


def _check_acts(acts: object, name: str = "acts", *, non_negative: bool = False) -> Tensor:
    acts = _check_tensor(acts, name, dim=2)
    if not torch.is_floating_point(acts):
        acts = acts.to(torch.get_default_dtype())
    if not bool(torch.isfinite(acts).all()):
        raise ValueError(f"{name} must be finite")
    if non_negative and bool((acts < 0).any()):
        raise ValueError(f"{name} must be non-negative (firing rates, e.g. after a ReLU)")
    return acts


def _check_dale_sign(dale_sign: object, n_pre: int, name: str = "dale_sign") -> Tensor:
    sign = _check_tensor(dale_sign, name, dim=1)
    if sign.shape[0] != n_pre:
        raise ValueError(
            f"{name} must have shape [{n_pre}] (weight.shape[1]), got {tuple(sign.shape)}"
        )
    if not bool(((sign == 1) | (sign == -1)).all()):
        raise ValueError(f"{name} entries must be +1 (excitatory) or -1 (inhibitory)")
    return sign


def _weight_and_sign(
    module_or_weight: nn.Module | Tensor, dale_sign: Tensor | None, name: str
) -> tuple[Tensor, Tensor | None]:
    """Weight (detached) and presynaptic signs (explicit argument wins over a module buffer)."""
    if isinstance(module_or_weight, nn.Module):
        if not _is_synaptic(module_or_weight):
            raise ValueError(
                f"{name} must be an nn.Linear, an nn.Conv*d or a weight tensor, "
                f"got {type(module_or_weight).__name__}"
            )
        weight = _check_weight(module_or_weight.weight, f"{name}.weight")
        if dale_sign is None:
            dale_sign = getattr(module_or_weight, "dale_sign", None)
    else:
        weight = _check_weight(module_or_weight, name)
    if dale_sign is not None:
        dale_sign = _check_dale_sign(dale_sign, weight.shape[1]).to(weight.device)
    return weight, dale_sign


def _by_presynaptic(weight: Tensor) -> Tensor:
    """``[n_pre, n_post * kernel]`` view: one row per presynaptic unit."""
    return weight.transpose(0, 1).reshape(weight.shape[1], -1)


def _moments(x: Tensor) -> dict[str, float]:
    """Mean, population std (ddof=0), skewness g1 and excess kurtosis g2 of a 1-D sample.

    ``g1 = m3 / m2**1.5`` and ``g2 = m4 / m2**2 - 3`` with central moments ``mk``: the biased
    estimators (scipy.stats.skew / kurtosis defaults). NaN where undefined (n = 0, or m2 = 0).
    """
    n = x.numel()
    if n == 0:
        return {
            "mean": math.nan,
            "std": math.nan,
            "skewness": math.nan,
            "excess_kurtosis": math.nan,
        }
    x = x.to(torch.float64)
    mean = x.mean()
    d = x - mean
    m2 = (d * d).mean()
    std = float(m2.sqrt())
    if float(m2) <= 0.0:
        return {"mean": float(mean), "std": std, "skewness": math.nan, "excess_kurtosis": math.nan}
    m3 = (d**3).mean()
    m4 = (d**4).mean()
    return {
        "mean": float(mean),
        "std": std,
        "skewness": float(m3 / m2**1.5),
        "excess_kurtosis": float(m4 / m2**2 - 3.0),
    }


def _ks_normal(x: Tensor) -> float:
    """KS distance between the standardised sample and N(0, 1) (Lilliefors statistic)."""
    n = x.numel()
    if n == 0:
        return math.nan
    x = x.to(torch.float64)
    std = x.std(unbiased=False)
    if float(std) <= 0.0:
        return math.nan
    z, _ = torch.sort((x - x.mean()) / std)
    cdf = 0.5 * (1.0 + torch.erf(z / math.sqrt(2.0)))
    i = torch.arange(1, n + 1, dtype=torch.float64, device=x.device)
    d_plus = (i / n - cdf).max()
    d_minus = (cdf - (i - 1) / n).max()
    return float(torch.maximum(d_plus, d_minus))


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


# --------------------------------------------------------------------------------------------
# activity probes
# --------------------------------------------------------------------------------------------


def _vinje_gallant(x: Tensor) -> Tensor:
    """Sparseness of each row of non-negative ``x`` ([rows, n]); NaN for all-zero rows."""
    n = x.shape[1]
    x = x.to(torch.float64)
    # the measure is scale-free; dividing by the row maximum keeps tiny rates from underflowing
    x = x / x.amax(dim=1, keepdim=True).clamp(min=torch.finfo(torch.float64).tiny)
    mean = x.mean(dim=1)
    mean_sq = (x * x).mean(dim=1)
    treves_rolls = mean * mean / mean_sq  # a in [1/n, 1]; 0/0 = NaN for silent rows
    return ((1.0 - treves_rolls) / (1.0 - 1.0 / n)).clamp(0.0, 1.0)


def _reduce(values: Tensor, reduction: str, name: str = "reduction") -> Tensor | float:
    if reduction == "none":
        return values
    if reduction == "mean":
        defined = values[~torch.isnan(values)]
        return float(defined.mean()) if defined.numel() else math.nan
    raise ValueError(f"{name} must be 'mean' or 'none', got {reduction!r}")


def population_sparseness(acts: Tensor, reduction: Reduction = "mean") -> Tensor | float:
    """Population sparseness per sample (Treves-Rolls, normalised as by Vinje & Gallant 2000).

    For a sample's non-negative activities ``r_1..r_N`` over ``N >= 2`` units:
    ``a = (sum_i r_i / N)**2 / (sum_i r_i**2 / N)`` (Treves-Rolls, in ``[1/N, 1]``) and
    ``S = (1 - a) / (1 - 1/N)`` in ``[0, 1]``: 0 when all units are equally active, 1 when a
    single unit is active (one-hot). Samples with no activity are undefined (NaN).

    Args:
        acts: ``[n_samples, n_units]`` non-negative activities (e.g. post-ReLU).
        reduction: ``"mean"`` (a float: mean over samples with some activity; NaN if none) or
            ``"none"`` (a ``[n_samples]`` float64 tensor, NaN for silent samples).
    """
    acts = _check_acts(acts, non_negative=True)
    if acts.shape[1] < 2:
        raise ValueError(f"acts must have at least 2 units (columns), got {acts.shape[1]}")
    return _reduce(_vinje_gallant(acts), reduction)


def lifetime_sparseness(acts: Tensor, reduction: Reduction = "mean") -> Tensor | float:
    """Lifetime sparseness per unit: the formula of :func:`population_sparseness` applied to
    each unit's activities across the ``n_samples >= 2`` samples.

    0 for a unit that responds equally to every sample, 1 for a unit that responds to a single
    sample. ``reduction="mean"`` averages over non-silent units (a float, NaN if all are
    silent); ``"none"`` returns ``[n_units]`` float64, NaN for silent units.
    """
    acts = _check_acts(acts, non_negative=True)
    if acts.shape[0] < 2:
        raise ValueError(f"acts must have at least 2 samples (rows), got {acts.shape[0]}")
    return _reduce(_vinje_gallant(acts.T), reduction)


def silent_fraction(acts: Tensor, eps: float = 1e-6) -> float:
    """Fraction of units that never respond: ``max_samples |r| <= eps``; in ``[0, 1]``."""
    acts = _check_acts(acts)
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    return float((acts.abs().amax(dim=0) <= eps).sum()) / acts.shape[1]


def participation_ratio(acts: Tensor) -> float:
    """Participation-ratio dimensionality of the activity, ``(sum l)**2 / sum l**2``.

    ``l`` are the eigenvalues of the ``[n_units, n_units]`` covariance ``C`` of ``acts`` over
    samples, computed as ``tr(C)**2 / tr(C @ C)`` (no eigendecomposition needed). In
    ``[1, n_units]``: ``n_units`` for isotropic activity, 1 for activity on a single line.
    NaN if the activity does not vary. Needs ``n_samples >= 2``.
    """
    acts = _check_acts(acts)
    if acts.shape[0] < 2:
        raise ValueError(f"acts must have at least 2 samples (rows), got {acts.shape[0]}")
    x = acts.to(torch.float64)
    x = x - x.mean(dim=0, keepdim=True)
    cov = x.T @ x / (x.shape[0] - 1)
    trace = torch.diagonal(cov).sum()
    trace_sq = (cov * cov).sum()
    if float(trace_sq) <= 0.0:
        return math.nan
    return float(trace * trace / trace_sq)


def activity_distribution_stats(acts: Tensor, eps: float = 0.0) -> dict[str, float]:
    """Distribution of all entries of ``acts``: ``mean``, ``std`` (ddof=0), ``skewness``,
    ``excess_kurtosis`` (as in :func:`log_magnitude_stats`, NaN if constant) and
    ``fraction_zero`` = fraction of entries with ``|r| <= eps``, in ``[0, 1]``.
    """
    acts = _check_acts(acts)
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    stats = _moments(acts.reshape(-1))
    stats["fraction_zero"] = float((acts.abs() <= eps).sum()) / acts.numel()
    return stats


def ei_input_balance(
    module: nn.Module, inputs: Tensor, dale_sign: Tensor | None = None
) -> dict[str, Tensor]:
    """Excitatory and inhibitory input currents of each postsynaptic unit of ``module``.

    The current into unit ``i`` (bias excluded) is split by presynaptic type:
    ``E_i = sum_{j: s_j=+1} w_ij x_j`` and ``I_i = -sum_{j: s_j=-1} w_ij x_j`` (convolutions:
    the same with the kernel, every output position counting as an observation). Types ``s``
    come from ``dale_sign`` or the module's buffer; without them each synapse counts by its
    own sign. With non-negative inputs (e.g. post-ReLU rates) under Dale's law both currents
    are ``>= 0``. Returns ``[n_post]`` float64 tensors:

    * ``excitatory``, ``inhibitory``: mean ``E_i`` and mean ``I_i`` over observations
      (input units times weight units);
    * ``ratio``: ``mean E_i / mean I_i`` (``inf`` without inhibition, NaN if both are 0);
      about 1 for a balanced unit;
    * ``correlation``: Pearson correlation of ``E_i`` and ``I_i`` across observations, in
      ``[-1, 1]``: close to 1 when inhibition tracks excitation (detailed balance), NaN for
      units whose E or I current does not vary.

    Args:
        module: an ``nn.Linear`` or ``nn.Conv*d``.
        inputs: what ``module`` receives: ``[batch, in_features]`` or ``[batch, C, ...]``
            (see :func:`record_activations` with ``capture="input"``).
        dale_sign: presynaptic types overriding the module's buffer.
    """
    if not (isinstance(module, nn.Module) and _is_synaptic(module)):
        raise ValueError(f"module must be an nn.Linear or nn.Conv*d, got {type(module).__name__}")
    weight, sign = _weight_and_sign(module, dale_sign, "module")
    inputs = _check_tensor(inputs, "inputs", min_dim=2).to(device=weight.device, dtype=weight.dtype)
    if sign is None:
        w_exc, w_inh = weight.clamp(min=0), weight.clamp(max=0)
    else:
        shape = [1, -1] + [1] * (weight.dim() - 2)
        is_exc = (sign > 0).to(weight.dtype).reshape(shape)
        w_exc, w_inh = weight * is_exc, weight * (1 - is_exc)
    with torch.no_grad():
        try:
            if isinstance(module, nn.Linear):
                exc = nn.functional.linear(inputs, w_exc)
                inh = -nn.functional.linear(inputs, w_inh)
            else:
                exc = module._conv_forward(inputs, w_exc, None)
                inh = -module._conv_forward(inputs, w_inh, None)
        except RuntimeError as err:
            raise ValueError(
                f"inputs of shape {tuple(inputs.shape)} do not fit {type(module).__name__} "
                f"with weight {tuple(weight.shape)}: {err}"
            ) from err
    n_post = weight.shape[0]
    # observations x units: for convolutions every output position is an observation
    exc = exc.movedim(-1 if isinstance(module, nn.Linear) else 1, -1).reshape(-1, n_post)
    inh = inh.movedim(-1 if isinstance(module, nn.Linear) else 1, -1).reshape(-1, n_post)
    exc, inh = exc.to(torch.float64), inh.to(torch.float64)
    mean_e, mean_i = exc.mean(dim=0), inh.mean(dim=0)
    ratio = mean_e / mean_i
    ratio = torch.where(mean_i == 0, torch.where(mean_e > 0, math.inf, math.nan), ratio)
    de, di = exc - mean_e, inh - mean_i
    denom = (de * de).sum(dim=0).sqrt() * (di * di).sum(dim=0).sqrt()
    corr = torch.where(denom > 0, (de * di).sum(dim=0) / denom, math.nan).clamp(-1.0, 1.0)
    return {"excitatory": mean_e, "inhibitory": mean_i, "ratio": ratio, "correlation": corr}


def _first_tensor(batch: object, what: str) -> Tensor:
    if isinstance(batch, Tensor):
        return batch
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], Tensor):
        return batch[0]
    raise ValueError(
        f"{what} must be a Tensor or yield Tensors or (inputs, ...) tuples, "
        f"got {type(batch).__name__}"
    )


def record_activations(
    model: nn.Module,
    loader_or_tensor: Tensor | Iterable,
    layers: Sequence[str] | None = None,
    capture: Literal["output", "input"] = "output",
    max_batches: int | None = None,
) -> dict[str, Tensor]:
    """Run ``model`` on data and collect what chosen sub-modules emit (or receive).

    Uses forward hooks that are always removed afterwards; runs under ``torch.no_grad()`` in
    eval mode and restores every sub-module's training flag. Outputs are detached, moved to the
    CPU and concatenated along dimension 0 (the batch).

    Args:
        model: any ``nn.Module``; inputs are moved to the device of its first parameter.
        loader_or_tensor: one input batch (a Tensor) or an iterable of batches (Tensors, or
            ``(inputs, targets, ...)`` tuples as yielded by a DataLoader / Avalanche stream;
            the first element is fed to ``model``).
        layers: names from ``model.named_modules()``; default: all synaptic layers
            (:func:`synaptic_layers`). Their outputs are pre-activations: to measure firing
            rates (sparseness), name the activation modules (e.g. the ``nn.ReLU`` layers).
        capture: ``"output"`` (what the module returns) or ``"input"`` (its first positional
            argument, e.g. for :func:`ei_input_balance`).
        max_batches: stop after this many batches (``None``: all).

    Returns:
        ``{name: Tensor [n_samples, ...]}`` in the order of ``layers``.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be an nn.Module, got {type(model).__name__}")
    if capture not in ("output", "input"):
        raise ValueError(f"capture must be 'output' or 'input', got {capture!r}")
    if max_batches is not None and max_batches < 1:
        raise ValueError(f"max_batches must be >= 1 or None, got {max_batches}")
    modules = dict(model.named_modules())
    if layers is None:
        names = [name for name, _ in synaptic_layers(model)]
    else:
        if isinstance(layers, str):
            raise ValueError("layers must be a sequence of module names, not a single string")
        names = list(layers)
        unknown = [n for n in names if n not in modules]
        if unknown:
            raise ValueError(f"layers not found in model: {unknown}")
    if not names:
        raise ValueError("layers is empty (the model has no Linear/Conv layers)")
    if isinstance(loader_or_tensor, Tensor):
        batches: Iterable = [loader_or_tensor]
    elif isinstance(loader_or_tensor, Iterable):
        batches = loader_or_tensor
    else:
        raise ValueError(
            "loader_or_tensor must be a Tensor or an iterable of batches, "
            f"got {type(loader_or_tensor).__name__}"
        )
    param = next(model.parameters(), None)
    device = param.device if param is not None else None

    collected: dict[str, list[Tensor]] = {n: [] for n in names}

    def make_hook(name: str):
        def hook(_module: nn.Module, args: tuple, output: object) -> None:
            value = args[0] if capture == "input" else output
            if isinstance(value, (tuple, list)):
                value = value[0]
            if isinstance(value, Tensor):
                collected[name].append(value.detach().cpu())

        return hook

    training = {m: m.training for m in model.modules()}
    handles = [modules[n].register_forward_hook(make_hook(n)) for n in dict.fromkeys(names)]
    n_batches = 0
    try:
        model.eval()
        with torch.no_grad():
            for batch in batches:
                x = _first_tensor(batch, "loader_or_tensor")
                model(x.to(device) if device is not None else x)
                n_batches += 1
                if max_batches is not None and n_batches >= max_batches:
                    break
    finally:
        for handle in handles:
            handle.remove()
        for m, flag in training.items():
            m.training = flag
    if n_batches == 0:
        raise ValueError("loader_or_tensor yielded no batches")
    result: dict[str, Tensor] = {}
    for name in names:
        if not collected[name]:
            raise ValueError(f"layer {name!r} was not called during the forward pass")
        result[name] = torch.cat(collected[name], dim=0)
    return result


# --------------------------------------------------------------------------------------------
# task-encoding probes
# --------------------------------------------------------------------------------------------


def recruited_synapses(
    before_weight: Tensor | Mapping[str, Tensor],
    after_weight: Tensor | Mapping[str, Tensor],
    rel_threshold: float = math.log(2.0),
    grown_counts: bool = True,
) -> Tensor | dict[str, Tensor]:
    """Synapses a task recruited: those it grew or strengthened (bool mask, weight-shaped).

    With ``b`` the weight before the task (e.g. at ``before_training_exp``) and ``a`` after it:

    * grown: ``b == 0`` and ``a != 0`` (counted if ``grown_counts``);
    * strengthened: ``b != 0``, ``a != 0`` and ``ln|a| - ln|b| > rel_threshold``
      (``rel_threshold`` in nats of log-magnitude, ``>= 0``; default ``ln 2``: at least doubled).

    Synapses consolidated during the task (an optimizer state) can be OR-ed into the mask by the
    caller. Dicts of per-layer weights (same keys) give a dict of per-layer masks.
    """
    if not rel_threshold >= 0:
        raise ValueError(f"rel_threshold must be >= 0 (nats of log-magnitude), got {rel_threshold}")
    if isinstance(before_weight, Mapping) or isinstance(after_weight, Mapping):
        if not (isinstance(before_weight, Mapping) and isinstance(after_weight, Mapping)):
            raise ValueError("before_weight and after_weight must both be tensors or both dicts")
        if set(before_weight) != set(after_weight):
            raise ValueError(
                "before_weight and after_weight must have the same keys, got "
                f"{sorted(before_weight)} and {sorted(after_weight)}"
            )
        return {
            k: recruited_synapses(before_weight[k], after_weight[k], rel_threshold, grown_counts)
            for k in before_weight
        }
    before = _check_tensor(before_weight, "before_weight")
    after = _check_tensor(after_weight, "after_weight").to(before.device)
    if before.shape != after.shape:
        raise ValueError(
            f"after_weight must have the shape of before_weight {tuple(before.shape)}, "
            f"got {tuple(after.shape)}"
        )
    was, now = before != 0, after != 0
    both = was & now
    gain = torch.zeros_like(before, dtype=torch.float64)
    gain[both] = torch.log(after[both].abs().double()) - torch.log(before[both].abs().double())
    mask = both & (gain > rel_threshold)
    if grown_counts:
        mask = mask | (~was & now)
    return mask


class TaskSelectivity(NamedTuple):
    """Result of :func:`task_selectivity`: per-unit index in [0, 1] and preferred task."""

    index: Tensor
    preferred: Tensor


def _check_task_acts(mean_activity_per_task: object) -> Tensor:
    acts = _check_acts(mean_activity_per_task, "mean_activity_per_task", non_negative=True)
    if acts.shape[0] < 2:
        raise ValueError(
            f"mean_activity_per_task must have at least 2 tasks (rows), got {acts.shape[0]}"
        )
    return acts


def task_selectivity(mean_activity_per_task: Tensor) -> TaskSelectivity:
    """Task-selectivity index of each unit and the task it prefers.

    For unit ``u`` with non-negative mean activities ``r_1..r_T`` over ``T >= 2`` tasks,
    ``p = argmax_t r_t`` and ``SI = (r_p - mean_{t != p} r_t) / (r_p + mean_{t != p} r_t)`` in
    ``[0, 1]``: 0 if the unit is equally active in all tasks, 1 if only one task drives it.

    Args:
        mean_activity_per_task: ``[n_tasks, n_units]`` non-negative.

    Returns:
        ``TaskSelectivity(index, preferred)``: ``index`` ``[n_units]`` float64 (NaN for units
        silent in every task), ``preferred`` ``[n_units]`` int64 task index (-1 if silent).
    """
    acts = _check_task_acts(mean_activity_per_task).to(torch.float64)
    n_tasks = acts.shape[0]
    best, preferred = acts.max(dim=0)
    others = (acts.sum(dim=0) - best) / (n_tasks - 1)
    index = (best - others) / (best + others)  # 0/0 = NaN for silent units
    silent = best <= 0
    preferred = torch.where(silent, torch.full_like(preferred, -1), preferred)
    return TaskSelectivity(index=index, preferred=preferred)


def recruited_units(
    mean_activity_per_task: Tensor, rel_activity: float = 0.5, min_activity: float = 0.0
) -> Tensor:
    """Which units each task drives, as a ``[n_tasks, n_units]`` bool mask.

    Task ``t`` recruits unit ``u`` iff ``r[t, u] > min_activity`` and
    ``r[t, u] >= rel_activity * max_t' r[t', u]``, with ``rel_activity`` in ``(0, 1]``
    (1: only the preferred task; smaller values let units be shared). ``r`` is the
    non-negative mean activity per task, ``[n_tasks >= 2, n_units]``.
    """
    acts = _check_task_acts(mean_activity_per_task)
    if not 0 < rel_activity <= 1:
        raise ValueError(f"rel_activity must be in (0, 1], got {rel_activity}")
    if not min_activity >= 0:
        raise ValueError(f"min_activity must be >= 0, got {min_activity}")
    best = acts.amax(dim=0, keepdim=True)
    return (acts > min_activity) & (acts >= rel_activity * best)


def _flatten_mask(mask: object, name: str, keys: list[str] | None) -> Tensor:
    """One flat bool vector from a mask, or from a dict of per-layer masks concatenated in
    the order of ``keys`` (``keys`` is None exactly when a plain tensor is expected)."""
    if isinstance(mask, Mapping):
        if keys is None:
            raise ValueError(f"{name} must be a tensor mask like the others, got a dict")
        if set(mask) != set(keys):
            raise ValueError(f"{name} must have the keys {sorted(keys)}, got {sorted(mask)}")
        if not keys:
            raise ValueError(f"{name} must not be an empty dict")
        parts = [_check_tensor(mask[k], f"{name}[{k!r}]").reshape(-1) for k in keys]
        flat = torch.cat([p.to(parts[0].device) for p in parts])
    else:
        if keys is not None:
            raise ValueError(f"{name} must be a dict of per-layer masks like the others")
        flat = _check_tensor(mask, name).reshape(-1)
    if flat.dtype != torch.bool:
        raise ValueError(f"{name} must be a bool mask, got dtype {flat.dtype}")
    return flat


def _flatten_masks(masks: object, name: str, keys: list[str] | None = None) -> list[Tensor]:
    """Flatten a list of masks (dicts: concatenated in ``keys`` order, default the first
    dict's), all to the same length, on the first mask's device."""
    if isinstance(masks, (Tensor, Mapping, str)) or not isinstance(masks, Sequence):
        raise ValueError(f"{name} must be a list of bool masks (or of dicts of masks)")
    if keys is None and masks and isinstance(masks[0], Mapping):
        keys = list(masks[0])
    flat = [_flatten_mask(m, f"{name}[{i}]", keys) for i, m in enumerate(masks)]
    for i, f in enumerate(flat[1:], start=1):
        if f.shape != flat[0].shape:
            raise ValueError(
                f"{name}[{i}] has {f.numel()} entries but {name}[0] has {flat[0].numel()}"
            )
    return [f.to(flat[0].device) for f in flat]


def jaccard_matrix(masks: Sequence[Tensor | Mapping[str, Tensor]]) -> Tensor:
    """Pairwise overlap ``J[a, b] = |A & B| / |A | B|`` of ``T`` same-shaped bool masks.

    Returns a symmetric ``[T, T]`` float64 tensor with entries in ``[0, 1]`` and a unit
    diagonal; two empty masks count as identical (``J = 1``). Masks may be dicts of per-layer
    masks with the same keys (compared over all layers together).
    """
    flat = _flatten_masks(masks, "masks")
    if not flat:
        raise ValueError("masks must hold at least one mask")
    stacked = torch.stack([f.to(flat[0].device) for f in flat]).to(torch.float64)
    inter = stacked @ stacked.T
    sizes = stacked.sum(dim=1)
    union = sizes[:, None] + sizes[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(inter))


def capacity(
    masks_so_far: Sequence[Tensor | Mapping[str, Tensor]],
    weight: Tensor | Mapping[str, Tensor],
) -> dict[str, float]:
    """How much of the potential synapses the tasks so far have claimed.

    Potential synapses are all entries of ``weight`` (present or not; a dict of per-layer
    weights counts all layers, and the masks must then be dicts with the same keys).
    Returns ``used_fraction`` = ``|union of masks| / #potential`` and
    ``free_fraction = 1 - used_fraction`` (both in ``[0, 1]``),
    ``free_present_fraction``: present synapses (``w != 0``) no task has claimed yet, as a
    fraction of the potential ones, and the counts ``n_potential`` and ``n_used``.
    """
    if isinstance(masks_so_far, (Tensor, Mapping, str)) or not isinstance(masks_so_far, Sequence):
        raise ValueError("masks_so_far must be a list of bool masks (or of dicts of masks)")
    if isinstance(weight, Mapping):
        if not weight:
            raise ValueError("weight must not be an empty dict")
        layers = {}
        for i, mask in enumerate(masks_so_far):
            if not isinstance(mask, Mapping) or set(mask) != set(weight):
                raise ValueError(
                    f"masks_so_far[{i}] must be a dict with the keys of weight {sorted(weight)}"
                )
        for k, w in weight.items():
            layer_masks = [mask[k] for mask in masks_so_far]
            layers[k] = _capacity_counts(
                layer_masks, w, f"masks_so_far[*][{k!r}]", f"weight[{k!r}]"
            )
        n_potential, n_used, n_free_present = (sum(c[j] for c in layers.values()) for j in range(3))
    else:
        n_potential, n_used, n_free_present = _capacity_counts(
            masks_so_far, weight, "masks_so_far", "weight"
        )
    return {
        "used_fraction": n_used / n_potential,
        "free_fraction": 1.0 - n_used / n_potential,
        "free_present_fraction": n_free_present / n_potential,
        "n_potential": n_potential,
        "n_used": n_used,
    }


def _capacity_counts(
    masks: Sequence[object], weight: object, masks_name: str, weight_name: str
) -> tuple[int, int, int]:
    """(#potential, #claimed by some mask, #present and unclaimed) for one layer."""
    weight = _check_tensor(weight, weight_name)
    used = torch.zeros_like(weight, dtype=torch.bool)
    for i, mask in enumerate(masks):
        name = masks_name.replace("[*]", f"[{i}]") if "[*]" in masks_name else f"{masks_name}[{i}]"
        mask = _check_tensor(mask, name)
        if mask.dtype != torch.bool:
            raise ValueError(f"{name} must be a bool mask, got dtype {mask.dtype}")
        if mask.shape != weight.shape:
            raise ValueError(
                f"{name} has shape {tuple(mask.shape)}, {weight_name} has {tuple(weight.shape)}"
            )
        used |= mask.to(weight.device)
    return weight.numel(), int(used.sum()), int(((weight != 0) & ~used).sum())


def allocation_matrix(unit_masks: Sequence[Tensor | Mapping[str, Tensor]] | Tensor) -> Tensor:
    """Task x unit allocation heatmap: ``A[t, u] = 1.0`` if task ``t`` recruited unit ``u``.

    ``unit_masks`` is a list of ``T`` bool masks over units (dicts of per-layer masks are
    concatenated in the first dict's key order), or a ``[T, n_units]`` bool tensor such as
    :func:`recruited_units` returns. Returns ``[T, n_units]`` float32 in ``{0, 1}``, ready for
    ``SummaryWriter.add_image`` (with ``dataformats="HW"``).
    """
    if isinstance(unit_masks, Tensor):
        masks = _check_tensor(unit_masks, "unit_masks", dim=2)
        if masks.dtype != torch.bool:
            raise ValueError(f"unit_masks must be a bool mask, got dtype {masks.dtype}")
        return masks.to(torch.float32)
    flat = _flatten_masks(unit_masks, "unit_masks")
    if not flat:
        raise ValueError("unit_masks must hold at least one mask")
    return torch.stack([f.to(flat[0].device) for f in flat]).to(torch.float32)
