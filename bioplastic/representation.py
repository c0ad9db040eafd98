"""Representation probes for whole models: receptive fields, activity, weight scale, gradients.

The per-tensor probes live in :mod:`bioplastic.probes`; this module composes them for a trained
classifier and adds the measurements the robustness analysis needs:

* :func:`first_layer`, :func:`effective_filters`, :func:`receptive_field_grid` and
  :func:`plot_receptive_fields`: first-layer receptive fields as an image grid. With an ON/OFF
  input split (:class:`bioplastic.dale.OnOffSplit`) every input feature reaches the first layer
  twice, through an excitatory copy (weights ``w_E = +m_E >= 0``) and an inhibitory copy
  (weights ``w_I = -m_I <= 0``). Because both copies carry the same value ``x``, the unit's
  response is ``w_E x + w_I x = (m_E - m_I) x``: the *effective filter* is the E-copy magnitude
  minus the I-copy magnitude per input feature, i.e. the sum of the two signed weight halves.
* :func:`activity_profile`: sparseness (population and lifetime), silent units,
  participation-ratio dimensionality, the shape of the activity distribution and E/I input
  balance, per hidden layer.
* :func:`weight_scale_stats`, :func:`lipschitz_upper_bound` and :func:`input_gradient_stats`:
  weight scale, a Lipschitz proxy and local, first-order robustness (the linearised distance to
  the decision boundary), used to ask whether robustness differences come from connectivity or
  from weight scale.
* :func:`log_magnitude_histogram`: a histogram of ``log10 |w|`` with a fitted lognormal.

Everything here is a pure measurement: models are evaluated in eval mode and their modes are
restored; nothing is modified. Plotting uses matplotlib's object-oriented API with the Agg
canvas (no pyplot, no global backend change) and is imported only when a figure is drawn.

Example::

    >>> from bioplastic.dale import BioMLP
    >>> model = BioMLP(64, (32,), 10)
    >>> filters = effective_filters(first_layer(model)[1].weight, on_off=True)
    >>> receptive_field_grid(filters, (8, 8)).shape   # 32 filters on a 6 x 6 grid of 8x8 tiles
    torch.Size([53, 53])
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from bioplastic.dale import OnOffSplit, on_off_sign
from bioplastic.probes import (
    activity_distribution_stats,
    ei_input_balance,
    lifetime_sparseness,
    participation_ratio,
    population_sparseness,
    record_activations,
    silent_fraction,
    synaptic_layers,
)

__all__ = [
    "activity_profile",
    "effective_filters",
    "first_layer",
    "input_gradient_stats",
    "lipschitz_upper_bound",
    "log_magnitude_histogram",
    "plot_receptive_fields",
    "receptive_field_grid",
    "weight_scale_stats",
]


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, flag in modes:
            m.training = flag


def _check_model(model: object) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be an nn.Module, got {type(model).__name__}")
    return model


def _has_on_off(model: nn.Module) -> bool:
    return any(isinstance(m, OnOffSplit) for m in model.modules())


# --------------------------------------------------------------------------- receptive fields


def first_layer(model: nn.Module) -> tuple[str, nn.Module, bool]:
    """The first synaptic layer of ``model`` and whether it reads an ON/OFF-split input.

    Returns ``(name, module, on_off)``; ``on_off`` is True when the model contains an
    :class:`~bioplastic.dale.OnOffSplit` and the layer's presynaptic types are ``n`` excitatory
    followed by ``n`` inhibitory units (the :func:`~bioplastic.dale.on_off_sign` pattern).
    """
    layers = synaptic_layers(_check_model(model))
    if not layers:
        raise ValueError("model has no nn.Linear or convolution layer")
    name, module = layers[0]
    sign = getattr(module, "dale_sign", None)
    n_pre = module.weight.shape[1]
    on_off = (
        _has_on_off(model)
        and sign is not None
        and n_pre % 2 == 0
        and torch.equal(sign.detach().cpu().float(), on_off_sign(n_pre // 2))
    )
    return name, module, bool(on_off)


def effective_filters(
    weight: Tensor, dale_sign: Tensor | None = None, on_off: bool | None = None
) -> Tensor:
    """First-layer filters in input space: ``[n_units, n_inputs]`` float tensor.

    Without an ON/OFF split this is ``weight`` flattened to ``[n_units, -1]``. With one
    (``weight`` is ``[n_units, 2n]``, columns ``0..n-1`` the excitatory copies of the ``n``
    input features and ``n..2n-1`` the inhibitory copies), the effective filter is
    ``w[:, :n] + w[:, n:]``: the E-copy magnitude minus the I-copy magnitude per feature,
    ``m_E - m_I``, since both copies see the same input (see the module docstring).

    Args:
        weight: a Linear weight ``[n_units, n_pre]`` (convolution weights are flattened per unit).
        dale_sign: presynaptic types ``[n_pre]``; used to detect the ON/OFF pattern when
            ``on_off`` is None.
        on_off: force (True) or rule out (False) the ON/OFF interpretation; ``None``: True iff
            ``dale_sign`` is given and equals ``on_off_sign(n_pre // 2)``.
    """
    if not isinstance(weight, Tensor) or weight.dim() < 2:
        raise ValueError("weight must be a tensor with at least 2 dimensions [n_units, n_pre, ...]")
    w = weight.detach().reshape(weight.shape[0], -1).float().cpu()
    n_pre = weight.shape[1]
    if on_off is None:
        on_off = (
            dale_sign is not None
            and n_pre % 2 == 0
            and dale_sign.numel() == n_pre
            and torch.equal(dale_sign.detach().cpu().float(), on_off_sign(n_pre // 2))
        )
    if not on_off:
        return w
    if weight.dim() != 2 or n_pre % 2:
        raise ValueError(
            f"an ON/OFF first layer must be a Linear weight with an even number of inputs, "
            f"got shape {tuple(weight.shape)}"
        )
    half = n_pre // 2
    return w[:, :half] + w[:, half:]


def receptive_field_grid(
    weight: Tensor,
    image_shape: Sequence[int],
    *,
    ncols: int | None = None,
    pad: int | None = None,
    normalize: bool = True,
) -> Tensor:
    """Tile filters into one 2-D image: ``[rows*(h+pad)-pad, ncols*(w+pad)-pad]``.

    Args:
        weight: ``[n_filters, prod(image_shape)]`` filters in input space (e.g. from
            :func:`effective_filters`).
        image_shape: ``(h, w)`` of one input image, or ``(length,)`` for 1-D signals, which are
            drawn as ``h = 1`` strips stacked in one column (defaults ``ncols=1``, ``pad=0``:
            the result is ``[n_filters, length]``, one filter per row).
        ncols: tiles per row; default ``ceil(sqrt(n_filters))`` for images.
        pad: pixels between tiles (filled with NaN, drawn blank); default 1 for images.
        normalize: divide each filter by its largest absolute value (so tiles are in
            ``[-1, 1]`` and comparable in shape, not scale); all-zero filters stay 0.

    Returns:
        A float32 tensor; filter ``k`` occupies tile ``(k // ncols, k % ncols)``, unused tiles
        are NaN.
    """
    if not isinstance(weight, Tensor) or weight.dim() != 2:
        raise ValueError("weight must be a 2-D tensor [n_filters, n_inputs]")
    shape = tuple(int(s) for s in image_shape)
    if len(shape) not in (1, 2) or any(s < 1 for s in shape):
        raise ValueError(f"image_shape must be (h, w) or (length,) of positive ints, got {shape}")
    h, w = (1, shape[0]) if len(shape) == 1 else shape
    if weight.shape[1] != h * w:
        raise ValueError(
            f"filters have {weight.shape[1]} inputs but image_shape {shape} has {h * w} pixels"
        )
    n = weight.shape[0]
    if n == 0:
        raise ValueError("weight has no filters")
    if ncols is None:
        ncols = 1 if h == 1 else math.ceil(math.sqrt(n))
    if pad is None:
        pad = 0 if h == 1 else 1
    if not isinstance(ncols, int) or ncols < 1:
        raise ValueError(f"ncols must be a positive int, got {ncols!r}")
    if not isinstance(pad, int) or pad < 0:
        raise ValueError(f"pad must be an int >= 0, got {pad!r}")
    filters = weight.detach().float().cpu()
    if normalize:
        scale = filters.abs().amax(dim=1, keepdim=True)
        filters = torch.where(scale > 0, filters / scale.clamp(min=1e-30), filters)
    rows = math.ceil(n / ncols)
    grid = torch.full((rows * (h + pad) - pad, ncols * (w + pad) - pad), math.nan)
    for k in range(n):
        r, c = divmod(k, ncols)
        top, left = r * (h + pad), c * (w + pad)
        grid[top : top + h, left : left + w] = filters[k].reshape(h, w)
    return grid


def plot_receptive_fields(
    grids: Mapping[str, Tensor],
    path: str | Path,
    *,
    title: str = "First-layer receptive fields",
    colorbar_label: str = "filter weight / max |weight|",
    xlabel: str = "input column (pixel)",
    ylabel: str = "input row (pixel)",
) -> Path:
    """Draw one :func:`receptive_field_grid` per panel (e.g. per learning rule) into a PNG.

    Diverging colours centred at 0 (red excitatory-dominated, blue inhibitory-dominated), one
    shared colour bar. Returns the written path (parent folders are created).
    """
    if not grids:
        raise ValueError("grids must hold at least one grid")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = len(grids)
    first = next(iter(grids.values()))
    aspect = first.shape[0] / max(first.shape[1], 1)
    width = 3.4 * n + 0.8
    height = max(2.6, min(9.0, 3.0 * aspect + 1.0))
    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, n, squeeze=False)[0]
    image = None
    for ax, (label, grid) in zip(axes, grids.items(), strict=True):
        image = ax.imshow(
            grid.numpy(), cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest", aspect="auto"
        )
        ax.set_title(label)
        ax.set_xlabel(xlabel)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0].set_ylabel(ylabel)
    fig.suptitle(title)
    fig.colorbar(image, ax=list(axes), shrink=0.85, label=colorbar_label)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


# --------------------------------------------------------------------------- activity


def _nanmean(t: Tensor) -> float:
    t = t[torch.isfinite(t)]
    return float(t.mean()) if t.numel() else math.nan


def activity_profile(
    model: nn.Module,
    inputs: Tensor,
    *,
    layers: Sequence[str] | None = None,
    silent_eps: float = 1e-6,
) -> dict[str, dict[str, float]]:
    """Activity probes of every hidden layer on ``inputs``, and E/I balance of every synaptic layer.

    For each activation layer (default: every ``nn.ReLU`` module; pass ``layers`` to choose),
    on its outputs ``r`` (``[n_samples, n_units]``, non-negative):
    ``population_sparseness`` and ``lifetime_sparseness`` (Vinje-Gallant, in [0, 1]),
    ``silent_fraction`` (units with ``max |r| <= silent_eps``), ``participation_ratio`` (in
    ``[1, n_units]``) and its fraction of ``n_units`` (``participation_ratio_fraction``), and
    the distribution shape of all entries (``mean``, ``std``, ``skewness``,
    ``excess_kurtosis``, ``fraction_zero``). For each synaptic layer under key
    ``"<name> (E/I)"``: ``ei_ratio_median`` (median over units of mean E / mean I input
    current; 1 = balanced) and ``ei_correlation_mean`` (mean over units of the correlation of
    E and I currents across samples; near 1 = inhibition tracks excitation). Non-finite
    per-unit values (silent units) are left out of these averages.
    """
    model = _check_model(model)
    if not isinstance(inputs, Tensor) or inputs.dim() < 2 or len(inputs) < 2:
        raise ValueError("inputs must be a tensor batch with at least 2 samples")
    if layers is None:
        layers = [name for name, m in model.named_modules() if isinstance(m, nn.ReLU)]
        if not layers:
            raise ValueError("model has no nn.ReLU module; pass layers=[...] explicitly")
    acts = record_activations(model, inputs, layers=list(layers))
    out: dict[str, dict[str, float]] = {}
    for name, a in acts.items():
        a = a.reshape(len(a), -1)
        if (a < 0).any():
            raise ValueError(f"layer {name!r} has negative activity; pick post-ReLU layers")
        pr = participation_ratio(a)
        row = {
            "n_units": a.shape[1],
            "population_sparseness": population_sparseness(a),
            "lifetime_sparseness": lifetime_sparseness(a),
            "silent_fraction": silent_fraction(a, eps=silent_eps),
            "participation_ratio": pr,
            "participation_ratio_fraction": pr / a.shape[1],
        }
        row.update(activity_distribution_stats(a))
        out[name] = row
    syn = synaptic_layers(model)
    received = record_activations(model, inputs, layers=[n for n, _ in syn], capture="input")
    modules = dict(syn)
    for name, x in received.items():
        balance = ei_input_balance(modules[name], x)
        ratio = balance["ratio"]
        finite = ratio[torch.isfinite(ratio)]
        out[f"{name} (E/I)"] = {
            "ei_ratio_median": float(finite.median()) if finite.numel() else math.nan,
            "ei_correlation_mean": _nanmean(balance["correlation"]),
        }
    return out


# --------------------------------------------------------------------------- weight scale


def _effective_weights(model: nn.Module) -> list[tuple[str, Tensor]]:
    """Synaptic weights as they act on the layer's real input (ON/OFF halves folded)."""
    name0, _, on_off = first_layer(model)
    out = []
    for name, m in synaptic_layers(model):
        w = m.weight.detach().float().cpu()
        if name == name0 and on_off:
            w = effective_filters(w, on_off=True)
        out.append((name, w.reshape(w.shape[0], -1)))
    return out


def weight_scale_stats(model: nn.Module) -> dict[str, dict[str, float]]:
    """Per synaptic layer: ``frobenius`` norm, ``spectral`` norm (largest singular value),
    ``mean_abs_present`` (mean ``|w|`` over present synapses) and ``rms`` (root mean square
    over all entries). The first layer of an ON/OFF model is measured on its effective filters
    (:func:`effective_filters`), the map the layer actually applies to the input; weights of
    convolutions are flattened per output channel (``spectral`` is then a proxy, not the norm
    of the convolution operator).
    """
    out = {}
    for name, w in _effective_weights(_check_model(model)):
        present = w[w != 0]
        out[name] = {
            "frobenius": float(torch.linalg.matrix_norm(w, "fro")),
            "spectral": float(torch.linalg.matrix_norm(w, 2)),
            "mean_abs_present": float(present.abs().mean()) if present.numel() else 0.0,
            "rms": float(w.pow(2).mean().sqrt()),
        }
    return out


def lipschitz_upper_bound(model: nn.Module) -> float:
    """Product of the layers' spectral norms: an upper bound on the L2 Lipschitz constant of
    the logits with respect to the input, for feed-forward chains of Linear layers and
    1-Lipschitz activations (ReLU; max-pooling) such as :class:`~bioplastic.dale.BioMLP`.

    In logit units per input unit. It scales with every layer's weight scale, so compare it
    across rules only together with the logit margin (:func:`input_gradient_stats`): for a
    ReLU network, multiplying a layer's weights and all later biases by ``c > 0`` multiplies
    the bound and the logits by ``c`` and leaves every decision unchanged.

    An inhibited layer (:mod:`bioplastic.inhibition`) reads ``[h; I h]``, whose norm is at most
    ``sqrt(1 + ||I||^2) ||h||``: that is the factor of its interneurons ``I``.
    """
    from bioplastic.inhibition import is_interneuron_layer

    averaging = {n for n, m in synaptic_layers(model) if is_interneuron_layer(m)}
    stats = weight_scale_stats(model)
    return float(math.prod(math.hypot(1.0, s["spectral"]) if name in averaging else s["spectral"]
                           for name, s in stats.items()))  # fmt: skip


def _margin(logits: Tensor, y: Tensor) -> Tensor:
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), -math.inf).amax(dim=1)
    return true - other


