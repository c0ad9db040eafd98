"""What the probe metrics share: synaptic and unit layers, recording activities, bookkeeping."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from avalanche.evaluation import PluginMetric
from avalanche.evaluation.metric_results import MetricValue
from avalanche.models.utils import avalanche_forward
from torch import Tensor, nn

from bioplastic import probes as P
from strategies.avalanche.models import head_groups

__all__ = [
    "ACTIVATIONS",
    "UnitRecorder",
    "record_units",
    "synapse_weights",
    "unit_dale_violations",
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


def unit_dale_violations(model: nn.Module) -> int:
    """Presynaptic units whose present outgoing synapses break Dale's law, in the whole model.

    Every synaptic layer counts as in :func:`bioplastic.probes.dale_violations`, except the
    heads of a multi-head classifier (:func:`~strategies.avalanche.models.head_groups`), which
    count together (:func:`bioplastic.probes.shared_dale_violations`): they read the same units,
    so a unit that excites one head and inhibits another is a violation too.
    """
    groups = head_groups(model)
    heads = {name for group in groups for name, _ in group}
    total = sum(P.dale_violations(m) for name, m in P.synaptic_layers(model) if name not in heads)
    return total + sum(P.shared_dale_violations([m for _, m in group]) for group in groups)


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


def _input_modules(model: nn.Module, names: Sequence[str]) -> dict[str, str]:
    """For each of ``names``, the name of the module whose forward sees its inputs (PackNet
    calls its wrapper; otherwise the module itself)."""
    wrapped = {
        id(m.wrappee): other
        for other, m in model.named_modules()
        if isinstance(getattr(m, "wrappee", None), nn.Module) and hasattr(m, "available_weights")
    }
    modules = dict(model.named_modules())
    return {n: wrapped.get(id(modules[n]), n) for n in names}


class _TaskForward(nn.Module):
    """Calls ``model`` as Avalanche does (with task labels) on batches of sample indices.

    :func:`bioplastic.probes.record_activations` feeds one tensor per batch to the module it
    records; given indices into ``x``, this wrapper looks up the inputs and their task labels,
    so that a multi-head model routes every sample to its task's head.
    """

    def __init__(self, model: nn.Module, x: Tensor, task_labels: Tensor):
        super().__init__()
        self.model = model
        self.inputs = (x, task_labels)  # a tuple: not registered, never moved

    def forward(self, idx: Tensor) -> Any:
        x, t = self.inputs
        idx = idx.cpu()
        device = _device(self.model)
        return avalanche_forward(self.model, x[idx].to(device), t[idx].to(device))


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
    received by the synaptic layers named in ``inputs_of``, as float32 on the CPU; layers not
    called on these samples (the head of another task) are left out. One forward pass records
    both (:func:`bioplastic.probes.record_activity`: eval mode, no gradients, training flags
    restored, hooks removed), in mini-batches of at most ``batch_size`` consecutive samples of
    one task each (samples of several tasks may come in any order).
    """
    if not layers and not inputs_of:
        return {}, {}
    wrapper = _TaskForward(model, x, task_labels)
    batches = _single_task_batches(task_labels, batch_size)
    out_names = {f"model.{n}" if n else "model": n for n in layers}
    targets = _input_modules(model, inputs_of)
    in_names = {f"model.{t}" if t else "model": t for t in dict.fromkeys(targets.values())}
    outs, ins = P.record_activity(wrapper, batches, list(out_names), list(in_names), missing="skip")
    acts = {out_names[key]: _as_units(a, rectify) for key, a in outs.items()}
    received = {in_names[k]: v.float() for k, v in ins.items()}
    inputs = {n: received[t] for n, t in targets.items() if t in received}
    return acts, inputs


def _single_task_batches(task_labels: Tensor, batch_size: int) -> list[Tensor]:
    """Index batches of at most ``batch_size`` consecutive samples of one task each, in order:
    a multi-task module that runs each task's samples apart then records them in order, and
    models that take one task per mini-batch (PackNet) take them at all."""
    labels = task_labels.reshape(-1).cpu()
    starts = [0] + (torch.nonzero(labels[1:] != labels[:-1]).reshape(-1) + 1).tolist()
    ends = starts[1:] + [len(labels)]
    return [
        torch.arange(s, min(s + batch_size, end))
        for start, end in zip(starts, ends, strict=True)
        for s in range(start, end, batch_size)
    ]


def _as_units(a: Tensor, rectify: bool) -> Tensor:
    """Float ``[n, units]`` activities: conv maps averaged over space, rectified if asked."""
    a = a.float()
    a = a.flatten(2).mean(-1) if a.dim() > 2 else a
    return a.clamp(min=0) if rectify else a


class UnitRecorder:
    """What :func:`record_units` returns, recorded from forward passes someone else runs.

    Forward hooks keep (copies of) the first ``limit`` samples that reach each of ``layers``
    (outputs) and each synaptic layer of ``inputs_of`` (inputs), across batches, so an
    evaluation pass gives the probes their activities without a second forward pass. Call
    :meth:`remove` when the passes are done (hooks that stay on record nothing once ``limit``
    samples are in); :meth:`result` has :func:`record_units`' form.
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Sequence[str],
        *,
        rectify: bool = False,
        inputs_of: Sequence[str] = (),
        limit: int = 256,
    ):
        modules = dict(model.named_modules())
        self.rectify = rectify
        self.limit = limit
        self._targets = _input_modules(model, inputs_of)
        self._outputs: dict[str, list[Tensor]] = {n: [] for n in layers}
        self._inputs: dict[str, list[Tensor]] = {t: [] for t in self._targets.values()}
        self._handles = [
            modules[n].register_forward_hook(self._keeper(kept, capture))
            for capture, found in (("output", self._outputs), ("input", self._inputs))
            for n, kept in found.items()
        ]

    def _keeper(self, kept: list[Tensor], capture: str):
        def hook(_module: nn.Module, args: tuple, output: Any) -> None:
            missing = self.limit - sum(len(v) for v in kept)
            value = args[0] if capture == "input" else output
            if isinstance(value, (tuple, list)):
                value = value[0]
            if missing > 0 and isinstance(value, Tensor) and value.dim() > 0:
                # a copy: a later in-place op (ReLU(inplace=True)) would overwrite a view
                kept.append(value[:missing].detach().to("cpu", copy=True))

        return hook

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def result(self) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        acts = {n: _as_units(torch.cat(v), self.rectify) for n, v in self._outputs.items() if v}
        received = {t: torch.cat(v).float() for t, v in self._inputs.items() if v}
        inputs = {n: received[t] for n, t in self._targets.items() if t in received}
        return acts, inputs


def _layer_tag(name: str) -> str:
    return name if name else "model"


def _x(strategy: Any) -> int:
    return int(strategy.clock.train_iterations)


def _check_every(every: Any) -> int:
    if isinstance(every, bool) or not isinstance(every, int) or every < 0:
        raise ValueError(f"every must be an int >= 0 (training iterations; 0: off), got {every!r}")
    return every


def _due(every: int, strategy: Any) -> bool:
    """Whether a probe with cadence ``every`` runs after this training iteration.

    Avalanche's clock counts the iteration after the metrics' ``after_training_iteration``
    (the clock plugin runs last), so iteration ``i`` (0-based) is due when ``(i + 1) % every``
    is 0: with ``every = 100``, after the 100th, 200th, ... iteration.
    """
    return every > 0 and (int(strategy.clock.train_iterations) + 1) % every == 0


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


def _device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")
