"""The containers of a continual-learning stream: :class:`Experience` and :class:`Stream`.

Scenarios and targets: see :mod:`bioplastic.data.streams`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import TensorDataset

from bioplastic.data._checks import check_scenario

ArrayLike = np.ndarray | Tensor


@dataclass(frozen=True, eq=False)
class Experience:
    """One task of a stream: its data and what it contains.

    Attributes:
        task_id: position of the experience in its stream, ``0..n_experiences-1``, in every
            scenario. For bookkeeping; not meant as a model input.
        task_label: the task label a model may use: ``task_id`` in the ``"task"`` scenario, 0 in
            ``"class"`` and ``"domain"``.
        classes: the source dataset's class labels present, ascending. In ``"task"`` and
            ``"domain"`` split streams, target ``j`` stands for ``classes[j]``.
        labels: the target values that occur in ``y_train``/``y_test``, ascending.
        x_train: ``float32`` inputs, shape ``(n_train, *Stream.input_shape)``.
        y_train: ``int64`` targets, shape ``(n_train,)``.
        x_test: ``float32`` inputs, shape ``(n_test, *Stream.input_shape)``.
        y_test: ``int64`` targets, shape ``(n_test,)``.
        input_permutation: for permuted streams, the ``int64`` feature permutation applied to the
            flattened source inputs (``x = source_x[:, input_permutation]``); ``None`` otherwise.
    """

    task_id: int
    task_label: int
    classes: list[int]
    labels: list[int]
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    input_permutation: Tensor | None = None

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if x.dtype != torch.float32 or y.dtype != torch.int64:
                raise ValueError(
                    f"experience {self.task_id}: x_{split} must be float32 and y_{split} int64, "
                    f"got {x.dtype} and {y.dtype}"
                )
            if y.ndim != 1 or x.shape[0] != y.shape[0]:
                raise ValueError(
                    f"experience {self.task_id}: x_{split} has shape {tuple(x.shape)} but "
                    f"y_{split} has shape {tuple(y.shape)}; expected (n, ...) and (n,)"
                )

    @property
    def n_train(self) -> int:
        """Number of training samples."""
        return int(self.y_train.shape[0])

    @property
    def n_test(self) -> int:
        """Number of test samples."""
        return int(self.y_test.shape[0])

    def train_dataset(self) -> TensorDataset:
        """The training split as a ``TensorDataset`` of ``(x, y)`` pairs (no copy)."""
        return TensorDataset(self.x_train, self.y_train)

    def test_dataset(self) -> TensorDataset:
        """The test split as a ``TensorDataset`` of ``(x, y)`` pairs (no copy)."""
        return TensorDataset(self.x_test, self.y_test)


@dataclass(frozen=True, eq=False)
class Stream:
    """An ordered sequence of experiences forming one continual-learning benchmark.

    Attributes:
        name: the stream's registry name (see :func:`available_streams`).
        scenario: ``"class"``, ``"task"`` or ``"domain"`` (module docstring).
        experiences: the tasks, in training order.
        n_classes: number of distinct target values across the stream, i.e. the output size of
            one shared head (per-head size in the ``"task"`` scenario). Targets lie in
            ``0..n_classes-1``.
        input_shape: shape of one input sample, e.g. ``(64,)`` for the digits.
    """

    name: str
    scenario: str
    experiences: list[Experience]
    n_classes: int
    input_shape: tuple[int, ...]

    def __post_init__(self) -> None:
        check_scenario(self.scenario)
        if not self.experiences:
            raise ValueError(f"stream {self.name!r} has no experiences")
        for exp in self.experiences:
            for x in (exp.x_train, exp.x_test):
                if tuple(x.shape[1:]) != tuple(self.input_shape):
                    raise ValueError(
                        f"stream {self.name!r}, experience {exp.task_id}: inputs of shape "
                        f"{tuple(x.shape[1:])}, expected input_shape {tuple(self.input_shape)}"
                    )
            if exp.labels and not (0 <= min(exp.labels) and max(exp.labels) < self.n_classes):
                raise ValueError(
                    f"stream {self.name!r}, experience {exp.task_id}: labels {exp.labels} "
                    f"outside 0..{self.n_classes - 1}"
                )

    def __len__(self) -> int:
        return len(self.experiences)

    def __iter__(self) -> Iterator[Experience]:
        return iter(self.experiences)

    def __getitem__(self, index: int) -> Experience:
        return self.experiences[index]

    @property
    def n_experiences(self) -> int:
        """Number of experiences (tasks)."""
        return len(self.experiences)

    @property
    def n_task_labels(self) -> int:
        """Number of distinct task labels a model sees: ``n_experiences`` for ``"task"``, else 1."""
        return len({exp.task_label for exp in self.experiences})

    @property
    def classes_per_experience(self) -> list[list[int]]:
        """The source-dataset classes of each experience, in stream order."""
        return [list(exp.classes) for exp in self.experiences]


# --------------------------------------------------------------------------- generic builders
