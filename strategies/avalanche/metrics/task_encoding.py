"""Task encoding as an Avalanche metric: the synapses and units each task recruited, overlaps."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from avalanche.evaluation.metric_results import MetricValue
from torch import Tensor

from bioplastic import BioRule
from bioplastic import probes as P
from strategies.avalanche.benchmarks import _first_inputs
from strategies.avalanche.metrics._base import (
    _nanmean,
    _ProbeMetric,
    record_units,
    synapse_weights,
    unit_layers,
)
from strategies.avalanche.metrics.values import MatrixValue

__all__ = ["TaskEncodingMetric"]


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
        figures: heatmaps of the matrices for TensorBoard: True (the default): the allocation
            as a labelled matplotlib figure (title, axis labels, task names, colour bar; about
            0.1 s, drawn only when a logger such as TensorBoard asks for images) and the
            overlaps as fast images; ``"labeled"``: every matrix labelled; ``"fast"``: cells
            coloured by matplotlib's viridis, no labels; False: none.
            See :class:`MatrixValue`.

    Tasks are named by experience and classes (``"exp 1: 2,3"``; ``task_names``).
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
        self.task_names: list[str] = []
        self._before: dict[str, Tensor] = {}
        self._consolidated_before: dict[str, Tensor] = {}

    @staticmethod
    def _consolidated(strategy: Any) -> dict[str, Tensor]:
        opt = getattr(strategy, "optimizer", None)
        if not isinstance(opt, BioRule):
            return {}
        masks = {}
        for name, module in P.synaptic_layers(strategy.model):
            plasticity = opt.plasticity(module.weight)
            if plasticity is not None and plasticity.shape == module.weight.shape:
                masks[name] = (plasticity < 1).cpu()
        return masks

    def before_training_exp(self, strategy: Any) -> None:
        model = strategy.model
        self._before = {
            name: m.weight.detach().to("cpu", copy=True) for name, m in P.synaptic_layers(model)
        }
        self._consolidated_before = self._consolidated(strategy)
        self.task_batches.append(_first_inputs(strategy.experience.dataset.eval(), self.probe_size))
        self.__dict__.setdefault("task_names", [])  # checkpoints from before task names
        self.task_names.append(_task_name(strategy.experience, len(self.task_batches) - 1))

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
        names = self._names(k + 1)
        # figures=True: the allocation labelled, the overlaps as fast images (0.1 s a figure)
        overlap_figure = "fast" if self.figures is True else self.figures
        square = dict(xlabel="task", ylabel="task", row_names=names, col_names=names)
        values["probe/task/synapse_overlap"] = MatrixValue(
            syn_overlap, "synapse overlap (Jaccard)", overlap_figure, **square
        )
        if unit_masks is not None:
            values["probe/task/unit_overlap"] = MatrixValue(
                unit_overlap, "unit overlap (Jaccard)", overlap_figure, **square
            )
            values["probe/task/allocation"] = MatrixValue(
                P.allocation_matrix(unit_masks), "units recruited per task (1: recruited)",
                self.figures, xlabel="unit", ylabel="task", row_names=names,
            )  # fmt: skip
        return self._emit(strategy, values)

    def _names(self, n: int) -> list[str]:
        names = self.__dict__.get("task_names", [])[:n]
        return names + [f"exp {i}" for i in range(len(names), n)]

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
        # every task's batch in one recording (its mini-batches hold one task each), so the
        # cost grows with the tasks seen, not with their square
        x = torch.cat([x for x, _ in self.task_batches])
        t = torch.cat([t for _, t in self.task_batches])
        acts, _ = record_units(model, x, t, names, rectify=rectify)
        if not acts or any(len(a) != len(x) for a in acts.values()):
            return self._unit_masks_by_task(model, names, rectify)  # a layer some tasks skip
        sizes = [len(x) for x, _ in self.task_batches]
        per_task = zip(*(a.split(sizes) for a in acts.values()), strict=True)
        means = [torch.cat([a.mean(0).reshape(-1) for a in task]) for task in per_task]
        return self._masks_of(torch.stack(means))

    def _unit_masks_by_task(
        self, model: Any, names: list[str], rectify: bool
    ) -> tuple[Tensor | None, Tensor | None]:
        means = []
        for x, t in self.task_batches:
            acts, _ = record_units(model, x, t, names, rectify=rectify)
            if not acts:
                return None, None
            means.append(torch.cat([a.mean(0).reshape(-1) for a in acts.values()]))
        return self._masks_of(torch.stack(means))

    def _masks_of(self, means: Tensor) -> tuple[Tensor, Tensor]:
        mean_acts = means.clamp(min=0).double()
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


def _task_name(experience: Any, k: int) -> str:
    """``"exp k: c1,c2"`` (its classes, up to 4), or ``"exp k"``."""
    classes = getattr(experience, "classes_in_this_experience", None)
    try:
        classes = sorted(int(c) for c in classes) if classes is not None else None
    except (TypeError, ValueError):
        classes = None
    if not classes or len(classes) > 4:
        return f"exp {k}"
    return f"exp {k}: " + ",".join(str(c) for c in classes)
