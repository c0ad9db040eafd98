"""Reading the IDX files that MNIST and Fashion-MNIST are distributed in, and finding them on disk.

The IDX format (LeCun et al., http://yann.lecun.com/exdb/mnist/) is a big-endian header followed by
raw array data:

- bytes 0-1: zero;
- byte 2: element type (``0x08`` uint8, ``0x09`` int8, ``0x0B`` int16, ``0x0C`` int32,
  ``0x0D`` float32, ``0x0E`` float64);
- byte 3: number of dimensions ``n``;
- then ``n`` big-endian uint32 sizes, then ``prod(sizes)`` elements, row-major.

Nothing here downloads anything: the files must already be on disk.
"""

from __future__ import annotations

import gzip
import logging
import os
from pathlib import Path

import numpy as np

__all__ = [
    "IDX_DTYPES",
    "MNIST_FILES",
    "has_mnist",
    "load_mnist_arrays",
    "locate_mnist_files",
    "read_idx",
]

logger = logging.getLogger(__name__)

#: IDX element-type code -> big-endian numpy dtype.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

#: Split key -> the original file name (without ``.gz``), identical for MNIST and Fashion-MNIST.
MNIST_FILES: dict[str, str] = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one IDX file (plain or gzip-compressed) into a numpy array.

    Args:
        path: the file. Gzip compression is detected from the file content, not its name.

    Returns:
        An array with the file's shape and native-endian dtype (``uint8`` for MNIST files).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not valid IDX (bad magic number, unknown element type, or a
            data length that does not match the header); the message names the file.

    Example:
        >>> images = read_idx("mnist/train-images-idx3-ubyte.gz")  # doctest: +SKIP
        >>> images.shape, images.dtype  # doctest: +SKIP
        ((60000, 28, 28), dtype('uint8'))
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {path}")
    raw = path.read_bytes()
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise ValueError(f"{path}: corrupt gzip data ({err})") from err

    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(
            f"{path}: not an IDX file: expected a magic number starting with two zero bytes "
            f"(e.g. 0x00000803 for images, 0x00000801 for labels), got 0x{raw[:4].hex():0<8}"
        )
    type_code, ndim = raw[2], raw[3]
    if type_code not in IDX_DTYPES:
        known = ", ".join(f"0x{code:02X}" for code in IDX_DTYPES)
        raise ValueError(
            f"{path}: unknown IDX element type 0x{type_code:02X} in magic number "
            f"0x{raw[:4].hex()}; expected one of {known}"
        )
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise ValueError(f"{path}: truncated IDX header: {ndim} dimensions declared")
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[type_code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = len(raw) - header_len
    if actual != expected:
        raise ValueError(
            f"{path}: IDX header declares shape {shape} of {dtype.name} ({expected} data bytes) "
            f"but the file holds {actual} data bytes"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header_len).reshape(shape)
    return data.astype(dtype.newbyteorder("="), copy=True)


def _candidate_dirs(root: Path, fashion: bool) -> list[Path]:
    """Folders that may hold the IDX files, most specific first (torchvision layout included)."""
    sub = "FashionMNIST" if fashion else "MNIST"
    return [root / sub / "raw", root / "raw", root, root / sub]


def _candidate_names(stem: str) -> list[str]:
    # Some mirrors spell the files with a dot before "idx" (e.g. train-images.idx3-ubyte).
    dotted = stem.replace("-idx", ".idx")
    return [stem, stem + ".gz", dotted, dotted + ".gz"]


def locate_mnist_files(root: str | os.PathLike[str], fashion: bool = False) -> dict[str, Path]:
    """Find the four MNIST (or Fashion-MNIST) IDX files under ``root``.

    Looked for, in order, in ``root/MNIST/raw`` (``root/FashionMNIST/raw`` when ``fashion``; this
    is torchvision's layout), ``root/raw``, ``root`` and ``root/MNIST``; each name plain or ``.gz``.

    Args:
        root: the data folder.
        fashion: look for Fashion-MNIST's torchvision folder instead of MNIST's. Both datasets use
            the same file names, so a flat ``root`` is read as whichever of the two it holds.

    Returns:
        Mapping from the keys of :data:`MNIST_FILES` to existing paths.

    Raises:
        FileNotFoundError: a file is missing; the message lists the places searched and where
            to put the files. Nothing is downloaded.
    """
    root = Path(root).expanduser()
    dirs = _candidate_dirs(root, fashion)
    found: dict[str, Path] = {}
    missing: list[str] = []
    for key, stem in MNIST_FILES.items():
        hit = next(
            (d / n for d in dirs for n in _candidate_names(stem) if (d / n).is_file()),
            None,
        )
        if hit is None:
            missing.append(stem)
        else:
            found[key] = hit
    if missing:
        dataset = "Fashion-MNIST" if fashion else "MNIST"
        searched = ", ".join(str(d) for d in dirs)
        raise FileNotFoundError(
            f"{dataset} IDX file(s) not found: {', '.join(missing)} (plain or .gz). Searched: "
            f"{searched}. bioplastic never downloads data: copy the four original files "
            f"({', '.join(MNIST_FILES.values())}) into {root} "
            f"or {root / ('FashionMNIST' if fashion else 'MNIST') / 'raw'}."
        )
    return found


def has_mnist(root: str | os.PathLike[str], fashion: bool = False) -> bool:
    """Whether :func:`locate_mnist_files` would find all four files under ``root``."""
    try:
        locate_mnist_files(root, fashion=fashion)
    except FileNotFoundError:
        return False
    return True


def load_mnist_arrays(
    root: str | os.PathLike[str], fashion: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Load MNIST or Fashion-MNIST from local IDX files.

    Args:
        root: the data folder (see :func:`locate_mnist_files` for the layouts accepted).
        fashion: load Fashion-MNIST instead of MNIST.

    Returns:
        ``(x_train, y_train, x_test, y_test)``: images ``uint8`` of shape ``(N, H, W)`` with
        values 0..255, labels ``int64`` in 0..9.

    Raises:
        FileNotFoundError: a file is missing.
        ValueError: a file is not valid IDX, has the wrong element type or rank, or images and
            labels disagree in count.
    """
    paths = locate_mnist_files(root, fashion=fashion)
    arrays = {key: read_idx(path) for key, path in paths.items()}
    for key, ndim in (
        ("train_images", 3),
        ("test_images", 3),
        ("train_labels", 1),
        ("test_labels", 1),
    ):
        arr = arrays[key]
        if arr.dtype != np.uint8 or arr.ndim != ndim:
            raise ValueError(
                f"{paths[key]}: expected {ndim}-D unsigned bytes (IDX type 0x08), "
                f"got {arr.ndim}-D {arr.dtype}"
            )
    for split in ("train", "test"):
        n_img, n_lab = len(arrays[f"{split}_images"]), len(arrays[f"{split}_labels"])
        if n_img != n_lab:
            raise ValueError(
                f"{paths[f'{split}_images']} holds {n_img} images but "
                f"{paths[f'{split}_labels']} holds {n_lab} labels"
            )
        labels = arrays[f"{split}_labels"]
        if labels.size and labels.max() > 9:
            raise ValueError(
                f"{paths[f'{split}_labels']}: labels must be 0..9, found {labels.max()}"
            )
    logger.debug("loaded %s from %s", "Fashion-MNIST" if fashion else "MNIST", root)
    return (
        arrays["train_images"],
        arrays["train_labels"].astype(np.int64),
        arrays["test_images"],
        arrays["test_labels"].astype(np.int64),
    )
