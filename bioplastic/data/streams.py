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

Layout: the containers live in :mod:`bioplastic.data.experience`, the generic builders in
:mod:`bioplastic.data.builders`; this module holds the named datasets and the registry, and
re-exports the rest.

Example:
    >>> stream = make_stream("split-digits", scenario="task", seed=0)
    >>> len(stream), stream.n_classes, stream.input_shape
    (5, 2, (64,))
    >>> for exp in stream:
    ...     pass  # train on exp.x_train, exp.y_train with task label exp.task_label
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from types import MappingProxyType
from typing import Any

import numpy as np

from bioplastic._checks import check_fraction, check_int
from bioplastic.data._checks import SCENARIOS, check_n_experiences
from bioplastic.data.builders import permuted_stream, split_stream
from bioplastic.data.experience import Experience, Stream
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

PathLike = str | os.PathLike[str]
Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


# --------------------------------------------------------------------------- one generic builder


def _named_stream(
    kind: str,
    name: str,
    load: Callable[[], Arrays],
    *,
    n_experiences: int,
    scenario: str,
    seed: int,
    class_order: Sequence[int] | None = None,
    max_train_per_experience: int | None = None,
    max_test_per_experience: int | None = None,
) -> Stream:
    """Validate ``n_experiences`` (before any data is loaded), load the arrays, build the stream.

    ``kind`` is ``"split"`` (every named dataset has 10 classes, so ``n_experiences`` must
    divide 10) or ``"permuted"`` (any ``n_experiences >= 1``, no ``class_order``).
    """
    caps = {
        "max_train_per_experience": max_train_per_experience,
        "max_test_per_experience": max_test_per_experience,
    }
    if kind == "split":
        check_n_experiences(n_experiences, 10)
        return split_stream(
            name,
            *load(),
            n_experiences=n_experiences,
            scenario=scenario,
            seed=seed,
            class_order=class_order,
            **caps,
        )
    check_int("n_experiences", n_experiences, 1)
    return permuted_stream(
        name, *load(), n_experiences=n_experiences, scenario=scenario, seed=seed, **caps
    )


def _digits(seed: int, test_fraction: float) -> Arrays:
    seed = check_int("seed", seed, 0)
    test_fraction = check_fraction("test_fraction", test_fraction)
    return load_digits_arrays(seed=seed, test_fraction=test_fraction)


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


def _mnist(root: PathLike, fashion: bool, flatten: bool = False) -> Arrays:
    """IDX arrays scaled to [0, 1]: images ``(n, 1, 28, 28)``, or ``(n, 784)`` if ``flatten``."""
    x_train, y_train, x_test, y_test = load_mnist_arrays(root, fashion=fashion)
    x_train, x_test = x_train[:, None] / np.float32(255), x_test[:, None] / np.float32(255)
    if flatten:
        x_train, x_test = x_train.reshape(len(x_train), -1), x_test.reshape(len(x_test), -1)
    return x_train, y_train, x_test, y_test


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
    return _named_stream(
        "split",
        "split-digits",
        lambda: _digits(seed, test_fraction),
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
    return _named_stream(
        "permuted",
        "permuted-digits",
        lambda: _digits(seed, test_fraction),
        n_experiences=n_experiences,
        scenario=scenario,
        seed=seed,
        max_train_per_experience=max_train_per_experience,
        max_test_per_experience=max_test_per_experience,
    )


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
    return _named_stream(
        "split",
        "split-mnist1d",
        lambda: _mnist1d(n_samples, test_fraction, data_seed, cache_dir),
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
    return _named_stream(
        "permuted",
        "permuted-mnist1d",
        lambda: _mnist1d(n_samples, test_fraction, data_seed, cache_dir),
        n_experiences=n_experiences,
        scenario=scenario,
        seed=seed,
        max_train_per_experience=max_train_per_experience,
        max_test_per_experience=max_test_per_experience,
    )


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
    return _named_stream(
        "split",
        "split-fashion-mnist" if fashion else "split-mnist",
        lambda: _mnist(root, fashion, flatten),
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
    return _named_stream(
        "permuted",
        "permuted-fashion-mnist" if fashion else "permuted-mnist",
        lambda: _mnist(root, fashion),
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
