"""Episodes for few-shot evaluation: learn2learn ``TaskDataset`` helpers and index episodes.

learn2learn draws tasks with Python's global ``random`` module: :func:`seeded_random` seeds it
for a block and restores the previous state afterwards, so that sampling is reproducible and
the rest of the program's random stream is not disturbed. :func:`make_taskset` builds the usual
``NWays -> KShots -> LoadData -> RemapLabels`` pipeline over any labelled tensors or dataset,
restricted to the classes you name (so that meta-train and meta-test episodes cannot mix).

For benchmarks, :func:`index_episodes` returns episodes as *indices* into a dataset (drawn by
:class:`bioplastic.data.episodes.EpisodeSampler` or by a learn2learn taskset): features are then
computed once per backbone and every rule is evaluated on exactly the same episodes;
:func:`episodes_digest` fingerprints such a list.

Example::

    taskset = make_taskset(x, y, ways=5, shots=1, queries=15, classes=test_classes)
    with seeded_random(0):
        data, labels = taskset.sample()
    support_x, support_y, query_x, query_y = split_support_query(data, labels, shots=1)
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import learn2learn as l2l
import numpy as np
import torch
from learn2learn.data import transforms as l2l_transforms
from torch import Tensor
from torch.utils.data import Dataset, TensorDataset

from bioplastic.data.episodes import EpisodeSampler

__all__ = [
    "IndexEpisode",
    "episode_classes",
    "episodes_digest",
    "index_episodes",
    "make_taskset",
    "seeded_random",
    "split_support_query",
]

#: ``(support_index, support_y, query_index, query_y)``: indices into a dataset and episode
#: labels ``0..ways-1``.
IndexEpisode = tuple[Tensor, Tensor, Tensor, Tensor]

SAMPLERS = ("bioplastic", "learn2learn")


@contextmanager
def seeded_random(seed: int) -> Iterator[None]:
    """Seed Python's ``random`` (which learn2learn samples with) inside the block; restore after.

    Example::

        with seeded_random(0):
            tasks = [taskset.sample() for _ in range(600)]
    """
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed must be an int, got {seed!r}")
    state = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(state)


def _labels_of(data: Tensor | Dataset, labels: Tensor | Sequence[int] | None) -> Tensor:
    if labels is None:
        targets = getattr(data, "targets", None)
        if targets is None:
            raise ValueError("labels are required unless data is a dataset with .targets")
        labels = targets
    labels = torch.as_tensor(labels).reshape(-1)
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    if len(labels) != len(data):
        raise ValueError(f"{len(labels)} labels for {len(data)} examples")
    return labels.long()


def make_taskset(
    data: Tensor | Dataset,
    labels: Tensor | Sequence[int] | None = None,
    ways: int = 5,
    shots: int = 1,
    queries: int = 15,
    classes: Sequence[int] | None = None,
    num_tasks: int = -1,
) -> l2l.data.TaskDataset:
    """A learn2learn ``TaskDataset`` of ``ways``-way episodes with ``shots + queries`` per class.

    Args:
        data: inputs (a tensor, first dimension = examples) or a ``Dataset`` of
            ``(input, label)`` items.
        labels: one integer label per example (optional for a dataset with ``.targets``);
            they are used to build the ``MetaDataset`` index without loading any input.
        ways, shots, queries: episode size; each task holds ``ways * (shots + queries)``
            examples, labels remapped to ``0..ways-1`` (split them with
            :func:`split_support_query`).
        classes: restrict episodes to these labels (e.g. the meta-test classes); default all.
        num_tasks: learn2learn's ``num_tasks`` (-1: a new task on every draw; ``n > 0``: ``n``
            tasks drawn on first access and cached).

    Returns:
        ``l2l.data.TaskDataset`` with transforms ``NWays, KShots, LoadData, RemapLabels``. It
        samples with Python's ``random``: wrap sampling in :func:`seeded_random`.

    Raises:
        ValueError: for counts out of range, or fewer than ``ways`` classes with at least
            ``shots + queries`` examples.
    """
    for name, value, low in (("ways", ways, 1), ("shots", shots, 1), ("queries", queries, 0)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    if not isinstance(num_tasks, int) or num_tasks == 0 or num_tasks < -1:
        raise ValueError(f"num_tasks must be -1 or a positive int, got {num_tasks!r}")
    y = _labels_of(data, labels)
    dataset = data if isinstance(data, Dataset) else TensorDataset(torch.as_tensor(data), y)
    keep = set(int(c) for c in torch.unique(y)) if classes is None else {int(c) for c in classes}
    unknown = keep - set(int(c) for c in torch.unique(y))
    if unknown:
        raise ValueError(f"classes not present in the labels: {sorted(unknown)[:10]}")
    labels_to_indices: dict[int, list[int]] = {}
    for i, label in enumerate(y.tolist()):
        if label in keep:
            labels_to_indices.setdefault(label, []).append(i)
    need = shots + queries
    usable = [c for c, idx in labels_to_indices.items() if len(idx) >= need]
    if len(usable) < ways:
        raise ValueError(
            f"ways={ways} needs {ways} classes with >= {need} examples; {len(usable)} have them"
        )
    if len(usable) < len(labels_to_indices):
        labels_to_indices = {c: labels_to_indices[c] for c in usable}
    meta = l2l.data.MetaDataset(dataset, labels_to_indices=labels_to_indices)
    transforms = [
        l2l_transforms.NWays(meta, n=ways),
        l2l_transforms.KShots(meta, k=need),
        l2l_transforms.LoadData(meta),
        l2l_transforms.RemapLabels(meta),
    ]
    return l2l.data.TaskDataset(meta, task_transforms=transforms, num_tasks=num_tasks)


def split_support_query(
    data: Tensor, labels: Tensor, shots: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Split a task (``data, labels``) into ``shots`` support examples per class and the rest.

    Support and query are sorted by label; within a class the original order is kept.

    Raises:
        ValueError: if a class has ``shots`` examples or fewer (no query would remain).
    """
    labels = torch.as_tensor(labels).reshape(-1)
    if len(labels) != len(data):
        raise ValueError(f"{len(labels)} labels for {len(data)} examples")
    support, query = [], []
    for c in torch.unique(labels):
        idx = torch.nonzero(labels == c).reshape(-1)
        if len(idx) <= shots:
            raise ValueError(f"class {int(c)} has {len(idx)} examples, shots={shots} leaves none")
        support.append(idx[:shots])
        query.append(idx[shots:])
    s, q = torch.cat(support), torch.cat(query)
    return data[s], labels[s], data[q], labels[q]


