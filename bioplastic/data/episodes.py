"""N-way K-shot episodes over any labelled data, seeded and independent of learn2learn.

An episode draws ``ways`` classes, then ``shots`` support and ``queries`` query examples from
each (without replacement, so support and query never share an example), and relabels the
classes ``0..ways-1`` in the order they were drawn. Its own ``torch.Generator`` makes every
sampler reproducible from its seed without touching (or being touched by) global random state.

This module also gives class-disjoint meta-train / meta-test splits of the small offline
datasets (:func:`digits_fewshot_splits`, :func:`mnist1d_fewshot_splits`); the glyphs dataset
(:mod:`bioplastic.data.glyphs`) is the many-class one.

Example:
    >>> train, test = digits_fewshot_splits()
    >>> sampler = EpisodeSampler(test.x, test.y, ways=5, shots=1, queries=15, seed=0)
    >>> support_x, support_y, query_x, query_y = sampler.sample()
    >>> support_x.shape, query_y.shape
    (torch.Size([5, 64]), torch.Size([75]))
    >>> fixed = sampler.episodes(600)   # the same 600 episodes for every run with seed 0
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from bioplastic._checks import check_int

__all__ = [
    "Episode",
    "EpisodeSampler",
    "FewShotSplit",
    "digits_fewshot_splits",
    "mnist1d_fewshot_splits",
]

#: ``(support_x, support_y, query_x, query_y)``; labels are ``int64`` in ``0..ways-1``.
Episode = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


class FewShotSplit(NamedTuple):
    """Examples of some classes: inputs ``x``, original labels ``y``, and the sorted ``classes``."""

    x: torch.Tensor
    y: torch.Tensor
    classes: tuple[int, ...]


class EpisodeSampler:
    """Seeded N-way K-shot episodes from a labelled tensor or dataset.

    Every call to :meth:`sample` (or step of iteration, which never ends) draws a new episode
    from the sampler's own generator; :meth:`episodes` returns the first ``n`` episodes of the
    seed, identical on every call, for fixed evaluation sets. Support and query examples are
    ordered by episode label: ``support_y == [0]*shots + [1]*shots + ...``, likewise for queries.

    Args:
        x: inputs, a tensor (or array) whose first dimension indexes examples, or a
            ``Dataset`` whose items are ``(input, label)`` (inputs are stacked per episode).
        y: integer labels, one per example; optional when ``x`` is a dataset with ``.targets``.
        ways: classes per episode (N), at least 1 and at most the number of classes.
        shots: support examples per class (K), at least 1.
        queries: query examples per class, at least 0. Every class needs at least
            ``shots + queries`` examples.
        seed: seed of the sampler's generator.

    Raises:
        ValueError: naming the argument, for a count out of range, too few classes for ``ways``,
            a class with fewer than ``shots + queries`` examples, or labels that do not match
            ``x`` in length.
        TypeError: if ``x`` is a dataset without ``.targets`` and ``y`` is not given.
    """

    def __init__(
        self,
        x: torch.Tensor | np.ndarray | Dataset,
        y: torch.Tensor | np.ndarray | Sequence[int] | None = None,
        ways: int = 5,
        shots: int = 1,
        queries: int = 15,
        seed: int = 0,
    ) -> None:
        self.ways = check_int("ways", ways, 1)
        self.shots = check_int("shots", shots, 1)
        self.queries = check_int("queries", queries, 0)
        self.seed = check_int("seed", seed, 0)

        if isinstance(x, Dataset):
            if y is None:
                if not hasattr(x, "targets"):
                    raise TypeError("x is a Dataset without .targets: pass its labels as y")
                y = x.targets
            self._x: torch.Tensor | Dataset = x
        else:
            self._x = torch.as_tensor(x)
            if y is None:
                raise ValueError("y (the labels) is required when x is a tensor")
        labels = torch.as_tensor(y).reshape(-1)
        if labels.dtype.is_floating_point or labels.dtype == torch.bool:
            raise ValueError(f"y must hold integer class labels, got dtype {labels.dtype}")
        if len(labels) != len(self._x):
            raise ValueError(f"y has {len(labels)} labels but x has {len(self._x)} examples")
        self._device = self._x.device if torch.is_tensor(self._x) else torch.device("cpu")

        labels = labels.cpu().long()
        classes, counts = torch.unique(labels, return_counts=True)
        if len(classes) < self.ways:
            raise ValueError(
                f"ways={self.ways} needs at least {self.ways} classes, "
                f"but the data has {len(classes)}"
            )
        needed = self.shots + self.queries
        smallest = int(counts.argmin())
        if counts[smallest] < needed:
            raise ValueError(
                f"shots + queries = {self.shots} + {self.queries} examples per class are needed, "
                f"but class {int(classes[smallest])} has only {int(counts[smallest])}"
            )
        #: The original labels, sorted; episode classes are drawn from these.
        self.classes: tuple[int, ...] = tuple(int(c) for c in classes)
        order = torch.argsort(labels, stable=True)
        self._indices = list(torch.split(order, counts.tolist()))
        self._generator = torch.Generator().manual_seed(self.seed)

    def sample(self) -> Episode:
        """Draw the next episode from the sampler's generator."""
        return self._draw(self._generator)

    def __iter__(self) -> Iterator[Episode]:
        while True:
            yield self.sample()

    def episodes(self, n: int) -> list[Episode]:
        """The first ``n`` episodes of this seed (a fresh generator: same list on every call)."""
        n = check_int("n", n, 0)
        generator = torch.Generator().manual_seed(self.seed)
        return [self._draw(generator) for _ in range(n)]

    def reset(self) -> None:
        """Restart :meth:`sample` and iteration from the first episode of the seed."""
        self._generator.manual_seed(self.seed)

    def _draw(self, generator: torch.Generator) -> Episode:
        chosen = torch.randperm(len(self._indices), generator=generator)[: self.ways]
        support, query = [], []
        for c in chosen.tolist():
            members = self._indices[c]
            pick = members[torch.randperm(len(members), generator=generator)]
            support.append(pick[: self.shots])
            query.append(pick[self.shots : self.shots + self.queries])
        labels = torch.arange(self.ways, device=self._device)
        return (
            self._gather(torch.cat(support)),
            labels.repeat_interleave(self.shots),
            self._gather(torch.cat(query)),
            labels.repeat_interleave(self.queries),
        )

    def _gather(self, index: torch.Tensor) -> torch.Tensor:
        if torch.is_tensor(self._x):
            return self._x[index.to(self._device)]
        items = [torch.as_tensor(self._x[i][0]) for i in index.tolist()]
        if not items:
            return torch.empty(0)
        return torch.stack(items)

    def __repr__(self) -> str:
        return (
            f"EpisodeSampler(ways={self.ways}, shots={self.shots}, queries={self.queries}, "
            f"seed={self.seed}, classes={len(self.classes)})"
        )


