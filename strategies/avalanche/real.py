"""Avalanche's own benchmarks (SplitMNIST, PermutedMNIST, SplitFMNIST, SplitCIFAR10/100), offline.

:func:`real_benchmark` builds Avalanche 0.6's classic benchmark classes with
``dataset_root=root``. Avalanche creates their datasets with torchvision's ``download=True``,
which downloads only when the files in the root fail torchvision's own check; this module runs
that same check first and raises a one-line ``FileNotFoundError`` naming the missing (or
corrupted) files, so nothing here ever reaches the network. What torchvision checks:

* MNIST / Fashion-MNIST (``<root>/MNIST/raw``, ``<root>/FashionMNIST/raw``): the four
  uncompressed IDX files must exist (no checksum). A file present only as ``<name>.gz`` is
  accepted when the ``.gz`` passes torchvision's md5 (torchvision then decompresses it offline,
  as after its own download). torchvision's legacy ``processed/training.pt`` and ``test.pt``
  are accepted too.
* CIFAR-10 (``<root>/cifar-10-batches-py``: ``data_batch_1``..``5``, ``test_batch``,
  ``batches.meta``) and CIFAR-100 (``<root>/cifar-100-python``: ``train``, ``test``, ``meta``):
  every file must pass torchvision's md5 check, i.e. be the original file.

A folder in the layout torchvision's own download leaves works as is. Example::

    from strategies.avalanche import BioPlastic
    from strategies.avalanche.real import real_benchmark

    benchmark = real_benchmark("split-cifar100", root="~/data", n_experiences=10, seed=0)
    for experience in benchmark.train_stream:
        strategy.train(experience)
        strategy.eval(benchmark.test_stream)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision.datasets.cifar as tv_cifar
import torchvision.datasets.mnist as tv_mnist
import torchvision.datasets.utils as tv_utils
from avalanche.benchmarks.classic import (
    PermutedMNIST,
    SplitCIFAR10,
    SplitCIFAR100,
    SplitFMNIST,
    SplitMNIST,
)

from bioplastic._checks import check_bool, check_int

__all__ = [
    "CIFAR_MEAN",
    "CIFAR_STD",
    "REAL_BENCHMARKS",
    "RealBenchmarkSpec",
    "check_dataset_root",
    "cifar_tensor",
    "real_benchmark",
    "synthetic_cifar",
]

#: Channel means and standard deviations of CIFAR-10's training images (Avalanche's transforms).
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)


@dataclass(frozen=True)
class RealBenchmarkSpec:
    """One of Avalanche's benchmarks: its class, its torchvision dataset, its default split."""

    builder: Callable[..., Any]
    dataset: type
    n_classes: int
    n_experiences: int
    input_shape: tuple[int, int, int]


#: Benchmark name -> what it is built from. ``n_experiences`` is the default split.
REAL_BENCHMARKS: dict[str, RealBenchmarkSpec] = {
    "split-mnist": RealBenchmarkSpec(SplitMNIST, tv_mnist.MNIST, 10, 5, (1, 28, 28)),
    "permuted-mnist": RealBenchmarkSpec(PermutedMNIST, tv_mnist.MNIST, 10, 10, (1, 28, 28)),
    "split-fmnist": RealBenchmarkSpec(SplitFMNIST, tv_mnist.FashionMNIST, 10, 5, (1, 28, 28)),
    "split-cifar10": RealBenchmarkSpec(SplitCIFAR10, tv_cifar.CIFAR10, 10, 5, (3, 32, 32)),
    "split-cifar100": RealBenchmarkSpec(SplitCIFAR100, tv_cifar.CIFAR100, 100, 10, (3, 32, 32)),
}


def _mnist_problems(root: Path, dataset: type) -> tuple[Path, list[str], list[str]]:
    """Missing and corrupted files of an MNIST-format root, as torchvision judges them."""
    folder = root / dataset.__name__
    processed = folder / "processed"
    legacy = [processed / dataset.training_file, processed / dataset.test_file]
    if all(tv_mnist.check_integrity(str(p)) for p in legacy):
        return folder / "processed", [], []
    missing, corrupted = [], []
    for gz_name, md5 in dataset.resources:
        name = os.path.splitext(gz_name)[0]
        if tv_mnist.check_integrity(str(folder / "raw" / name)):
            continue
        gz = folder / "raw" / gz_name
        if not gz.is_file():
            missing.append(name)
        elif not tv_utils.check_integrity(str(gz), md5):
            corrupted.append(gz_name)
    return folder / "raw", missing, corrupted


def _cifar_problems(root: Path, dataset: type) -> tuple[Path, list[str], list[str]]:
    """Missing and corrupted files of a CIFAR root, as torchvision judges them (md5)."""
    folder = root / dataset.base_folder
    entries = [
        *dataset.train_list,
        *dataset.test_list,
        [dataset.meta["filename"], dataset.meta["md5"]],
    ]
    missing = [name for name, _ in entries if not (folder / name).is_file()]
    corrupted = [
        name
        for name, md5 in entries
        if name not in missing and not tv_cifar.check_integrity(str(folder / name), md5)
    ]
    return folder, missing, corrupted