def index_episodes(
    labels: Tensor | Sequence[int],
    ways: int,
    shots: int,
    queries: int,
    n: int,
    seed: int,
    sampler: str = "bioplastic",
) -> list[IndexEpisode]:
    """``n`` seeded episodes as indices into the examples that ``labels`` describes.

    Args:
        labels: one integer label per example.
        ways, shots, queries: episode size.
        n: number of episodes.
        seed: seed of the episode stream; the same arguments give the same episodes.
        sampler: ``"bioplastic"`` (:class:`~bioplastic.data.episodes.EpisodeSampler`, its own
            ``torch.Generator``) or ``"learn2learn"`` (:func:`make_taskset` under
            :func:`seeded_random`).

    Returns:
        A list of ``(support_index, support_y, query_index, query_y)``.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ValueError(f"n must be an int >= 0, got {n!r}")
    y = torch.as_tensor(labels).reshape(-1).long()
    positions = torch.arange(len(y))
    if sampler == "bioplastic":
        return EpisodeSampler(positions, y, ways=ways, shots=shots, queries=queries,
                              seed=seed).episodes(n)  # fmt: skip
    taskset = make_taskset(positions, y, ways=ways, shots=shots, queries=queries)
    episodes = []
    with seeded_random(seed):
        for _ in range(n):
            data, task_labels = taskset.sample()
            episodes.append(split_support_query(data, task_labels, shots))
    return episodes


def episode_classes(episode: IndexEpisode, labels: Tensor) -> set[int]:
    """The original labels (``labels[index]``) an index episode draws from."""
    s_idx, _, q_idx, _ = episode
    return set(labels[s_idx].tolist()) | set(labels[q_idx].tolist())


def episodes_digest(episodes: Sequence[IndexEpisode]) -> str:
    """SHA-256 (hex, 16 digits) of a list of index episodes: equal iff the episodes are equal."""
    h = hashlib.sha256()
    for episode in episodes:
        for part in episode:
            h.update(np.ascontiguousarray(part.cpu().numpy().astype(np.int64)).tobytes())
            h.update(b"|")
        h.update(b";")
    return h.hexdigest()[:16]
