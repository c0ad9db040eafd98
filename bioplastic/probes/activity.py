"""Activity probes: sparseness, silence, dimensionality, E/I input balance, recording.

``acts`` is ``[n_samples, n_units]`` throughout; conventions: see :mod:`bioplastic.probes`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from bioplastic.probes._validation import (
    _check_acts,
    _check_tensor,
    _is_synaptic,
    _moments,
    _weight_and_sign,
)
from bioplastic.probes.weights import synaptic_layers

Reduction = Literal["mean", "none"]


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
    return _silent(acts, eps)


def _silent(acts: Tensor, eps: float) -> float:
    return float((acts.abs().amax(dim=0) <= eps).sum()) / acts.shape[1]


def participation_ratio(acts: Tensor) -> float:
    """Participation-ratio dimensionality of the activity, ``(sum l)**2 / sum l**2``.

    ``l`` are the eigenvalues of the ``[n_units, n_units]`` covariance ``C`` of ``acts`` over
    samples, computed as ``tr(C)**2 / tr(C @ C)`` (no eigendecomposition needed). In
    ``[1, n_units]``: ``n_units`` for isotropic activity, 1 for activity on a single line.
    NaN if the activity does not vary. Needs ``n_samples >= 2``. Computed in float32 for
    float32 activities (to about 1e-6 relative), in float64 otherwise.
    """
    acts = _check_acts(acts)
    if acts.shape[0] < 2:
        raise ValueError(f"acts must have at least 2 samples (rows), got {acts.shape[0]}")
    return _participation(acts)


def _participation(acts: Tensor) -> float:
    x = acts if acts.dtype == torch.float32 else acts.to(torch.float64)
    x = x - x.mean(dim=0, keepdim=True)
    # the ratio is scale-free: unit scale keeps the float32 sums of squares from overflowing
    x = x / x.abs().amax().clamp(min=torch.finfo(x.dtype).tiny)
    # tr(C) and tr(C @ C) = ||X^T X||_F^2 = ||X X^T||_F^2 (scaled): the smaller Gram matrix
    gram = x.T @ x if x.shape[1] <= x.shape[0] else x @ x.T
    trace = torch.diagonal(gram).sum()
    trace_sq = (gram * gram).sum()
    if float(trace_sq) <= 0.0:
        return math.nan
    return float(trace * trace / trace_sq)


def unit_activity_stats(acts: Tensor, eps: float = 1e-6) -> dict[str, float]:
    """The activity probes of one layer at once, ``acts`` checked once: the same values as
    :func:`population_sparseness` and :func:`lifetime_sparseness` (``reduction="mean"``; only
    for non-negative activities of at least 2 units), :func:`silent_fraction` (``eps``) and
    :func:`participation_ratio`. Needs ``n_samples >= 2``.
    """
    acts = _check_acts(acts)
    if acts.shape[0] < 2:
        raise ValueError(f"acts must have at least 2 samples (rows), got {acts.shape[0]}")
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    stats: dict[str, float] = {}
    if acts.shape[1] >= 2 and bool((acts >= 0).all()):
        stats["population_sparseness"] = _reduce(_vinje_gallant(acts), "mean")
        stats["lifetime_sparseness"] = _reduce(_vinje_gallant(acts.T), "mean")
    stats["silent_fraction"] = _silent(acts, eps)
    stats["participation_ratio"] = _participation(acts)
    return stats


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
    with torch.no_grad():
        try:
            exc, inh = _ei_currents(module, weight, sign, inputs)
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


def _ei_currents(
    module: nn.Module, weight: Tensor, sign: Tensor | None, inputs: Tensor
) -> tuple[Tensor, Tensor]:
    """The currents ``E`` and ``I`` of :func:`ei_input_balance`, ``[batch, n_post, ...]``.

    A typed linear layer gets ``I`` from its inhibitory input columns alone and ``E`` as the
    whole current plus ``I`` (``x W^T = E - I``): one full matrix product and a small one
    instead of two full ones (equal to them up to float rounding).
    """
    linear = isinstance(module, nn.Linear)
    if sign is not None and linear and inputs.dim() == 2:
        inh_cols = sign < 0
        inh = -nn.functional.linear(inputs[:, inh_cols], weight[:, inh_cols])
        return nn.functional.linear(inputs, weight) + inh, inh
    if sign is None:
        w_exc, w_inh = weight.clamp(min=0), weight.clamp(max=0)
    else:
        shape = [1, -1] + [1] * (weight.dim() - 2)
        is_exc = (sign > 0).to(weight.dtype).reshape(shape)
        w_exc, w_inh = weight * is_exc, weight * (1 - is_exc)
    if linear:
        return nn.functional.linear(inputs, w_exc), -nn.functional.linear(inputs, w_inh)
    return module._conv_forward(inputs, w_exc, None), -module._conv_forward(inputs, w_inh, None)


def _first_tensor(batch: object, what: str) -> Tensor:
    if isinstance(batch, Tensor):
        return batch
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], Tensor):
        return batch[0]
    raise ValueError(
        f"{what} must be a Tensor or yield Tensors or (inputs, ...) tuples, "
        f"got {type(batch).__name__}"
    )


def _layer_names(
    model: nn.Module, modules: dict[str, nn.Module], layers: Sequence[str] | None
) -> list[str]:
    """The checked ``layers`` of :func:`record_activations` (default: the synaptic layers)."""
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
    return names


def _as_batches(loader_or_tensor: object) -> Iterable:
    """One Tensor becomes a one-batch list; any other iterable is used as it is."""
    if isinstance(loader_or_tensor, Tensor):
        return [loader_or_tensor]
    if isinstance(loader_or_tensor, Iterable):
        return loader_or_tensor
    raise ValueError(
        "loader_or_tensor must be a Tensor or an iterable of batches, "
        f"got {type(loader_or_tensor).__name__}"
    )


def _recording_hook(name: str, captures: list[str], collected: dict):
    def hook(_module: nn.Module, args: tuple, output: object) -> None:
        for capture in captures:
            value = args[0] if capture == "input" else output
            if isinstance(value, (tuple, list)):
                value = value[0]
            if isinstance(value, Tensor):
                # a copy: on the CPU .cpu() aliases, and a later in-place op
                # (ReLU(inplace=True)) would overwrite what was recorded
                collected[(name, capture)].append(value.detach().to("cpu", copy=True))

    return hook


def _run(model: nn.Module, batches: Iterable, handles: list, max_batches: int | None) -> int:
    """Feed ``batches`` in eval mode without gradients; remove ``handles`` and restore the
    training flags whatever happens. Returns the number of batches fed."""
    param = next(model.parameters(), None)
    device = param.device if param is not None else None
    training = {m: m.training for m in model.modules()}
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
    return n_batches


def _empty(names: object) -> bool:
    return isinstance(names, Sequence) and not isinstance(names, str) and len(names) == 0


def record_activations(
    model: nn.Module,
    loader_or_tensor: Tensor | Iterable,
    layers: Sequence[str] | None = None,
    capture: Literal["output", "input"] = "output",
    max_batches: int | None = None,
    missing: Literal["raise", "skip"] = "raise",
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
        missing: a layer the forward pass never called (e.g. the head of another task):
            ``"raise"`` a ``ValueError`` or ``"skip"`` it (left out of the result).

    Returns:
        ``{name: Tensor [n_samples, ...]}`` in the order of ``layers``.
    """
    if capture not in ("output", "input"):
        raise ValueError(f"capture must be 'output' or 'input', got {capture!r}")
    if _empty(layers):
        raise ValueError("layers is empty")
    outputs, inputs = (layers, ()) if capture == "output" else ((), layers)
    found = record_activity(model, loader_or_tensor, outputs, inputs, max_batches, missing)
    return found[0] if capture == "output" else found[1]


