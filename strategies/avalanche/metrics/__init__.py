"""The probes of :mod:`bioplastic.probes` as Avalanche ``PluginMetric``s.

Every logger of an ``EvaluationPlugin`` receives them. The full probes run once per
experience; the weight and activity scalars also every ``every`` training iterations
(:func:`probe_metrics`'s cadence, default :data:`strategies.avalanche.config.PROBES`), so
TensorBoard shows them during training:

* :class:`WeightProbeMetric` (after each training experience): per synaptic layer the
  connectivity, Dale violations, sign flips since the start of training, log-magnitude
  statistics and E/I totals, the rule's structural counts when the optimizer is a BioRule, and
  histograms of the weights and log-magnitudes;
* :class:`ActivityProbeMetric` (after each evaluated experience, or with
  ``eval_experiences="trained"`` each one trained so far, on a fixed probe batch of that
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

Modules: :mod:`.weights`, :mod:`.activity`, :mod:`.task_encoding` (one metric each),
:mod:`.values` (histogram and matrix values), :mod:`._base` (what they share).
"""

from __future__ import annotations

from typing import Any

from avalanche.evaluation import PluginMetric

from strategies.avalanche.config import PROBES
from strategies.avalanche.metrics._base import (
    ACTIVATIONS,
    record_units,
    synapse_weights,
    unit_dale_violations,
    unit_layers,
)
from strategies.avalanche.metrics.activity import ActivityProbeMetric
from strategies.avalanche.metrics.task_encoding import TaskEncodingMetric
from strategies.avalanche.metrics.values import HistogramValue, MatrixValue
from strategies.avalanche.metrics.weights import WeightProbeMetric

__all__ = [
    "ACTIVATIONS",
    "ActivityProbeMetric",
    "HistogramValue",
    "MatrixValue",
    "TaskEncodingMetric",
    "WeightProbeMetric",
    "probe_metrics",
    "record_units",
    "synapse_weights",
    "unit_dale_violations",
    "unit_layers",
]


def probe_metrics(
    *,
    weights: bool = True,
    activity: bool = True,
    task_encoding: bool = True,
    histograms: bool = True,
    figures: bool | str = True,
    probe_size: int = PROBES["probe_size"],
    every: int = PROBES["every"],
    max_units: int | None = PROBES["max_units"],
    eval_experiences: str = PROBES["eval_experiences"],
    **task_encoding_kwargs: Any,
) -> list[PluginMetric]:
    """The probe metrics, ready for ``EvaluationPlugin(*accuracy_metrics(...), *probe_metrics())``.

    Cadence: the weight and activity scalars every ``every`` training iterations (0: at
    experience ends and evaluations only); everything (histograms, task encoding, heatmaps) at
    the end of each training experience and, for the activity, each evaluated experience that
    ``eval_experiences`` admits (``"trained"``: those trained so far; ``"all"``).
    ``probe_size``: samples of the fixed probe batch; ``max_units``: units sampled per layer for
    the activity statistics (:class:`ActivityProbeMetric`).
    Defaults:
    :data:`strategies.avalanche.config.PROBES`. ``task_encoding_kwargs`` go to
    :class:`TaskEncodingMetric` (e.g. ``recruit_by``).
    """
    metrics: list[PluginMetric] = []
    if weights:
        metrics.append(WeightProbeMetric(histograms=histograms, every=every))
    if activity:
        metrics.append(
            ActivityProbeMetric(
                probe_size=probe_size,
                histograms=histograms,
                every=every,
                max_units=max_units,
                eval_experiences=eval_experiences,
            )
        )
    if task_encoding:
        task_encoding_kwargs.setdefault("probe_size", min(probe_size, 128))
        metrics.append(TaskEncodingMetric(figures=figures, **task_encoding_kwargs))
    return metrics
