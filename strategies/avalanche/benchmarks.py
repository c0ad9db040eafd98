"""Avalanche benchmarks from the offline :class:`bioplastic.data.Stream` task streams.

:func:`avalanche_benchmark` turns a stream of plain tensors into an Avalanche 0.6 ``CLScenario``
with a ``train_stream`` and a ``test_stream``, using Avalanche's generic builder
(``benchmark_from_datasets``) and its experience decorators (``with_classes_timeline``,
``with_task_labels``), so every experience has ``classes_in_this_experience``, ``task_label``
and ``task_labels`` like the experiences of Avalanche's own benchmarks.

Example::

    from bioplastic.data import make_stream
    from strategies.avalanche import avalanche_benchmark

    benchmark = avalanche_benchmark(make_stream("split-digits", scenario="task"))
    for experience in benchmark.train_stream:
        strategy.train(experience)
        strategy.eval(benchmark.test_stream)
"""

from __future__ import annotations

from typing import Any

import torch
from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets
from avalanche.benchmarks.scenarios.generic_scenario import CLScenario
from avalanche.benchmarks.scenarios.supervised import with_classes_timeline
from avalanche.benchmarks.scenarios.task_aware import with_task_labels
from avalanche.benchmarks.utils import ConstantSequence, DataAttribute, TaskLabels
from avalanche.benchmarks.utils.classification_dataset import (
    TaskAwareSupervisedClassificationDataset,
)
from torch import Tensor
from torch.utils.data import TensorDataset

from bioplastic.data import Stream

__all__ = ["avalanche_benchmark", "tensor_classification_dataset"]


def tensor_classification_dataset(
    x: Tensor, y: Tensor, task_label: int = 0
) -> TaskAwareSupervisedClassificationDataset:
    """An Avalanche classification dataset of ``(x, y, task_label)`` samples from two tensors.

    Args:
        x: inputs, shape ``(n, ...)``.
        y: integer targets, shape ``(n,)``.
        task_label: the task label of every sample (an int >= 0).

    Returns:
        A ``TaskAwareSupervisedClassificationDataset`` with the ``targets`` and
        ``targets_task_labels`` attributes that Avalanche's strategies, loaders and metrics use
        (and ``task_set``, which LwF needs).
    """
    if not isinstance(x, Tensor) or not isinstance(y, Tensor):
        raise TypeError(f"x and y must be tensors, got {type(x).__name__} and {type(y).__name__}")
    if y.ndim != 1 or x.ndim < 1 or x.shape[0] != y.shape[0]:
        raise ValueError(
            f"x must have shape (n, ...) and y shape (n,), got {tuple(x.shape)}, {tuple(y.shape)}"
        )
    if isinstance(task_label, bool) or not isinstance(task_label, int) or task_label < 0:
        raise ValueError(f"task_label must be an int >= 0, got {task_label!r}")
    targets = [int(v) for v in y.tolist()]
    return TaskAwareSupervisedClassificationDataset(
        [TensorDataset(x, y)],
        data_attributes=[
            DataAttribute(targets, "targets"),
            TaskLabels(ConstantSequence(task_label, len(targets))),
        ],
    )


def avalanche_benchmark(stream: Stream) -> CLScenario:
    """An Avalanche benchmark with one train and one test experience per stream experience.

    Task labels are the stream's ``Experience.task_label`` (the experience index in the
    ``"task"`` scenario, 0 in ``"class"`` and ``"domain"``), so a multi-head model (e.g.
    :class:`strategies.avalanche.MultiHeadMLP`) gets one head per task in the task scenario.
    Samples are ``(x, y, t)`` triplets; nothing is copied.

    Args:
        stream: an offline stream from :func:`bioplastic.data.make_stream` or a builder.

    Returns:
        A ``CLScenario`` with ``train_stream`` and ``test_stream``; experience ``i`` of both
        streams holds ``stream[i]``'s data and has ``classes_in_this_experience``,
        ``task_label``, ``task_labels`` and ``current_experience == i``.

    Raises:
        TypeError: ``stream`` is not a :class:`bioplastic.data.Stream`.
    """
    if not isinstance(stream, Stream):
        raise TypeError(
            f"stream must be a bioplastic.data.Stream (make_stream), got {type(stream).__name__}"
        )
    train, test = [], []
    for exp in stream:
        train.append(tensor_classification_dataset(exp.x_train, exp.y_train, exp.task_label))
        test.append(tensor_classification_dataset(exp.x_test, exp.y_test, exp.task_label))
    benchmark = with_task_labels(
        with_classes_timeline(benchmark_from_datasets(train=train, test=test))
    )
    for experiences in (benchmark.train_stream, benchmark.test_stream):
        for exp in experiences:
            # Avalanche's decorator gives sets; its heads index tensors with these (lists only).
            for attr in ("classes_in_this_experience", "previous_classes", "classes_seen_so_far",
                         "future_classes"):  # fmt: skip
                setattr(exp, attr, sorted(int(c) for c in getattr(exp, attr)))
    # Keep the description of the source stream at hand for loggers and reports.
    benchmark.bioplastic_stream = _describe(stream)
    return benchmark


def _describe(stream: Stream) -> dict[str, Any]:
    return {
        "name": stream.name,
        "scenario": stream.scenario,
        "n_experiences": stream.n_experiences,
        "n_classes": stream.n_classes,
        "input_shape": list(stream.input_shape),
        "classes_per_experience": stream.classes_per_experience,
    }


def _first_inputs(dataset: Any, n: int) -> tuple[Tensor, Tensor]:
    """The first ``n`` inputs and task labels of an Avalanche dataset (a fixed probe batch)."""
    n = min(n, len(dataset))
    xs, ts = [], []
    for i in range(n):
        sample = dataset[i]
        xs.append(torch.as_tensor(sample[0]))
        ts.append(int(sample[-1]) if len(sample) > 2 else 0)
    return torch.stack(xs), torch.tensor(ts, dtype=torch.int64)
