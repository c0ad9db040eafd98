"""Continual-learning task streams as plain tensors: split and permuted benchmarks, built offline.

A :class:`Stream` is an ordered list of :class:`Experience` objects (one per task), each holding
its own train and test tensors. Three scenarios (van de Ven, Tuytelaars & Tolias 2022, "Three
types of incremental learning") decide what the targets are and whether a model may see which
task a sample comes from:

``"class"`` (class-incremental)
    Targets are the dataset's original labels (split streams), or ``label + n_source_classes *
    experience`` for permuted streams, so one head must grow to all ``Stream.n_classes`` outputs.
    No task label: ``Experience.task_label`` is 0 everywhere.
``"task"`` (task-incremental)
    Targets are remapped to ``0..k-1`` within each experience and ``Experience.task_label`` is the
    experience index, so a model may pick a head (or a mask) by task.
``"domain"`` (domain-incremental)
    Targets are remapped to ``0..k-1`` as in ``"task"``, but ``task_label`` is 0 everywhere: the
    model must solve every experience with one shared ``k``-way head without being told the task.

``Experience.task_id`` is always the experience's position in the stream (0, 1, ...), whatever
the scenario; it identifies the task for bookkeeping (per-task probes, accuracy matrices) and is
not meant to be shown to the model. ``Experience.task_label`` is the one to show.

Builders: :func:`split_digits`, :func:`permuted_digits`, :func:`split_mnist1d`,
:func:`permuted_mnist1d`, :func:`split_mnist`, :func:`split_fashion_mnist`,
:func:`permuted_mnist`, :func:`permuted_fashion_mnist`, and the generic :func:`split_stream` and
:func:`permuted_stream` for any arrays; :func:`make_stream` picks a builder by name. Nothing here
downloads anything.

Example:
    >>> stream = make_stream("split-digits", scenario="task", seed=0)
    >>> len(stream), stream.n_classes, stream.input_shape
    (5, 2, (64,))
    >>> for exp in stream:
    ...     pass  # train on exp.x_train, exp.y_train with task label exp.task_label
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import TensorDataset

from bioplastic._checks import check_int, check_optional_int
from bioplastic.data._checks import (
    SCENARIOS,
    check_fraction,
    check_n_experiences,
    check_scenario,
)
from bioplastic.data.idx import load_mnist_arrays
from bioplastic.data.sources import load_digits_arrays, load_mnist1d_arrays

__all__ = [
    "SCENARIOS",
    "STREAM_BUILDERS",
    "Experience",
    "Stream",
    "available_streams",
    "make_stream",
    "permuted_digits",
    "permuted_fashion_mnist",
    "permuted_mnist",
    "permuted_mnist1d",
    "permuted_stream",
    "split_digits",
    "split_fashion_mnist",
    "split_mnist",
    "split_mnist1d",
    "split_stream",
]

logger = logging.getLogger(__name__)

ArrayLike = np.ndarray | Tensor
PathLike = str | os.PathLike[str]


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


def _as_tensors(
    x_train: ArrayLike, y_train: ArrayLike, x_test: ArrayLike, y_test: ArrayLike
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    xs = [torch.as_tensor(x).to(torch.float32) for x in (x_train, x_test)]
    ys = [torch.as_tensor(y).to(torch.int64) for y in (y_train, y_test)]
    for split, x, y in (("train", xs[0], ys[0]), ("test", xs[1], ys[1])):
        if y.ndim != 1 or x.ndim < 2 or x.shape[0] != y.shape[0]:
            raise ValueError(
                f"x_{split} must have shape (n, ...) and y_{split} shape (n,), got "
                f"{tuple(x.shape)} and {tuple(y.shape)}"
            )
    if xs[0].shape[1:] != xs[1].shape[1:]:
        raise ValueError(
            f"train and test inputs differ in shape: {tuple(xs[0].shape[1:])} vs "
            f"{tuple(xs[1].shape[1:])}"
        )
    return xs[0], ys[0], xs[1], ys[1]


def _subsample(n: int, limit: int | None, rng: np.random.Generator) -> Tensor | None:
    """Sorted random indices of ``min(n, limit)`` samples, or ``None`` to keep all."""
    if limit is None or n <= limit:
        return None
    return torch.from_numpy(np.sort(rng.choice(n, size=limit, replace=False)))


def _take(x: Tensor, y: Tensor, index: Tensor | None) -> tuple[Tensor, Tensor]:
    return (x, y) if index is None else (x[index], y[index])


def _seed_sequences(seed: int) -> tuple[np.random.Generator, np.random.Generator]:
    # Separate generators for structure (class order, permutations) and subsampling, so that
    # changing max_*_per_experience never changes which classes or permutations a stream has.
    structure, subsample = np.random.SeedSequence(seed).spawn(2)
    return np.random.default_rng(structure), np.random.default_rng(subsample)


def split_stream(
    name: str,
    x_train: ArrayLike,
    y_train: ArrayLike,
    x_test: ArrayLike,
    y_test: ArrayLike,
    *,
    n_experiences: int = 5,
    scenario: str = "class",
    seed: int = 0,
    class_order: Sequence[int] | None = None,
    max_train_per_experience: int | None = None,
    max_test_per_experience: int | None = None,
) -> Stream:
    """Split a labelled dataset into experiences with disjoint groups of classes.

    The classes found in ``y_train`` are ordered (a seeded random permutation, or
    ``class_order``) and cut into ``n_experiences`` consecutive groups of equal size.

    Args:
        name: the stream's name.
        x_train, y_train, x_test, y_test: the dataset; inputs of any shape ``(n, ...)`` (made
            ``float32``), integer labels ``(n,)``. Every test label must occur in ``y_train``.
        n_experiences: number of experiences; must divide the number of classes.
        scenario: ``"class"``, ``"task"`` or ``"domain"`` (module docstring).
        seed: seed of the class order and of subsampling, an integer >= 0.
        class_order: explicit class order (a permutation of the classes); overrides ``seed``
            for the order.
        max_train_per_experience: keep at most this many training samples per experience, a
            random subset; ``None`` keeps all.
        max_test_per_experience: the same for the test split.

    Returns:
        The stream; experiences' ``classes`` partition the dataset's classes.
    """
    scenario = check_scenario(scenario)
    seed = check_int("seed", seed, 0)
    max_train = check_optional_int("max_train_per_experience", max_train_per_experience, 1)
    max_test = check_optional_int("max_test_per_experience", max_test_per_experience, 1)
    xtr, ytr, xte, yte = _as_tensors(x_train, y_train, x_test, y_test)

    classes = sorted(int(c) for c in torch.unique(ytr))
    unknown = sorted(set(int(c) for c in torch.unique(yte)) - set(classes))
    if unknown:
        raise ValueError(f"test labels {unknown} do not occur in the training labels {classes}")
    n_experiences = check_n_experiences(n_experiences, len(classes))
    structure_rng, subsample_rng = _seed_sequences(seed)
    if class_order is None:
        order = [classes[i] for i in structure_rng.permutation(len(classes))]
    else:
        order = [int(c) for c in class_order]
        if sorted(order) != classes:
            raise ValueError(
                f"class_order must be a permutation of the classes {classes}; "
                f"got {list(class_order)}"
            )

    per_exp = len(classes) // n_experiences
    experiences = []
    for index in range(n_experiences):
        group = sorted(order[index * per_exp : (index + 1) * per_exp])
        splits = []
        for x, y, limit in ((xtr, ytr, max_train), (xte, yte, max_test)):
            mask = torch.isin(y, torch.tensor(group, dtype=torch.int64))
            xs, ys = x[mask], y[mask]
            xs, ys = _take(xs, ys, _subsample(len(ys), limit, subsample_rng))
            if scenario != "class":
                # searchsorted maps each label to its position in the sorted group: 0..k-1.
                ys = torch.searchsorted(torch.tensor(group, dtype=torch.int64), ys)
            splits.append((xs.contiguous(), ys.contiguous()))
        experiences.append(
            Experience(
                task_id=index,
                task_label=index if scenario == "task" else 0,
                classes=group,
                labels=list(group) if scenario == "class" else list(range(per_exp)),
                x_train=splits[0][0],
                y_train=splits[0][1],
                x_test=splits[1][0],
                y_test=splits[1][1],
            )
        )
    n_classes = max(classes) + 1 if scenario == "class" else per_exp
    logger.debug("built %s (%s): classes per experience %s", name, scenario, order)
    return Stream(name, scenario, experiences, n_classes, tuple(xtr.shape[1:]))


def permuted_stream(
    name: str,
    x_train: ArrayLike,
    y_train: ArrayLike,
    x_test: ArrayLike,
    y_test: ArrayLike,
    *,
    n_experiences: int = 5,
    scenario: str = "domain",
    seed: int = 0,
    max_train_per_experience: int | None = None,
    max_test_per_experience: int | None = None,
) -> Stream:
    """A stream whose experiences are the same dataset under different fixed input permutations.

    Inputs are flattened; experience 0 uses the identity, experience ``t > 0`` a seeded random
    permutation of the features, applied to every sample of both splits. All experiences contain
    all classes.

    Args:
        name: the stream's name.
        x_train, y_train, x_test, y_test: the dataset; inputs ``(n, ...)`` are flattened to
            ``(n, d)``, integer labels ``(n,)`` in ``0..C-1``.
        n_experiences: number of experiences (permutations), an integer >= 1.
        scenario: ``"domain"`` (default: same targets, no task label), ``"task"`` (same targets,
            task label = experience index) or ``"class"`` (targets ``y + C * task_id``, so
            ``n_classes = C * n_experiences``).
        seed: seed of the permutations and of subsampling, an integer >= 0.
        max_train_per_experience: keep at most this many training samples per experience, a
            random subset drawn independently per experience; ``None`` keeps all.
        max_test_per_experience: the same for the test split.

    Returns:
        The stream. Memory grows linearly with ``n_experiences`` (each experience holds its own
        permuted copy).
    """
    scenario = check_scenario(scenario)
    n_experiences = check_int("n_experiences", n_experiences, 1)
    seed = check_int("seed", seed, 0)
    max_train = check_optional_int("max_train_per_experience", max_train_per_experience, 1)
    max_test = check_optional_int("max_test_per_experience", max_test_per_experience, 1)
    xtr, ytr, xte, yte = _as_tensors(x_train, y_train, x_test, y_test)
    xtr, xte = xtr.reshape(len(xtr), -1), xte.reshape(len(xte), -1)
    n_features = xtr.shape[1]
    all_labels = torch.cat([ytr, yte])
    if ytr.numel() == 0 or int(all_labels.min()) < 0:
        raise ValueError("labels must be non-negative integers and y_train must not be empty")
    n_source = int(all_labels.max()) + 1
    classes = sorted(int(c) for c in torch.unique(ytr))

    structure_rng, subsample_rng = _seed_sequences(seed)
    experiences = []
    for index in range(n_experiences):
        if index == 0:
            perm = torch.arange(n_features)
        else:
            perm = torch.from_numpy(structure_rng.permutation(n_features))
        splits = []
        for x, y, limit in ((xtr, ytr, max_train), (xte, yte, max_test)):
            xs, ys = _take(x, y, _subsample(len(y), limit, subsample_rng))
            xs = xs[:, perm].contiguous()
            ys = ys + n_source * index if scenario == "class" else ys.clone()
            splits.append((xs, ys))
        offset = n_source * index if scenario == "class" else 0
        experiences.append(
            Experience(
                task_id=index,
                task_label=index if scenario == "task" else 0,
                classes=list(classes),
                labels=[c + offset for c in classes],
                x_train=splits[0][0],
                y_train=splits[0][1],
                x_test=splits[1][0],
                y_test=splits[1][1],
                input_permutation=perm,
            )
        )
    n_classes = n_source * n_experiences if scenario == "class" else n_source
    return Stream(name, scenario, experiences, n_classes, (n_features,))


# --------------------------------------------------------------------------- named datasets


def split_digits(
    n_experiences: int = 5,
    scenario: str = "class",
    seed: int = 0,
    test_fraction: float = 0.3,
    class_order: Sequence[int] | None = None,
    max_train_per_experience: int | None = None,
    max_test_per_experience: int | None = None,
) -> Stream:
    """Split digits: scikit-learn's bundled 8x8 handwritten digits, classes split into tasks.

    Inputs are 64 features in [0, 1] (pixel intensity 0..16 divided by 16); 1,797 samples,
    split stratified into train and test by ``seed``. With the defaults: 5 experiences of 2
    classes, about 250 training and 108 test samples each.

    Args:
        n_experiences: number of experiences, a divisor of 10 (1, 2, 5 or 10).
        scenario: ``"class"``, ``"task"`` or ``"domain"`` (module docstring).
        seed: seed of the train/test split, the class order and subsampling (integer >= 0).
        test_fraction: fraction of each class held out for testing, in (0, 1).
        class_order: explicit class order, a permutation of 0..9; overrides ``seed`` for it.
        max_train_per_experience: cap on training samples per experience (random subset).
        max_test_per_experience: cap on test samples per experience (random subset).
    """
    check_n_experiences(n_experiences, 10)
    seed = check_int("seed", seed, 0)
    test_fraction = check_fraction("test_fraction", test_fraction)
    arrays = load_digits_arrays(seed=seed, test_fraction=test_fraction)
    return split_stream(
        "split-digits",
        *arrays,
        n_experiences=n_experiences,
        scenario=scenario,
        seed=seed,
        class_order=class_order,
        max_train_per_experience=max_train_per_experience,
        max_test_per_experience=max_test_per_experience,
    )


def permuted_digits(
    n_experiences: int = 5,
    scenario: str = "domain",
    seed: int = 0,
    test_fraction: float = 0.3,
    max_train_per_experience: int | None = None,
    max_test_per_experience: int | None = None,
) -> Stream:
    """Permuted digits: all 10 digit classes in every experience, pixels shuffled per experience.

    Experience 0 is the unpermuted data; see :func:`permuted_stream` for the scenarios and
    :func:`split_digits` for the data.
    """
    check_int("n_experiences", n_experiences, 1)
    seed = check_int("seed", seed, 0)
    test_fraction = check_fraction("test_fraction", test_fraction)
    arrays = load_digits_arrays(seed=seed, test_fraction=test_fraction)
    return permuted_stream(
        "permuted-digits",
        *arrays,
        n_experiences=n_experiences,
        scenario=scenario,
        seed=seed,
        max_train_per_experience=max_train_per_experience,
        max_test_per_experience=max_test_per_experience,
    )


def _mnist1d(n_samples: int, test_fraction: float, data_seed: int, cache: PathLike | None):
    n_samples = check_int("n_samples", n_samples, 100)
    test_fraction = check_fraction("test_fraction", test_fraction)
    data_seed = check_int("data_seed", data_seed, 0)
    x_train, y_train, x_test, y_test = load_mnist1d_arrays(
        n_samples=n_samples, test_fraction=test_fraction, data_seed=data_seed, cache=cache
    )
    missing = sorted(
        set(range(10)) - set(np.unique(y_train)) | set(range(10)) - set(np.unique(y_test))
    )
    if missing:
        raise ValueError(
            f"n_samples={n_samples} with test_fraction={test_fraction} leaves classes {missing} "
            f"without train or test samples; use a larger n_samples"
        )
    return x_train, y_train, x_test, y_test


def split_mnist1d(
    n_experiences: int = 5,
    scenario: str = "class",
    seed: int = 0,
    n_samples: int = 4000,
    test_fraction: float = 0.2,
    data_seed: int = 42,
    cache_dir: PathLike | None = None,
    class_order: Sequence[int] | None = None,
    max_train_per_experience: int | None = None,
    max_test_per_experience: int | None = None,
) -> Stream:
    """Split MNIST-1D: locally generated 1-D signals (40 features, 10 classes) split into tasks.

    Data come from :func:`bioplastic.data.sources.load_mnist1d_arrays` (generated by the
    ``mnist1d`` package, never downloaded, cached on disk). Features are standardised (mean 0,
    std 1 over the dataset), not scaled to [0, 1].

    Args:
        n_experiences: number of experiences, a divisor of 10.
        scenario: ``"class"``, ``"task"`` or ``"domain"`` (module docstring).
        seed: seed of the class order and subsampling (integer >= 0).
        n_samples: total signals generated, train and test together (integer >= 100).
        test_fraction: fraction held out for testing, in (0, 1).
        data_seed: seed of the data generator (42 is the package's reference).
        cache_dir: cache folder; default ``$BIOPLASTIC_CACHE`` or ``~/.cache/bioplastic``.
        class_order: explicit class order, a permutation of 0..9; overrides ``seed`` for it.
        max_train_per_experience: cap on training samples per experience (random subset).
        max_test_per_experience: cap on test samples per experience (random subset).
    """
    check_n_experiences(n_experiences, 10)
    arrays = _mnist1d(n_samples, test_fraction, data_seed, cache_dir)
    return split_stream(
        "split-mnist1d",
        *arrays,
        n_experiences=n_experiences,
        scenario=scenario,
        seed=seed,
        class_order=class_order,
        max_train_per_experience=max_train_per_experience,
        max_test_per_experience=max_test_per_experience,
    )


def permuted_mnist1d(
    n_experiences: int = 5,
    scenario: str = "domain",
    seed: int = 0,
    n_samples: int = 4000,
    test_fraction: float = 0.2,
    data_seed: int = 42,
    cache_dir: PathLike | None = None,
    max_train_per_experience: int | None = None,
    max_test_per_experience: int | None = None,
) -> Stream:
    """Permuted MNIST-1D: the 40 signal positions shuffled per experience (experience 0 intact).

    See :func:`split_mnist1d` for the data and :func:`permuted_stream` for the scenarios.
    """
    check_int("n_experiences", n_experiences, 1)
    arrays = _mnist1d(n_samples, test_fraction, data_seed, cache_dir)
    return permuted_stream(
        "permuted-mnist1d",
        *arrays,
        n_experiences=n_experiences,
        scenario=scenario,
        seed=seed,
        max_train_per_experience=max_train_per_experience,
        max_test_per_experience=max_test_per_experience,
    )


def _mnist(root: PathLike, fashion: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x_train, y_train, x_test, y_test = load_mnist_arrays(root, fashion=fashion)
    return x_train[:, None] / np.float32(255), y_train, x_test[:, None] / np.float32(255), y_test


def split_mnist(
    root: PathLike,
    n_experiences: int = 5,
    scenario: str = "class",
    seed: int = 0,
    fashion: bool = False,
    flatten: bool = True,
    class_order: Sequence[int] | None = None,
    max_train_per_experience: int | None = None,
    max_test_per_experience: int | None = None,
) -> Stream:
    """Split MNIST (or Fashion-MNIST) read from the original IDX files under ``root``.

    The official 60,000/10,000 train/test split is kept. Pixels are scaled from 0..255 to
    [0, 1]. Nothing is downloaded: see :func:`bioplastic.data.idx.locate_mnist_files` for the
    folder layouts accepted (flat, or torchvision's ``root/MNIST/raw``).

    Args:
        root: folder holding the four IDX files (plain or ``.gz``).
        n_experiences: number of experiences, a divisor of 10.
        scenario: ``"class"``, ``"task"`` or ``"domain"`` (module docstring).
        seed: seed of the class order and subsampling (integer >= 0).
        fashion: read Fashion-MNIST instead (``root/FashionMNIST/raw`` in torchvision's layout).
        flatten: inputs of shape ``(784,)`` if true, else ``(1, 28, 28)``.
        class_order: explicit class order, a permutation of 0..9; overrides ``seed`` for it.
        max_train_per_experience: cap on training samples per experience (random subset).
        max_test_per_experience: cap on test samples per experience (random subset).

    Raises:
        FileNotFoundError: an IDX file is missing (the message says where to put it).
        ValueError: an IDX file is malformed, or an argument is out of range.
    """
    check_n_experiences(n_experiences, 10)
    x_train, y_train, x_test, y_test = _mnist(root, fashion)
    if flatten:
        x_train, x_test = x_train.reshape(len(x_train), -1), x_test.reshape(len(x_test), -1)
    return split_stream(
        "split-fashion-mnist" if fashion else "split-mnist",
        x_train,
        y_train,
        x_test,
        y_test,
        n_experiences=n_experiences,
        scenario=scenario,
        seed=seed,
        class_order=class_order,
        max_train_per_experience=max_train_per_experience,
        max_test_per_experience=max_test_per_experience,
    )


def split_fashion_mnist(root: PathLike, **kwargs: Any) -> Stream:
    """Split Fashion-MNIST: :func:`split_mnist` with ``fashion=True``."""
    return split_mnist(root, fashion=True, **kwargs)


def permuted_mnist(
    root: PathLike,
    n_experiences: int = 5,
    scenario: str = "domain",
    seed: int = 0,
    fashion: bool = False,
    max_train_per_experience: int | None = None,
    max_test_per_experience: int | None = None,
) -> Stream:
    """Permuted MNIST (or Fashion-MNIST) from local IDX files: 784 pixels shuffled per experience.

    Each experience holds a float32 copy of the data (about 220 MB for the full 70,000 images);
    use ``max_train_per_experience`` for quick runs. See :func:`split_mnist` for ``root`` and
    :func:`permuted_stream` for the scenarios.
    """
    check_int("n_experiences", n_experiences, 1)
    arrays = _mnist(root, fashion)
    return permuted_stream(
        "permuted-fashion-mnist" if fashion else "permuted-mnist",
        *arrays,
        n_experiences=n_experiences,
        scenario=scenario,
        seed=seed,
        max_train_per_experience=max_train_per_experience,
        max_test_per_experience=max_test_per_experience,
    )


def permuted_fashion_mnist(root: PathLike, **kwargs: Any) -> Stream:
    """Permuted Fashion-MNIST: :func:`permuted_mnist` with ``fashion=True``."""
    return permuted_mnist(root, fashion=True, **kwargs)


# --------------------------------------------------------------------------- registry

#: Stream name -> builder. Read-only; the names are those accepted by :func:`make_stream`.
STREAM_BUILDERS: MappingProxyType[str, Callable[..., Stream]] = MappingProxyType(
    {
        "split-digits": split_digits,
        "permuted-digits": permuted_digits,
        "split-mnist1d": split_mnist1d,
        "permuted-mnist1d": permuted_mnist1d,
        "split-mnist": split_mnist,
        "split-fashion-mnist": split_fashion_mnist,
        "permuted-mnist": permuted_mnist,
        "permuted-fashion-mnist": permuted_fashion_mnist,
    }
)


def available_streams() -> list[str]:
    """Names accepted by :func:`make_stream`, sorted."""
    return sorted(STREAM_BUILDERS)


def make_stream(name: str, **kwargs: Any) -> Stream:
    """Build a stream by name.

    Args:
        name: one of :func:`available_streams` (case-insensitive; ``_`` may stand for ``-``).
        **kwargs: passed to the builder, e.g. ``n_experiences``, ``scenario``, ``seed``, and
            ``root`` for the MNIST streams.

    Raises:
        ValueError: unknown name (the message lists the valid ones) or invalid arguments.

    Example:
        >>> make_stream("permuted-digits", n_experiences=3).n_experiences
        3
    """
    key = str(name).strip().lower().replace("_", "-")
    if key not in STREAM_BUILDERS:
        raise ValueError(f"unknown stream {name!r}; valid names: {', '.join(available_streams())}")
    return STREAM_BUILDERS[key](**kwargs)
