"""Generic stream builders for any arrays: :func:`split_stream` and :func:`permuted_stream`.

Scenarios and targets: see :mod:`bioplastic.data.streams`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from bioplastic._checks import check_int, check_optional_int
from bioplastic.data._checks import check_n_experiences, check_scenario
from bioplastic.data.experience import ArrayLike, Experience, Stream

logger = logging.getLogger(__name__)


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
