"""Offline continual-learning data: task streams as plain tensors, and local dataset readers.

Nothing in this package downloads anything. See :mod:`bioplastic.data.streams` for the
scenarios and builders, :mod:`bioplastic.data.idx` for the MNIST IDX reader and
:mod:`bioplastic.data.sources` for the bundled digits and the locally generated MNIST-1D.
"""

from bioplastic.data.idx import has_mnist, load_mnist_arrays, locate_mnist_files, read_idx
from bioplastic.data.sources import cache_dir, load_digits_arrays, load_mnist1d_arrays
from bioplastic.data.streams import (
    SCENARIOS,
    STREAM_BUILDERS,
    Experience,
    Stream,
    available_streams,
    make_stream,
    permuted_digits,
    permuted_fashion_mnist,
    permuted_mnist,
    permuted_mnist1d,
    permuted_stream,
    split_digits,
    split_fashion_mnist,
    split_mnist,
    split_mnist1d,
    split_stream,
)

__all__ = [
    "SCENARIOS",
    "STREAM_BUILDERS",
    "Experience",
    "Stream",
    "available_streams",
    "cache_dir",
    "has_mnist",
    "load_digits_arrays",
    "load_mnist1d_arrays",
    "load_mnist_arrays",
    "locate_mnist_files",
    "make_stream",
    "permuted_digits",
    "permuted_fashion_mnist",
    "permuted_mnist",
    "permuted_mnist1d",
    "permuted_stream",
    "read_idx",
    "split_digits",
    "split_fashion_mnist",
    "split_mnist",
    "split_mnist1d",
    "split_stream",
]