def record_activity(
    model: nn.Module,
    loader_or_tensor: Tensor | Iterable,
    outputs: Sequence[str] | None = None,
    inputs: Sequence[str] | None = (),
    max_batches: int | None = None,
    missing: Literal["raise", "skip"] = "raise",
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """What :func:`record_activations` records, outputs of some modules and inputs of others
    in one forward pass: ``({name: output}, {name: input})``.

    ``outputs`` / ``inputs``: module names (``None``: the synaptic layers; ``()``: none); the
    other arguments as for :func:`record_activations`.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be an nn.Module, got {type(model).__name__}")
    if max_batches is not None and max_batches < 1:
        raise ValueError(f"max_batches must be >= 1 or None, got {max_batches}")
    if missing not in ("raise", "skip"):
        raise ValueError(f"missing must be 'raise' or 'skip', got {missing!r}")
    modules = dict(model.named_modules())
    requests = {
        capture: [] if _empty(names) else _layer_names(model, modules, names)
        for capture, names in (("output", outputs), ("input", inputs))
    }
    if not requests["output"] and not requests["input"]:
        raise ValueError("nothing to record: outputs and inputs are both empty")
    collected: dict[tuple[str, str], list[Tensor]] = {
        (n, c): [] for c, names in requests.items() for n in names
    }
    by_module: dict[str, list[str]] = {}
    for name, capture in collected:
        by_module.setdefault(name, []).append(capture)
    batches = _as_batches(loader_or_tensor)
    handles = [
        modules[n].register_forward_hook(_recording_hook(n, c, collected))
        for n, c in by_module.items()
    ]
    n_batches = _run(model, batches, handles, max_batches)
    if n_batches == 0:
        raise ValueError("loader_or_tensor yielded no batches")
    result: tuple[dict[str, Tensor], dict[str, Tensor]] = ({}, {})
    for (name, capture), values in collected.items():
        if not values:
            if missing == "skip":
                continue
            raise ValueError(f"layer {name!r} was not called during the forward pass")
        result[0 if capture == "output" else 1][name] = torch.cat(values, dim=0)
    return result
