"""Activity probes on a fixed probe batch of each evaluated experience, as an Avalanche metric."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

import torch
from avalanche.evaluation.metric_results import MetricValue
from torch import Tensor

from bioplastic import probes as P
from bioplastic.probes.activity import unit_activity_stats
from strategies.avalanche.benchmarks import _first_inputs
from strategies.avalanche.metrics._base import (
    UnitRecorder,
    _check_every,
    _due,
    _layer_tag,
    _nanmean,
    _ProbeMetric,
    record_units,
    unit_layers,
)
from strategies.avalanche.metrics.values import HistogramValue

__all__ = ["ActivityProbeMetric"]


class ActivityProbeMetric(_ProbeMetric):
    """Activity probes on a fixed probe batch: after each evaluated experience and, with
    ``every``, every ``every`` training iterations.

    After each evaluation experience, on the first ``probe_size`` samples of that experience's
    evaluation data (the same samples every time: Avalanche evaluates unshuffled), recorded by
    forward hooks during the evaluation pass itself (:class:`UnitRecorder`; where no hook fires,
    as in a compiled model, the samples go through the model once more); for every unit
    layer (see :func:`unit_layers`) it emits ``probe/activity/<layer>/<stat>/Exp<eee>`` for
    ``population_sparseness``, ``lifetime_sparseness``, ``silent_fraction``,
    ``participation_ratio`` (non-negative activities only for the sparseness measures), for
    every synaptic layer ``probe/activity/<layer>/ei_ratio`` and ``.../ei_correlation`` (means
    over postsynaptic units of :func:`bioplastic.probes.ei_input_balance`), and
    (``histograms=True``) a histogram of the activities per unit layer.

    During training (``every > 0``), every ``every`` iterations, the same scalars on the first
    ``probe_size`` samples of the current training experience, as
    ``probe/activity/<layer>/<stat>/train`` (one curve over all training iterations).

    Args:
        probe_size: samples in the probe batch (>= 2).
        layers: names of the modules whose outputs are units (default: activation modules).
        histograms: emit activity histograms (evaluation only).
        ei_balance: compute the E/I input balance of the synaptic layers.
        every: training iterations between probes during training (0: evaluation only).
        max_units: a layer with more units is measured on a fixed random sample of
            ``max_units`` of them (seeded by the layer's name), so the cost of the
            participation ratio (``units^2``) stays bounded on wide layers; ``None``: all.
        eval_experiences: ``"trained"`` probes an evaluated experience only once a training
            experience of the same index has been trained (the others show the response of a
            network that has not seen them); ``"all"`` probes every evaluated experience.
    """

    def __init__(
        self,
        probe_size: int = 256,
        layers: Sequence[str] | None = None,
        histograms: bool = True,
        ei_balance: bool = True,
        every: int = 0,
        max_units: int | None = 1024,
        eval_experiences: str = "all",
    ):
        super().__init__()
        if eval_experiences not in ("trained", "all"):
            raise ValueError(
                f"eval_experiences must be 'trained' or 'all', got {eval_experiences!r}"
            )
        self.eval_experiences = eval_experiences
        self._trained: set[int] = set()
        if isinstance(probe_size, bool) or not isinstance(probe_size, int) or probe_size < 2:
            raise ValueError(f"probe_size must be an int >= 2, got {probe_size!r}")
        self.probe_size = probe_size
        self.layers = None if layers is None else list(layers)
        self.histograms = bool(histograms)
        self.ei_balance = bool(ei_balance)
        self.every = _check_every(every)
        if max_units is not None and (
            isinstance(max_units, bool) or not isinstance(max_units, int) or max_units < 2
        ):
            raise ValueError(f"max_units must be an int >= 2 or None, got {max_units!r}")
        self.max_units = max_units
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

    def _train_batch(self, strategy: Any) -> tuple[Tensor, Tensor]:
        exp = strategy.experience
        key = ("__train__", int(exp.current_experience))
        if key not in self._batches:
            self._batches = {k: v for k, v in self._batches.items() if k[0] != "__train__"}
            self._batches[key] = _first_inputs(exp.dataset.eval(), self.probe_size)
        return self._batches[key]

    def _sample(self, name: str, acts: Tensor) -> Tensor:
        n = acts.shape[1]
        if self.max_units is None or n <= self.max_units:
            return acts
        gen = torch.Generator().manual_seed(zlib.crc32(f"{name}:{n}".encode()))
        keep = torch.randperm(n, generator=gen)[: self.max_units].sort().values
        return acts[:, keep]

    @torch.no_grad()
    def _measure(self, model: Any, x: Tensor, t: Tensor, suffix: str, histograms: bool) -> dict:
        names, rectify, synaptic = self._recorded(model)
        acts, inputs = record_units(model, x, t, names, rectify=rectify, inputs_of=synaptic)
        return self._values(model, acts, inputs, suffix, histograms)

    def _recorded(self, model: Any) -> tuple[list[str], bool, list[str]]:
        """The unit layers, whether to rectify them, and the synaptic layers whose inputs the
        E/I balance needs."""
        names, rectify = unit_layers(model, self.layers)
        synaptic = [n for n, _ in P.synaptic_layers(model)] if self.ei_balance else []
        return names, rectify, synaptic

    def _values(
        self, model: Any, acts: dict[str, Tensor], inputs: dict[str, Tensor], suffix: str,
        histograms: bool,
    ) -> dict:  # fmt: skip
        """The probe's values from recorded activities and synaptic inputs."""
        synaptic = dict(P.synaptic_layers(model)) if inputs else {}
        values: dict[str, Any] = {}
        for name, a in acts.items():
            tag = _layer_tag(name)
            if a.dim() != 2 or a.shape[0] < 2:
                continue
            if histograms:
                values[f"probe/activity/{tag}/activity/{suffix}"] = HistogramValue(a)
            for stat, value in unit_activity_stats(self._sample(name, a)).items():
                values[f"probe/activity/{tag}/{stat}/{suffix}"] = value
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
        return values

    def after_training_exp(self, strategy: Any) -> None:
        self._trained.add(int(strategy.experience.current_experience))

    def _probed(self, strategy: Any) -> bool:
        current = int(strategy.experience.current_experience)
        return self.eval_experiences == "all" or current in self._trained

    def before_eval_exp(self, strategy: Any) -> None:
        self._stop_recording()
        if self._probed(strategy):
            names, rectify, synaptic = self._recorded(strategy.model)
            self._recorder = UnitRecorder(
                strategy.model, names, rectify=rectify, inputs_of=synaptic, limit=self.probe_size
            )

    def _stop_recording(self) -> UnitRecorder | None:
        recorder = self.__dict__.pop("_recorder", None)  # only during an evaluated experience
        if recorder is not None:
            recorder.remove()
        return recorder

    def after_eval_exp(self, strategy: Any) -> list[MetricValue] | None:
        recorder = self._stop_recording()
        if not self._probed(strategy):
            return None
        eid = int(strategy.experience.current_experience)
        suffix = f"Exp{eid:03d}"
        acts, inputs = recorder.result() if recorder is not None else ({}, {})
        if acts or inputs:  # the evaluation pass's first probe_size samples
            values = self._values(strategy.model, acts, inputs, suffix, self.histograms)
        else:  # no hooks fired (a compiled model, an evaluation without a forward pass)
            _, x, t = self._probe_batch(strategy)
            values = self._measure(strategy.model, x, t, suffix, self.histograms)
        return self._emit(strategy, values)

    def after_training_iteration(self, strategy: Any) -> list[MetricValue] | None:
        if not _due(self.every, strategy):
            return None
        x, t = self._train_batch(strategy)
        return self._emit(strategy, self._measure(strategy.model, x, t, "train", False))

    def __str__(self) -> str:
        return "ActivityProbes"