def _class_partition(seed: int | None, n_classes: int, n_train_classes: int) -> np.ndarray:
    n_train_classes = check_int("n_train_classes", n_train_classes, 1)
    if n_train_classes >= n_classes:
        raise ValueError(
            f"n_train_classes must be an integer in [1, {n_classes - 1}], got {n_train_classes}"
        )
    if seed is None:
        return np.arange(n_classes)
    return np.random.default_rng(check_int("seed", seed, 0)).permutation(n_classes)


def _split_classes(
    x: np.ndarray, y: np.ndarray, order: np.ndarray, n_train_classes: int
) -> tuple[FewShotSplit, FewShotSplit]:
    splits = []
    for classes in (order[:n_train_classes], order[n_train_classes:]):
        mask = np.isin(y, classes)
        splits.append(
            FewShotSplit(
                x=torch.from_numpy(np.ascontiguousarray(x[mask])),
                y=torch.from_numpy(np.ascontiguousarray(y[mask])),
                classes=tuple(sorted(int(c) for c in classes)),
            )
        )
    return splits[0], splits[1]


def digits_fewshot_splits(
    seed: int | None = None, n_train_classes: int = 5
) -> tuple[FewShotSplit, FewShotSplit]:
    """Class-disjoint (meta-train, meta-test) splits of scikit-learn's digits (1,797 examples).

    All examples of a class go to one side. With ``seed=None`` digits ``0..n_train_classes-1``
    are meta-train and the rest meta-test (0-4 / 5-9 by default); an integer seed draws a random
    partition of the ten digits instead (e.g. to average over partitions).

    Returns:
        ``(meta_train, meta_test)``: :class:`FewShotSplit` with ``float32`` inputs ``[N, 64]``
        in [0, 1] and the original ``int64`` digit labels.

    Raises:
        ValueError: if ``n_train_classes`` is not in [1, 9] or ``seed`` is negative.
    """
    from bioplastic.data.sources import load_digits_arrays

    order = _class_partition(seed, 10, n_train_classes)
    x_train, y_train, x_test, y_test = load_digits_arrays()
    x, y = np.concatenate([x_train, x_test]), np.concatenate([y_train, y_test])
    return _split_classes(x, y, order, n_train_classes)


def mnist1d_fewshot_splits(
    seed: int | None = None,
    n_train_classes: int = 5,
    n_samples: int = 5000,
    cache_dir: str | os.PathLike[str] | None = None,
) -> tuple[FewShotSplit, FewShotSplit]:
    """Class-disjoint (meta-train, meta-test) splits of MNIST-1D, generated locally.

    The signals come from :func:`bioplastic.data.sources.load_mnist1d_arrays` (the ``mnist1d``
    package's generator with its reference parameters, cached; never downloaded), train and test
    pooled. Classes are partitioned as in :func:`digits_fewshot_splits`.

    Args:
        seed: ``None`` for classes 0-4 / 5-9 (with the default ``n_train_classes``), else the
            seed of a random partition of the ten classes.
        n_train_classes: classes in meta-train, in [1, 9].
        n_samples: signals generated in total (500 per class by default, the reference size).
        cache_dir: cache folder; default ``$BIOPLASTIC_CACHE`` or ``~/.cache/bioplastic``.

    Returns:
        ``(meta_train, meta_test)``: :class:`FewShotSplit` with ``float32`` signals ``[N, 40]``
        and the original ``int64`` labels.
    """
    from bioplastic.data.sources import load_mnist1d_arrays

    order = _class_partition(seed, 10, n_train_classes)
    n_samples = check_int("n_samples", n_samples, 10)
    x_train, y_train, x_test, y_test = load_mnist1d_arrays(n_samples=n_samples, cache=cache_dir)
    x, y = np.concatenate([x_train, x_test]), np.concatenate([y_train, y_test])
    return _split_classes(x, y, order, n_train_classes)