def input_gradient_stats(
    model: nn.Module,
    inputs: Tensor,
    labels: Tensor,
    *,
    input_range: Sequence[float] = (0.0, 1.0),
    batch_size: int = 512,
) -> dict[str, float]:
    """Local sensitivity of ``model`` to its input, in units of the input range.

    Gradients are taken with respect to ``u = (x - lo) / (hi - lo)``, the input rescaled to
    ``[0, 1]`` (the space in which :mod:`bioplastic.robustness` measures ``eps``). Returns:

    * ``ce_grad_l1``, ``ce_grad_l2``: mean over samples of the L1 / L2 norm of the gradient of
      the cross-entropy loss (the L1 norm is what a first-order L-inf attack exploits:
      ``loss(u + eps * sign(g)) ~ loss(u) + eps * ||g||_1``);
    * ``logit_margin``: mean over correctly classified samples of ``z_y - max_{k != y} z_k``;
    * ``margin_grad_l1``: mean over correctly classified samples of ``||d margin / du||_1``;
    * ``linearized_radius_linf``: median over correctly classified samples of
      ``margin / ||d margin / du||_1``, the L-inf distance to the decision boundary of the
      linearised model (directly comparable with L-inf ``eps``; scale-free: multiplying the
      logits by ``c > 0`` does not change it); ``linearized_radius_l2`` likewise with the L2
      norm;
    * ``n_correct``: how many samples entered the margin statistics.
    """
    model = _check_model(model)
    lo, hi = (float(v) for v in input_range)
    if not hi > lo:
        raise ValueError(f"input_range must satisfy lo < hi, got {(lo, hi)}")
    if len(inputs) != len(labels) or len(inputs) == 0:
        raise ValueError("inputs and labels must be non-empty and of equal length")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    ce_l1, ce_l2, margins, m_l1, r_inf, r_l2 = [], [], [], [], [], []
    device = next(model.parameters()).device
    with _eval_mode(model), torch.enable_grad():
        for start in range(0, len(inputs), batch_size):
            x = inputs[start : start + batch_size].to(device).float()
            y = labels[start : start + batch_size].to(device)
            u = ((x - lo) / (hi - lo)).detach().requires_grad_(True)
            logits = model(lo + (hi - lo) * u)
            (g,) = torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), u)
            g = g.reshape(len(u), -1)
            ce_l1.append(g.abs().sum(1))
            ce_l2.append(g.norm(dim=1))
            u2 = ((x - lo) / (hi - lo)).detach().requires_grad_(True)
            logits = model(lo + (hi - lo) * u2)
            margin = _margin(logits, y)
            (gm,) = torch.autograd.grad(margin.sum(), u2)
            gm = gm.reshape(len(u2), -1)
            ok = margin.detach() > 0
            margins.append(margin.detach()[ok])
            l1, l2 = gm.abs().sum(1)[ok], gm.norm(dim=1)[ok]
            m_l1.append(l1)
            r_inf.append(margin.detach()[ok] / l1.clamp(min=1e-30))
            r_l2.append(margin.detach()[ok] / l2.clamp(min=1e-30))
    cat = [torch.cat(v).double().cpu() for v in (ce_l1, ce_l2, margins, m_l1, r_inf, r_l2)]
    ce_l1_t, ce_l2_t, margin_t, m_l1_t, r_inf_t, r_l2_t = cat
    n_correct = int(margin_t.numel())

    def mean(t: Tensor) -> float:
        return float(t.mean()) if t.numel() else math.nan

    def median(t: Tensor) -> float:
        return float(t.median()) if t.numel() else math.nan

    return {
        "ce_grad_l1": mean(ce_l1_t),
        "ce_grad_l2": mean(ce_l2_t),
        "logit_margin": mean(margin_t),
        "margin_grad_l1": mean(m_l1_t),
        "linearized_radius_linf": median(r_inf_t),
        "linearized_radius_l2": median(r_l2_t),
        "n_correct": n_correct,
    }