def check_dataset_root(name: str, root: str | os.PathLike[str]) -> Path:
    """Raise ``FileNotFoundError`` (one line) unless ``root`` holds benchmark ``name``'s files.

    The check is torchvision's own (see the module docstring), so a root that passes it is
    never downloaded into. Returns the folder the files were found in.
    """
    spec = _spec(name)
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"{name}: dataset root {root} is not a folder")
    if issubclass(spec.dataset, tv_mnist.MNIST):
        folder, missing, corrupted = _mnist_problems(root, spec.dataset)
    else:
        folder, missing, corrupted = _cifar_problems(root, spec.dataset)
    if missing or corrupted:
        parts = [f"missing {', '.join(missing)}"] if missing else []
        if corrupted:
            parts.append(f"failing torchvision's md5 check: {', '.join(corrupted)}")
        raise FileNotFoundError(
            f"{name}: {folder} lacks the original {spec.dataset.__name__} files ("
            f"{'; '.join(parts)}); put them there (torchvision's layout), bioplastic never "
            "downloads"
        )
    return folder


def _spec(name: str) -> RealBenchmarkSpec:
    if name not in REAL_BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; choose one of {sorted(REAL_BENCHMARKS)}")
    return REAL_BENCHMARKS[name]


def real_benchmark(
    name: str,
    root: str | os.PathLike[str],
    n_experiences: int | None = None,
    seed: int | None = 0,
    return_task_id: bool = False,
    **kwargs: Any,
) -> Any:
    """Avalanche's own benchmark ``name`` from the dataset files in ``root``, never downloading.

    Args:
        name: ``"split-mnist"`` (``SplitMNIST``), ``"permuted-mnist"`` (``PermutedMNIST``),
            ``"split-fmnist"`` (``SplitFMNIST``), ``"split-cifar10"`` (``SplitCIFAR10``) or
            ``"split-cifar100"`` (``SplitCIFAR100``).
        root: the folder passed as Avalanche's ``dataset_root`` (torchvision's layout, e.g.
            ``root/MNIST/raw/train-images-idx3-ubyte`` or ``root/cifar-10-batches-py``).
        n_experiences: number of experiences (default: 5 for the 10-class splits, 10 for
            PermutedMNIST and SplitCIFAR100).
        seed: Avalanche's seed (class order, permutations); ``None`` for a random one.
        return_task_id: task labels 0, 1, ... per experience (task-incremental) instead of 0.
        **kwargs: passed on to the Avalanche class (``train_transform``, ``eval_transform``,
            ``fixed_class_order``, ...).

    Returns:
        The Avalanche benchmark (``train_stream``, ``test_stream``, ``n_classes``...).

    Raises:
        ValueError: unknown ``name`` or a bad ``n_experiences``/``seed``/``return_task_id``.
        FileNotFoundError: ``root`` lacks the dataset's files (the message names them).
    """
    spec = _spec(name)
    n = spec.n_experiences if n_experiences is None else n_experiences
    check_int("n_experiences", n, 1, None if name == "permuted-mnist" else spec.n_classes)
    if seed is not None:
        check_int("seed (or None)", seed, 0, 2**32 - 1)
    check_bool("return_task_id", return_task_id)
    if "dataset_root" in kwargs:
        raise ValueError("pass the dataset folder as root, not dataset_root")
    check_dataset_root(name, root)
    root = Path(root).expanduser()
    return spec.builder(
        n_experiences=n, return_task_id=return_task_id, seed=seed, dataset_root=root, **kwargs
    )


def synthetic_cifar(
    n_classes: int = 10, per_class: int = 100, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Images in CIFAR's in-memory format (``uint8``, ``[n, 32, 32, 3]``, as torchvision's
    ``CIFAR10.data``) and ``int64`` labels, for benchmarks that must not need the real files.

    Class ``c`` is a smooth random colour template (a 4x4 pattern upsampled to 32x32) plus
    per-image noise (std 40 of 255) and a random brightness shift, so a network can learn it
    but not in one step. Labels are ``repeat(arange(n_classes), per_class)``. SYNTHETIC: numbers
    measured on it say nothing about accuracy on CIFAR.
    """
    check_int("n_classes", n_classes, 1)
    check_int("per_class", per_class, 1)
    rng = np.random.default_rng(seed)
    templates = rng.uniform(40, 215, (n_classes, 4, 4, 3)).repeat(8, axis=1).repeat(8, axis=2)
    labels = np.repeat(np.arange(n_classes), per_class)
    noise = rng.normal(0.0, 40.0, (labels.size, 32, 32, 3))
    shift = rng.normal(0.0, 20.0, (labels.size, 1, 1, 1))
    images = np.clip(templates[labels] + noise + shift, 0, 255).astype(np.uint8)
    return images, labels.astype(np.int64)


def cifar_tensor(images: np.ndarray) -> torch.Tensor:
    """``uint8 [n, 32, 32, 3]`` images -> normalised ``float32 [n, 3, 32, 32]`` (what Avalanche's
    CIFAR eval transform, ``ToTensor`` and ``Normalize(CIFAR_MEAN, CIFAR_STD)``, gives)."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR_STD).view(1, 3, 1, 1)
    return (x - mean) / std
