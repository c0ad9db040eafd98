"""The probes of :mod:`bioplastic.probes` as Avalanche ``PluginMetric``s.

Every logger of an ``EvaluationPlugin`` receives them. They are computed once per experience,
never per iteration:

* :class:`WeightProbeMetric` (after each training experience): per synaptic layer the
  connectivity, Dale violations, sign flips since the start of training, log-magnitude
  statistics and E/I totals, the rule's structural counts when the optimizer is a BioRule, and
  histograms of the weights and log-magnitudes;
* :class:`ActivityProbeMetric` (after each evaluated experience, on a fixed probe batch of that
  experience's evaluation data): population and lifetime sparseness, silent fraction,
  participation ratio, E/I input balance and activity histograms;
* :class:`TaskEncodingMetric` (after each training experience): the synapses and units each
  task recruited, task x task Jaccard overlaps, capacity used and free, and the task x unit
  allocation heatmap.

Values are plain numbers (scalars in TensorBoard), :class:`HistogramValue` (a TensorBoard
histogram; printed as a one-line summary) and :class:`MatrixValue` (a heatmap image in
TensorBoard; the numbers in the JSON results). Names start with ``probe/``.

The probes work for any model, with or without Dale types: for a PackNet model the
task-encoding probe reads the *effective* weights (PackNet's masks applied), so a PackNet run's
allocation can be checked against PackNet's own per-task weight ownership.

Example::

    evaluator = make_evaluator(tensorboard_dir="runs/bio", json_path="runs/bio/results.json")
    strategy = BioPlastic(model, evaluator=evaluator)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from avalanche.evaluation import PluginMetric
from avalanche.evaluation.metric_results import AlternativeValues, MetricValue, TensorImage
from avalanche.models.utils import avalanche_forward
from torch import Tensor, nn

from bioplastic import BioRule
from bioplastic import probes as P
from strategies.avalanche.benchmarks import _first_inputs

__all__ = [
    "ActivityProbeMetric",
    "HistogramValue",
    "MatrixValue",
    "TaskEncodingMetric",
    "WeightProbeMetric",
    "probe_metrics",
    "record_units",
    "synapse_weights",
    "unit_layers",
]

#: Modules whose outputs count as units' activities (firing rates) by default.
ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Sigmoid,
    nn.Tanh,
    nn.Softplus,
)


# ---------------------------------------------------------------------------- values


class HistogramValue(AlternativeValues):
    """Samples for a TensorBoard histogram; loggers without histograms print a summary."""

    def __init__(self, values: Tensor):
        values = values.detach().reshape(-1).to("cpu", torch.float32)
        super().__init__(values)
        self.values = values

    def summary(self) -> dict[str, float]:
        """``n``, ``mean``, ``std``, ``min``, ``max`` of the samples (NaN when empty)."""
        v = self.values[torch.isfinite(self.values)].double()
        if v.numel() == 0:
            return {"n": 0, "mean": math.nan, "std": math.nan, "min": math.nan, "max": math.nan}
        return {
            "n": int(v.numel()),
            "mean": float(v.mean()),
            "std": float(v.std(unbiased=False)),
            "min": float(v.min()),
            "max": float(v.max()),
        }

    def __str__(self) -> str:
        s = self.summary()
        return f"histogram(n={s['n']}, mean={s['mean']:.4g}, std={s['std']:.4g})"


class MatrixValue(AlternativeValues):
    """A small matrix (task x task overlap, task x unit allocation) and its heatmap image.

    TensorBoard gets the image; :class:`strategies.avalanche.JSONResultsLogger` stores the
    numbers (``matrix.tolist()``); text loggers print the shape.

    Args:
        matrix: values in [0, 1] (NaN drawn grey).
        title, xlabel, ylabel: labels of a ``"labeled"`` figure.
        figure: ``"fast"`` (or True): the matrix drawn cell by cell with matplotlib's viridis
            colormap (about a millisecond); ``"labeled"``: a matplotlib figure (Agg backend)
            with title, axes and colour bar (about 0.2 s); ``False``/``None``: no image.
    """

    def __init__(
        self,
        matrix: Tensor,
        title: str = "",
        figure: bool | str | None = "fast",
        xlabel: str = "",
        ylabel: str = "",
    ):
        matrix = matrix.detach().to("cpu", torch.float64)
        if figure is True:
            figure = "fast"
        if figure not in ("fast", "labeled", False, None):
            raise ValueError(
                f"figure must be 'fast', 'labeled', True, False or None, got {figure!r}"
            )
        image = None
        if figure == "fast":
            image = _fast_heatmap(matrix)
        elif figure == "labeled":
            image = _labeled_heatmap(matrix, title, xlabel, ylabel)
        super().__init__(*([image] if image is not None else []))
        self.matrix = matrix
        self.title = title

    def tolist(self) -> list[list[float | None]]:
        """The matrix as nested lists, NaN as ``None`` (JSON-safe)."""
        return [[v if math.isfinite(v) else None for v in row] for row in self.matrix.tolist()]

    def __str__(self) -> str:
        return f"matrix{tuple(self.matrix.shape)}"


def _fast_heatmap(matrix: Tensor) -> TensorImage:
    """Each cell a block of pixels coloured by viridis on [0, 1]; ``[3, H, W]`` in [0, 1]."""
    from matplotlib import colormaps

    cmap = colormaps["viridis"].with_extremes(bad="0.5")
    rows, cols = matrix.shape
    rgb = cmap(np.ma.masked_invalid(matrix.clamp(0, 1).numpy()))[..., :3]
    height = max(1, min(32, 256 // max(rows, 1)))
    width = max(1, min(32, 512 // max(cols, 1)))
    rgb = np.repeat(np.repeat(rgb, height, axis=0), width, axis=1)
    return TensorImage(torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float())


def _labeled_heatmap(matrix: Tensor, title: str, xlabel: str, ylabel: str) -> TensorImage:
    """Render ``matrix`` as a heatmap with the Agg backend (no pyplot, no global state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows, cols = matrix.shape
    width = min(10.0, 2.5 + 0.35 * cols) if cols <= 24 else 8.0
    fig = Figure(figsize=(width, min(8.0, 1.8 + 0.35 * rows)), dpi=80)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(matrix.numpy(), vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto",
                   interpolation="nearest")  # fmt: skip
    fig.colorbar(im, ax=ax)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if rows <= 20:
        ax.set_yticks(range(rows))
    if cols <= 20:
        ax.set_xticks(range(cols))
    fig.tight_layout()
    canvas.draw()
    rgb = np.asarray(canvas.buffer_rgba())[..., :3].copy()
    return TensorImage(torch.from_numpy(rgb).permute(2, 0, 1).contiguous())


# ---------------------------------------------------------------------------- helpers


def synapse_weights(model: nn.Module) -> dict[str, Tensor]:
    """The effective weight of every synaptic layer, detached, keyed by layer name.

    For layers wrapped by PackNet (a wrapper with ``available_weights()``), the weight PackNet
    currently uses (its mask applied); otherwise ``module.weight``.
    """
    wrappers = {
        id(m.wrappee): m
        for m in model.modules()
        if hasattr(m, "available_weights") and isinstance(getattr(m, "wrappee", None), nn.Module)
    }
    weights = {}
    for name, module in P.synaptic_layers(model):
        wrapper = wrappers.get(id(module))
        weight = wrapper.available_weights() if wrapper is not None else module.weight
        weights[name] = weight.detach()
    return weights


def unit_layers(model: nn.Module, layers: Sequence[str] | None = None) -> tuple[list[str], bool]:
    """Names of the modules whose outputs are the units' activities, and whether to rectify.

    Default: every activation module (``nn.ReLU``, ...). A model without activation modules
    (functional activations) falls back to the outputs of all synaptic layers but the last,
    rectified (``max(0, .)``). Explicit ``layers`` are used as they are.
    """
    modules = dict(model.named_modules())
    if layers is not None:
        if isinstance(layers, str):
            raise TypeError("layers must be a sequence of module names, not a string")
        unknown = [n for n in layers if n not in modules]
        if unknown:
            raise ValueError(f"layers not found in the model: {unknown}")
        return list(layers), False
    names = [name for name, m in model.named_modules() if isinstance(m, ACTIVATIONS)]
    if names:
        return names, False
    synaptic = [name for name, _ in P.synaptic_layers(model)]
    return synaptic[:-1] or synaptic, True


def _hook_target(model: nn.Module, name: str) -> nn.Module:
    """The module whose forward sees ``name``'s inputs (PackNet calls its wrapper instead)."""
    module = dict(model.named_modules())[name]
    for m in model.modules():
        if getattr(m, "wrappee", None) is module and hasattr(m, "available_weights"):
            return m
    return module


@torch.no_grad()
def record_units(
    model: nn.Module,
    x: Tensor,
    task_labels: Tensor,
    layers: Sequence[str],
    *,
    rectify: bool = False,
    inputs_of: Sequence[str] = (),
    batch_size: int = 256,
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Run ``model`` on ``x`` (with task labels, as Avalanche does) and collect activities.

    Returns ``({layer: [n, units]}, {layer: inputs})``: outputs of ``layers`` (convolutional
    maps averaged over space, so units are channels; rectified if ``rectify``) and the inputs
    received by the synaptic layers named in ``inputs_of``. Runs in eval mode without gradients;
    every module's training flag is restored and all hooks are removed.
    """
    outputs: dict[str, list[Tensor]] = {n: [] for n in layers}
    inputs: dict[str, list[Tensor]] = {n: [] for n in inputs_of}
    modules = dict(model.named_modules())

    def out_hook(name: str):
        def hook(_m: nn.Module, _args: tuple, out: Any) -> None:
            if isinstance(out, Tensor):
                out = out.detach().to("cpu", torch.float32, copy=True)
                if out.dim() > 2:
                    out = out.flatten(2).mean(-1)
                outputs[name].append(out.clamp(min=0) if rectify else out)

        return hook

    def in_hook(name: str):
        def hook(_m: nn.Module, args: tuple, _out: Any) -> None:
            if args and isinstance(args[0], Tensor):
                inputs[name].append(args[0].detach().to("cpu", torch.float32, copy=True))

        return hook

    handles = [modules[n].register_forward_hook(out_hook(n)) for n in layers]
    handles += [_hook_target(model, n).register_forward_hook(in_hook(n)) for n in inputs_of]
    flags = {m: m.training for m in model.modules()}
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    try:
        model.eval()
        for start in range(0, len(x), batch_size):
            xb = x[start : start + batch_size].to(device)
            tb = task_labels[start : start + batch_size].to(device)
            avalanche_forward(model, xb, tb)
    finally:
        for handle in handles:
            handle.remove()
        for m, flag in flags.items():
            m.training = flag
    acts = {n: torch.cat(v) for n, v in outputs.items() if v}
    ins = {n: torch.cat(v) for n, v in inputs.items() if v}
    return acts, ins


def _layer_tag(name: str) -> str:
    return name if name else "model"


def _x(strategy: Any) -> int:
    return int(strategy.clock.train_iterations)


def _nanmean(values: Tensor) -> float:
    values = values[torch.isfinite(values)]
    return float(values.mean()) if values.numel() else math.nan


class _ProbeMetric(PluginMetric):
    """Common bookkeeping: the last emitted values are the ``result()``."""

    def __init__(self) -> None:
        super().__init__()
        self._last: dict[str, Any] = {}

    def result(self) -> dict[str, Any]:
        return dict(self._last)

    def reset(self) -> None:
        self._last = {}

    def _emit(self, strategy: Any, values: Mapping[str, Any]) -> list[MetricValue]:
        self._last = dict(values)
        x = _x(strategy)
        return [MetricValue(self, name, value, x) for name, value in values.items()]


# ---------------------------------------------------------------------------- weights


class WeightProbeMetric(_ProbeMetric):
    """Weight probes of every synaptic layer, once after each training experience.

    Emits ``probe/weights/<layer>/<stat>`` for the statistics of
    :func:`bioplastic.probes.weight_report` (``connectivity``, ``dale_violations``,
    ``sign_flips`` against the weights at the start of training, ``log_mag_*``,
    ``excitatory``, ``inhibitory``, ``ei_ratio``), totals over the model
    (``probe/weights/connectivity``, ``probe/weights/dale_violations``,
    ``probe/weights/sign_flips``), with a BioRule optimizer ``probe/rule/eliminated``,
    ``probe/rule/grown``, ``probe/rule/consolidated`` and ``probe/rule/nonfinite_skips``, and
    (``histograms=True``) ``probe/weights/<layer>/weights`` and ``.../log_magnitude`` histograms
    of the present synapses.
    """

    def __init__(self, histograms: bool = True):
        super().__init__()
        if not isinstance(histograms, bool):
            raise TypeError(f"histograms must be a bool, got {histograms!r}")
        self.histograms = histograms
        self.reference: dict[str, Tensor] = {}

    def _remember(self, model: nn.Module) -> None:
        for name, module in P.synaptic_layers(model):
            key = f"{name}.weight" if name else "weight"
            ref = self.reference.get(key)
            if ref is None or ref.shape != module.weight.shape:
                self.reference[key] = module.weight.detach().to("cpu", copy=True)

    def before_training(self, strategy: Any) -> None:
        self._remember(strategy.model)

    def before_training_exp(self, strategy: Any) -> None:
        self._remember(strategy.model)  # layers added since (new heads)

    @torch.no_grad()
    def after_training_exp(self, strategy: Any) -> list[MetricValue]:
        model = strategy.model
        reference = {k: v.to(_device(model)) for k, v in self.reference.items()}
        report = P.weight_report(model, reference)
        values: dict[str, Any] = {}
        total = present = violations = flips = 0
        for name, row in report.items():
            tag = _layer_tag(name)
            for key, value in row.items():
                if key in ("n_synapses", "n_present"):
                    continue
                values[f"probe/weights/{tag}/{key}"] = value
            total += row["n_synapses"]
            present += row["n_present"]
            violations += row["dale_violations"]
            flips += row.get("sign_flips", 0)
        values["probe/weights/connectivity"] = present / total if total else math.nan
        values["probe/weights/dale_violations"] = violations
        values["probe/weights/sign_flips"] = flips
        opt = getattr(strategy, "optimizer", None)
        if isinstance(opt, BioRule):
            counts = opt.structural_counts()
            consolidated = sum(
                int((state["plasticity"] < 1).sum())
                for state in opt.state.values()
                if "plasticity" in state
            )
            values["probe/rule/eliminated"] = counts["eliminated"]
            values["probe/rule/grown"] = counts["grown"]
            values["probe/rule/nonfinite_skips"] = counts["nonfinite_skips"]
            values["probe/rule/consolidated"] = consolidated
        if self.histograms:
            for name, module in P.synaptic_layers(model):
                w = module.weight.detach()
                w = w[w != 0]
                tag = _layer_tag(name)
                values[f"probe/weights/{tag}/weights"] = HistogramValue(w)
                values[f"probe/weights/{tag}/log_magnitude"] = HistogramValue(torch.log(w.abs()))
        return self._emit(strategy, values)

    def __str__(self) -> str:
        return "WeightProbes"


def _device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


# ---------------------------------------------------------------------------- activity


class ActivityProbeMetric(_ProbeMetric):
    """Activity probes on a fixed probe batch of each evaluated experience.

    After each evaluation experience, the first ``probe_size`` samples of that experience's
    evaluation data (the same samples every time) go through the model; for every unit layer
    (see :func:`unit_layers`) it emits ``probe/activity/<layer>/<stat>/Exp<eee>`` for
    ``population_sparseness``, ``lifetime_sparseness``, ``silent_fraction``,
    ``participation_ratio`` (non-negative activities only for the sparseness measures), for
    every synaptic layer ``probe/activity/<layer>/ei_ratio`` and ``.../ei_correlation`` (means
    over postsynaptic units of :func:`bioplastic.probes.ei_input_balance`), and
    (``histograms=True``) a histogram of the activities per unit layer.

    Args:
        probe_size: samples in the probe batch (>= 2).
        layers: names of the modules whose outputs are units (default: activation modules).
        histograms: emit activity histograms.
        ei_balance: compute the E/I input balance of the synaptic layers.
    """

    def __init__(
        self,
        probe_size: int = 256,
        layers: Sequence[str] | None = None,
        histograms: bool = True,
        ei_balance: bool = True,
    ):
        super().__init__()
        if isinstance(probe_size, bool) or not isinstance(probe_size, int) or probe_size < 2:
            raise ValueError(f"probe_size must be an int >= 2, got {probe_size!r}")
        self.probe_size = probe_size
        self.layers = None if layers is None else list(layers)
        self.histograms = bool(histograms)
        self.ei_balance = bool(ei_balance)
        self._batches: dict[tuple[str, int], tuple[Tensor, Tensor]] = {}

    def _probe_batch(self, strategy: Any) -> tuple[tuple[str, int], Tensor, Tensor]:
        exp = strategy.experience
        stream = getattr(getattr(exp, "origin_stream", None), "name", "stream")
        key = (stream, int(exp.current_experience))
        if key not in self._batches:
            dataset = strategy.adapted_dataset
            if dataset is None:
                dataset = exp.dataset.eval()
            self._batches[key] = _first_inputs(dataset, self.probe_size)
        x, t = self._batches[key]
        return key, x, t

    @torch.no_grad()
    def after_eval_exp(self, strategy: Any) -> list[MetricValue]:
        model = strategy.model
        (_, eid), x, t = self._probe_batch(strategy)
        names, rectify = unit_layers(model, self.layers)
        synaptic = dict(P.synaptic_layers(model)) if self.ei_balance else {}
        acts, inputs = record_units(model, x, t, names, rectify=rectify, inputs_of=list(synaptic))
        suffix = f"Exp{eid:03d}"
        values: dict[str, Any] = {}
        for name, a in acts.items():
            tag = _layer_tag(name)
            if a.dim() != 2 or a.shape[0] < 2:
                continue
            if a.shape[1] >= 2 and bool((a >= 0).all()):
                values[f"probe/activity/{tag}/population_sparseness/{suffix}"] = (
                    P.population_sparseness(a)
                )
                values[f"probe/activity/{tag}/lifetime_sparseness/{suffix}"] = (
                    P.lifetime_sparseness(a)
                )
            values[f"probe/activity/{tag}/silent_fraction/{suffix}"] = P.silent_fraction(a)
            values[f"probe/activity/{tag}/participation_ratio/{suffix}"] = P.participation_ratio(a)
            if self.histograms:
                values[f"probe/activity/{tag}/activity/{suffix}"] = HistogramValue(a)
        for name, inp in inputs.items():
            try:
                balance = P.ei_input_balance(synaptic[name], inp)
            except ValueError:
                continue  # e.g. a layer fed by a reshaped tensor the hook cannot see
            tag = _layer_tag(name)
            values[f"probe/activity/{tag}/ei_ratio/{suffix}"] = _nanmean(balance["ratio"])
            values[f"probe/activity/{tag}/ei_correlation/{suffix}"] = _nanmean(
                balance["correlation"]
            )
        return self._emit(strategy, values)

    def __str__(self) -> str:
        return "ActivityProbes"


# ---------------------------------------------------------------------------- task encoding


def _fit(mask: Tensor, shape: torch.Size) -> Tensor | None:
    """``mask`` zero-padded to ``shape`` (a layer that grew), or None if it does not fit."""
    if mask.shape == shape:
        return mask
    if mask.dim() != len(shape) or any(a > b for a, b in zip(mask.shape, shape, strict=True)):
        return None
    out = torch.zeros(shape, dtype=torch.bool)
    out[tuple(slice(0, s) for s in mask.shape)] = mask
    return out


class TaskEncodingMetric(_ProbeMetric):
    """Which synapses and units each task recruited, their overlaps and the capacity used.

    Per training experience ``k`` (a task):

    * recruited synapses: with ``recruit_by="strengthened"`` (the default, SPEC section 4) the
      synapses grown (absent before the experience, present after) or strengthened by more than
      ``rel_threshold`` nats of log-magnitude; with ``recruit_by="changed"`` every present
      synapse whose log-magnitude moved by more than ``rel_threshold`` either way (or whose sign
      changed), the right notion for backprop baselines such as PackNet. In both modes synapses
      consolidated during the experience (BioRule plasticity < 1 now but not before) count too.
      "After" is the effective weight (:func:`synapse_weights`: PackNet's mask applied).
    * recruited units: from the per-task mean activity of the units (:func:`unit_layers`) on a
      fixed probe batch of each task's training data (the first ``probe_size`` samples), with
      :func:`bioplastic.probes.recruited_units` (``rel_activity``); with a single task, every
      unit it drives.

    Emits ``probe/task/recruited_synapses/Exp<k>`` (count) and
    ``probe/task/recruited_synapse_fraction/Exp<k>`` (of all potential synapses),
    ``probe/task/recruited_units/Exp<k>`` (fraction of units), ``probe/task/capacity_used``,
    ``probe/task/capacity_free``, ``probe/task/free_present_fraction`` (see
    :func:`bioplastic.probes.capacity`), ``probe/task/synapse_overlap_mean`` and
    ``probe/task/unit_overlap_mean`` (mean off-diagonal Jaccard), ``probe/task/selectivity_mean``
    and the matrices ``probe/task/synapse_overlap``, ``probe/task/unit_overlap`` (task x task)
    and ``probe/task/allocation`` (task x unit) as :class:`MatrixValue` heatmaps.

    Attributes:
        synapse_masks: per task, ``{layer: bool mask}`` of its recruited synapses.
        unit_masks: ``[n_tasks, n_units]`` recruited units at the last experience.

    Args:
        recruit_by: ``"strengthened"`` or ``"changed"``.
        rel_threshold: log-magnitude change in nats (>= 0); default ``ln 2``.
        rel_activity: in (0, 1]: a task recruits a unit whose mean activity on it is at least
            this fraction of the unit's largest per-task mean.
        probe_size: samples per task for the unit probes (>= 1).
        layers: names of the unit modules (default: activation modules).
        figures: heatmaps of the matrices for TensorBoard: ``"fast"`` (or True, the default:
            cells coloured by matplotlib's viridis), ``"labeled"`` (matplotlib figures with
            axes, Agg backend; about 0.2 s each) or False (none). See :class:`MatrixValue`.
    """

    def __init__(
        self,
        recruit_by: str = "strengthened",
        rel_threshold: float = math.log(2.0),
        rel_activity: float = 0.5,
        probe_size: int = 128,
        layers: Sequence[str] | None = None,
        figures: bool | str = True,
    ):
        super().__init__()
        if figures not in (True, False, None, "fast", "labeled"):
            raise ValueError(f"figures must be True, False, 'fast' or 'labeled', got {figures!r}")
        if recruit_by not in ("strengthened", "changed"):
            raise ValueError(f"recruit_by must be 'strengthened' or 'changed', got {recruit_by!r}")
        if not (isinstance(rel_threshold, (int, float)) and rel_threshold >= 0):
            raise ValueError(f"rel_threshold must be a number >= 0 (nats), got {rel_threshold!r}")
        if not (isinstance(rel_activity, (int, float)) and 0 < rel_activity <= 1):
            raise ValueError(f"rel_activity must be in (0, 1], got {rel_activity!r}")
        if isinstance(probe_size, bool) or not isinstance(probe_size, int) or probe_size < 1:
            raise ValueError(f"probe_size must be an int >= 1, got {probe_size!r}")
        self.recruit_by = recruit_by
        self.rel_threshold = float(rel_threshold)
        self.rel_activity = float(rel_activity)
        self.probe_size = probe_size
        self.layers = None if layers is None else list(layers)
        self.figures = figures
        self.synapse_masks: list[dict[str, Tensor]] = []
        self.unit_masks: Tensor | None = None
        self.task_batches: list[tuple[Tensor, Tensor]] = []
        self._before: dict[str, Tensor] = {}
        self._consolidated_before: dict[str, Tensor] = {}

    @staticmethod
    def _consolidated(strategy: Any) -> dict[str, Tensor]:
        opt = getattr(strategy, "optimizer", None)
        if opt is None:
            return {}
        masks = {}
        for name, module in P.synaptic_layers(strategy.model):
            plasticity = opt.state.get(module.weight, {}).get("plasticity")
            if isinstance(plasticity, Tensor) and plasticity.shape == module.weight.shape:
                masks[name] = (plasticity < 1).cpu()
        return masks

    def before_training_exp(self, strategy: Any) -> None:
        model = strategy.model
        self._before = {
            name: m.weight.detach().to("cpu", copy=True) for name, m in P.synaptic_layers(model)
        }
        self._consolidated_before = self._consolidated(strategy)
        self.task_batches.append(_first_inputs(strategy.experience.dataset.eval(), self.probe_size))

    def _recruited(self, before: Tensor, after: Tensor) -> Tensor:
        if self.recruit_by == "strengthened":
            return P.recruited_synapses(before, after, self.rel_threshold)
        was, now = before != 0, after != 0
        both = was & now
        change = torch.zeros(before.shape, dtype=torch.float64)
        change[both] = (after[both].abs().double().log() - before[both].abs().double().log()).abs()
        flipped = both & (torch.sign(after) != torch.sign(before))
        return (both & (change > self.rel_threshold)) | flipped | (~was & now)

    @torch.no_grad()
    def after_training_exp(self, strategy: Any) -> list[MetricValue]:
        model = strategy.model
        k = len(self.task_batches) - 1
        after = {name: w.to("cpu", torch.float32) for name, w in synapse_weights(model).items()}
        consolidated = self._consolidated(strategy)
        masks: dict[str, Tensor] = {}
        for name, a in after.items():
            b = self._before.get(name)
            b = torch.zeros_like(a) if b is None or b.shape != a.shape else b.to(torch.float32)
            mask = self._recruited(b, a)
            c_now = consolidated.get(name)
            if c_now is not None:
                c_before = self._consolidated_before.get(name)
                c_before = _fit(c_before, c_now.shape) if c_before is not None else None
                mask = mask | (c_now & ~c_before if c_before is not None else c_now)
            masks[name] = mask
        while len(self.synapse_masks) < k:  # an experience trained without this metric
            self.synapse_masks.append({})
        self.synapse_masks.append(masks)

        values: dict[str, Any] = {}
        aligned = self._aligned_masks(after)
        n_potential = sum(w.numel() for w in after.values())
        n_recruited = int(sum(m.sum() for m in masks.values()))
        values[f"probe/task/recruited_synapses/Exp{k:03d}"] = n_recruited
        values[f"probe/task/recruited_synapse_fraction/Exp{k:03d}"] = n_recruited / n_potential
        cap = P.capacity(aligned, after)
        values["probe/task/capacity_used"] = cap["used_fraction"]
        values["probe/task/capacity_free"] = cap["free_fraction"]
        values["probe/task/free_present_fraction"] = cap["free_present_fraction"]
        syn_overlap = P.jaccard_matrix(aligned)
        values["probe/task/synapse_overlap_mean"] = _off_diagonal_mean(syn_overlap)

        unit_masks, mean_acts = self._unit_masks(strategy)
        if unit_masks is not None:
            self.unit_masks = unit_masks
            values[f"probe/task/recruited_units/Exp{k:03d}"] = float(unit_masks[-1].float().mean())
            unit_overlap = P.jaccard_matrix(list(unit_masks))
            values["probe/task/unit_overlap_mean"] = _off_diagonal_mean(unit_overlap)
            if mean_acts.shape[0] >= 2:
                selectivity = P.task_selectivity(mean_acts).index
                values["probe/task/selectivity_mean"] = _nanmean(selectivity)
        values["probe/task/synapse_overlap"] = MatrixValue(
            syn_overlap, "synapse overlap (Jaccard)", self.figures, xlabel="task", ylabel="task"
        )
        if unit_masks is not None:
            values["probe/task/unit_overlap"] = MatrixValue(
                unit_overlap, "unit overlap (Jaccard)", self.figures, xlabel="task", ylabel="task"
            )
            values["probe/task/allocation"] = MatrixValue(
                P.allocation_matrix(unit_masks), "units recruited per task", self.figures,
                xlabel="unit", ylabel="task",
            )  # fmt: skip
        return self._emit(strategy, values)

    def _aligned_masks(self, after: Mapping[str, Tensor]) -> list[dict[str, Tensor]]:
        """Every task's masks over the current layers (missing layers empty, grown ones padded)."""
        aligned = []
        for masks in self.synapse_masks:
            row = {}
            for name, w in after.items():
                m = masks.get(name)
                m = _fit(m, w.shape) if m is not None else None
                row[name] = m if m is not None else torch.zeros(w.shape, dtype=torch.bool)
            aligned.append(row)
        return aligned

    def _unit_masks(self, strategy: Any) -> tuple[Tensor | None, Tensor | None]:
        model = strategy.model
        names, rectify = unit_layers(model, self.layers)
        means = []
        for x, t in self.task_batches:
            acts, _ = record_units(model, x, t, names, rectify=rectify)
            if not acts:
                return None, None
            means.append(torch.cat([a.mean(0).reshape(-1) for a in acts.values()]))
        mean_acts = torch.stack(means).clamp(min=0).double()
        if mean_acts.shape[0] == 1:
            return mean_acts > 0, mean_acts
        return P.recruited_units(mean_acts, self.rel_activity), mean_acts

    def __str__(self) -> str:
        return "TaskEncoding"


def _off_diagonal_mean(matrix: Tensor) -> float:
    n = matrix.shape[0]
    if n < 2:
        return math.nan
    off = matrix[~torch.eye(n, dtype=torch.bool)]
    return float(off.mean())


def probe_metrics(
    *,
    weights: bool = True,
    activity: bool = True,
    task_encoding: bool = True,
    histograms: bool = True,
    figures: bool | str = True,
    probe_size: int = 256,
    **task_encoding_kwargs: Any,
) -> list[PluginMetric]:
    """The probe metrics, ready for ``EvaluationPlugin(*accuracy_metrics(...), *probe_metrics())``.

    ``task_encoding_kwargs`` go to :class:`TaskEncodingMetric` (e.g. ``recruit_by``).
    """
    metrics: list[PluginMetric] = []
    if weights:
        metrics.append(WeightProbeMetric(histograms=histograms))
    if activity:
        metrics.append(ActivityProbeMetric(probe_size=probe_size, histograms=histograms))
    if task_encoding:
        task_encoding_kwargs.setdefault("probe_size", min(probe_size, 128))
        metrics.append(TaskEncodingMetric(figures=figures, **task_encoding_kwargs))
    return metrics
