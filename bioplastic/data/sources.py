"""Raw datasets as numpy arrays: scikit-learn's digits and locally generated MNIST-1D.

These loaders return ``(x_train, y_train, x_test, y_test)`` and know nothing about streams;
:mod:`bioplastic.data.streams` splits them into experiences. Nothing here touches the network.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from bioplastic._io import write_atomic_with

__all__ = ["cache_dir", "load_digits_arrays", "load_mnist1d_arrays"]

logger = logging.getLogger(__name__)

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]

#: Bump when the cached file layout changes, so that stale caches are not read.
_CACHE_FORMAT = 1


def cache_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """The folder where generated data is cached.

    Args:
        path: explicit folder; if ``None``, ``$BIOPLASTIC_CACHE`` if set, else
            ``~/.cache/bioplastic``. The folder is not created here.
    """
    if path is not None:
        return Path(path).expanduser()
    env = os.environ.get("BIOPLASTIC_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "bioplastic"


def load_digits_arrays(seed: int = 0, test_fraction: float = 0.3) -> Arrays:
    """scikit-learn's bundled handwritten digits (1,797 8x8 images, 10 classes), split stratified.

    Args:
        seed: seed of the stratified train/test split (``random_state``).
        test_fraction: fraction of each class held out for testing, in (0, 1).

    Returns:
        ``(x_train, y_train, x_test, y_test)``: ``float32`` inputs of shape ``(N, 64)`` with pixel
        intensities scaled from 0..16 to [0, 1], ``int64`` labels in 0..9.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=y
    )
    return x_train, y_train, x_test, y_test


def _mnist1d_version() -> str:
    try:
        return metadata.version("mnist1d")
    except metadata.PackageNotFoundError as err:
        raise ImportError(
            "MNIST-1D streams need the 'mnist1d' package: pip install 'bioplastic[data]'"
        ) from err


def _generate_mnist1d(n_samples: int, test_fraction: float, data_seed: int) -> Arrays:
    # Only make_dataset is used: mnist1d's get_dataset() may download a pickle from GitHub.
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args(as_dict=True)
    args.update(num_samples=n_samples, train_split=1.0 - test_fraction, seed=data_seed)
    args.pop("url", None)
    # make_dataset reseeds the global `random` and `numpy.random` generators; put them back so
    # that building a stream never changes the caller's random state.
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(SimpleNamespace(**args))
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return (
        np.asarray(data["x"], dtype=np.float32),
        np.asarray(data["y"], dtype=np.int64),
        np.asarray(data["x_test"], dtype=np.float32),
        np.asarray(data["y_test"], dtype=np.int64),
    )


def _atomic_save_npz(path: Path, **arrays: np.ndarray) -> None:
    write_atomic_with(path, lambda handle: np.savez(handle, **arrays))


def load_mnist1d_arrays(
    n_samples: int = 4000,
    test_fraction: float = 0.2,
    data_seed: int = 42,
    cache: str | os.PathLike[str] | None = None,
) -> Arrays:
    """MNIST-1D (Greydanus 2020): 1-D signals of length 40 in 10 classes, generated locally.

    Generated with the ``mnist1d`` package's default transformation parameters and cached as
    ``<cache_dir>/mnist1d/mnist1d-<hash>.npz`` keyed by the arguments and the package version
    (written atomically, so concurrent runs never read a half-written file). With
    ``n_samples=5000``, ``test_fraction=0.2`` and ``data_seed=42`` the arguments are those of the
    package's reference dataset.

    Args:
        n_samples: total number of signals, train and test together; rounded down to a multiple
            of 10 (equal counts per class). Generating 4,000 signals takes about 1 s.
        test_fraction: fraction held out for testing, in (0, 1) (not stratified: the package
            shuffles, then cuts).
        data_seed: seed of the generator.
        cache: cache folder; see :func:`cache_dir`.

    Returns:
        ``(x_train, y_train, x_test, y_test)``: ``float32`` signals of shape ``(N, 40)``,
        standardised over the whole dataset (mean 0, std 1), and ``int64`` labels in 0..9.
    """
    key_args = {
        "format": _CACHE_FORMAT,
        "mnist1d": _mnist1d_version(),
        "n_samples": n_samples,
        "test_fraction": test_fraction,
        "data_seed": data_seed,
    }
    digest = hashlib.sha256(json.dumps(key_args, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir(cache) / "mnist1d" / f"mnist1d-{digest}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as f:
                arrays = (f["x_train"], f["y_train"], f["x_test"], f["y_test"])
            logger.debug("MNIST-1D read from cache %s", path)
            return arrays
        except (OSError, ValueError, KeyError) as err:
            logger.warning("ignoring unreadable MNIST-1D cache file %s (%s)", path, err)

    logger.info("generating MNIST-1D (%d samples, seed %d)", n_samples, data_seed)
    x_train, y_train, x_test, y_test = _generate_mnist1d(n_samples, test_fraction, data_seed)
    try:
        _atomic_save_npz(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    except OSError as err:
        logger.warning("could not cache MNIST-1D at %s (%s); continuing uncached", path, err)
    return x_train, y_train, x_test, y_test