# --------------------------------------------------------------------------- weight histograms


def log_magnitude_histogram(
    weights: Tensor | Sequence[Tensor],
    *,
    bins: int | Sequence[float] = 60,
    log10_range: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """Histogram of ``log10 |w|`` over present synapses (``w != 0``) with a fitted lognormal.

    The fit is the maximum-likelihood lognormal of ``|w|``: ``mu`` and ``sigma`` are the mean
    and std (ddof=0) of ``ln |w|``; in ``log10`` units the fitted density of ``log10 |w|`` is
    normal with mean ``mu / ln 10`` and std ``sigma / ln 10``. Returns a JSON-ready dict:
    ``edges`` (``log10 |w|``), ``density`` (per unit of ``log10 |w|``, integrates to 1),
    ``counts``, ``n_present``, ``n_total``, ``mu``, ``sigma`` (natural-log units),
    ``log10_mean``, ``log10_std`` and ``ks_distance`` (sup distance between the empirical
    CDF of the standardised log-magnitudes and N(0, 1)).
    """
    if isinstance(weights, Tensor):
        weights = [weights]
    if not weights:
        raise ValueError("weights must hold at least one tensor")
    flat = torch.cat([w.detach().reshape(-1).double().cpu() for w in weights])
    present = flat[flat != 0]
    if present.numel() < 2:
        raise ValueError("need at least 2 present (non-zero) synapses for a histogram")
    logm = torch.log(present.abs())
    mu, sigma = float(logm.mean()), float(logm.std(unbiased=False))
    log10 = logm / math.log(10.0)
    if isinstance(bins, int):
        if bins < 1:
            raise ValueError(f"bins must be >= 1, got {bins}")
        lo, hi = (
            log10_range if log10_range is not None else (float(log10.min()), float(log10.max()))
        )
        if hi <= lo:
            hi = lo + 1.0
        edges = torch.linspace(lo, hi, bins + 1, dtype=torch.float64)
    else:
        edges = torch.as_tensor(list(bins), dtype=torch.float64)
        if edges.numel() < 2 or not bool((edges[1:] > edges[:-1]).all()):
            raise ValueError("bins must be an int or an increasing sequence of >= 2 edges")
    counts = torch.histogram(log10.clamp(edges[0], edges[-1]), bins=edges).hist
    widths = edges[1:] - edges[:-1]
    density = counts / (counts.sum() * widths)
    if sigma > 0:
        z, _ = torch.sort((logm - mu) / sigma)
        n = z.numel()
        cdf = 0.5 * (1 + torch.erf(z / math.sqrt(2.0)))
        ks = float(
            torch.maximum(
                (torch.arange(1, n + 1, dtype=torch.float64) / n - cdf).abs(),
                (cdf - torch.arange(0, n, dtype=torch.float64) / n).abs(),
            ).max()
        )
    else:
        ks = math.nan
    return {
        "edges": [float(e) for e in edges],
        "counts": [int(c) for c in counts],
        "density": [float(d) for d in density],
        "n_present": int(present.numel()),
        "n_total": int(flat.numel()),
        "mu": mu,
        "sigma": sigma,
        "log10_mean": mu / math.log(10.0),
        "log10_std": sigma / math.log(10.0),
        "ks_distance": ks,
    }
