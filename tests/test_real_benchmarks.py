"""Avalanche's own benchmarks built offline from a dataset root (strategies.avalanche.real).

The roots here hold a handful of images per class, written in each dataset's real on-disk format
(MNIST/Fashion-MNIST IDX files in ``<root>/MNIST/raw``, CIFAR python pickles), so Avalanche's
``SplitMNIST``, ``PermutedMNIST``, ``SplitFMNIST``, ``SplitCIFAR10`` and ``SplitCIFAR100`` read
them through torchvision exactly as they read the real files. Two things differ from a real root:

* torchvision checks CIFAR files (and MNIST ``.gz`` archives) against the md5 of the original
  files, which these small files cannot match. Where that matters the tests PATCH torchvision's
  ``check_integrity`` (``_accept_any_file``) to accept any existing file; the uncompressed MNIST
  IDX files need no patch (torchvision only checks that they exist).
* Every test runs with the network refused (``no_network``): a socket connection or a
  ``urlopen`` raises and is recorded, and the test fails if anything tried.
"""

from __future__ import annotations

import gzip
import os
import pickle
import socket
import struct
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets.cifar as tv_cifar
import torchvision.datasets.utils as tv_utils

from strategies.avalanche.real import REAL_BENCHMARKS, check_dataset_root, real_benchmark

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Refuse (and record) every attempt to open a connection; fail the test if one was made."""
    attempts: list[str] = []

    def refuse(*args, **kwargs):
        attempts.append(repr(args[1:] if args and isinstance(args[0], socket.socket) else args))
        raise AssertionError(f"a test tried to reach the network: {attempts[-1]}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    yield attempts
    assert not attempts, f"network access attempted: {attempts}"


def _accept_any_file(monkeypatch, module=tv_cifar):
    """PATCH: torchvision's md5 check accepts any existing file (ours are not the originals)."""
    monkeypatch.setattr(module, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))


def _idx_bytes(array: np.ndarray) -> bytes:
    """IDX format: 0, 0, type 0x08 (uint8), ndim, big-endian uint32 sizes, then the data."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    return header + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def _write_mnist(root: Path, folder: str, per_class=(3, 1), gz: bool = False) -> None:
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in zip(("train", "t10k"), per_class, strict=True):
        labels = np.repeat(np.arange(10, dtype=np.uint8), n)
        images = rng.integers(0, 256, (labels.size, 28, 28), dtype=np.uint8)
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            name = raw / f"{prefix}-{kind}-ubyte"
            if gz:
                with gzip.open(f"{name}.gz", "wb") as f:
                    f.write(_idx_bytes(array))
            else:
                name.write_bytes(_idx_bytes(array))


def _pickle(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def _cifar_batch(rng, n_classes: int, per_class: int, key: str) -> dict:
    labels = np.repeat(np.arange(n_classes), per_class)
    data = rng.integers(0, 256, (labels.size, 3 * 32 * 32), dtype=np.uint8)
    batch = {"data": data, key: labels.tolist()}
    if key == "fine_labels":
        batch["coarse_labels"] = (labels // 5).tolist()
    return batch


def _write_cifar10(root: Path) -> None:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(1, 6):
        _pickle(folder / f"data_batch_{i}", _cifar_batch(rng, 10, 1, "labels"))
    _pickle(folder / "test_batch", _cifar_batch(rng, 10, 1, "labels"))
    _pickle(folder / "batches.meta", {"label_names": [f"c{i}" for i in range(10)]})


def _write_cifar100(root: Path) -> None:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    _pickle(folder / "train", _cifar_batch(rng, 100, 2, "fine_labels"))
    _pickle(folder / "test", _cifar_batch(rng, 100, 1, "fine_labels"))
    _pickle(folder / "meta", {"fine_label_names": [f"c{i}" for i in range(100)]})


def _check_split(bm, n_exp: int, n_classes: int, shape: tuple[int, ...]) -> None:
    train, test = list(bm.train_stream), list(bm.test_stream)
    assert len(train) == len(test) == n_exp
    per_exp = [set(e.classes_in_this_experience) for e in train]
    assert all(len(c) == n_classes // n_exp for c in per_exp)
    assert set().union(*per_exp) == set(range(n_classes))  # disjoint and complete
    assert sum(len(c) for c in per_exp) == n_classes
    x, y, *_ = train[0].dataset[0]
    assert tuple(x.shape) == shape and int(y) in per_exp[0]


def test_guard_refuses_the_network(no_network):
    with pytest.raises(AssertionError, match="network"):
        urllib.request.urlopen("http://example.invalid/")
    assert len(no_network) == 1
    no_network.clear()  # the guard worked; the fixture's final check must not fail this test


@pytest.mark.parametrize("return_task_id", [False, True])
def test_split_mnist_from_raw_idx_files(tmp_path, return_task_id):
    _write_mnist(tmp_path, "MNIST")  # uncompressed: no integrity patch needed
    bm = real_benchmark("split-mnist", tmp_path, n_experiences=5, return_task_id=return_task_id)
    _check_split(bm, 5, 10, (1, 28, 28))
    labels = [e.task_label for e in bm.train_stream]
    assert labels == (list(range(5)) if return_task_id else [0] * 5)


def test_permuted_mnist_permutes_each_experience(tmp_path):
    _write_mnist(tmp_path, "MNIST")
    bm = real_benchmark("permuted-mnist", tmp_path, n_experiences=3, seed=1)
    train = list(bm.train_stream)
    assert len(train) == 3
    # labels 0..9 in every experience; Avalanche's n_classes counts each experience's 10 apart
    assert bm.n_classes == 30
    assert all(set(e.classes_in_this_experience) == set(range(10)) for e in train)
    first = [e.dataset[0][0] for e in train]
    assert first[0].shape == (1, 28, 28)
    assert not torch.equal(first[0], first[1]) and not torch.equal(first[1], first[2])
    same_pixels = torch.equal(first[0].flatten().sort()[0], first[1].flatten().sort()[0])
    assert same_pixels  # the same image, its pixels moved


def test_split_fmnist_from_gzipped_idx_files(tmp_path, monkeypatch):
    """Only ``.gz`` files: torchvision md5-checks them, then decompresses them offline."""
    _write_mnist(tmp_path, "FashionMNIST", gz=True)
    with pytest.raises(FileNotFoundError, match=r"md5 check: train-images-idx3-ubyte\.gz"):
        real_benchmark("split-fmnist", tmp_path)
    _accept_any_file(monkeypatch, tv_utils)
    bm = real_benchmark("split-fmnist", tmp_path, n_experiences=2)
    _check_split(bm, 2, 10, (1, 28, 28))
    assert (tmp_path / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").is_file()


def test_split_cifar10_from_python_pickles(tmp_path, monkeypatch):
    _write_cifar10(tmp_path)
    _accept_any_file(monkeypatch)
    bm = real_benchmark("split-cifar10", tmp_path, n_experiences=5, seed=0)
    _check_split(bm, 5, 10, (3, 32, 32))
    assert len(bm.train_stream[0].dataset) == 2 * 5  # 5 batches x 1 image x 2 classes


def test_split_cifar100_from_python_pickles(tmp_path, monkeypatch):
    _write_cifar100(tmp_path)
    _accept_any_file(monkeypatch)
    bm = real_benchmark("split-cifar100", tmp_path, n_experiences=10, return_task_id=True)
    _check_split(bm, 10, 100, (3, 32, 32))
    assert [e.task_label for e in bm.test_stream] == list(range(10))


def test_cifar_files_that_fail_md5_are_refused_before_torchvision_downloads(tmp_path, no_network):
    _write_cifar10(tmp_path)
    with pytest.raises(FileNotFoundError, match="md5 check: data_batch_1, .*batches.meta"):
        real_benchmark("split-cifar10", tmp_path)
    assert no_network == []
    # Without the check, torchvision itself would try to download over these files:
    with pytest.raises(AssertionError, match="network"):
        tv_cifar.CIFAR10(str(tmp_path), train=True, download=True)
    assert no_network
    no_network.clear()


@pytest.mark.parametrize("name", sorted(REAL_BENCHMARKS))
def test_missing_files_one_line_error(tmp_path, name):
    with pytest.raises(FileNotFoundError) as err:
        real_benchmark(name, tmp_path)
    message = str(err.value)
    assert "\n" not in message and "never downloads" in message
    first = {"split-cifar10": "data_batch_1", "split-cifar100": "train"}
    assert f"missing {first.get(name, 'train-images-idx3-ubyte')}" in message


def test_partly_missing_cifar100(tmp_path, monkeypatch):
    _write_cifar100(tmp_path)
    (tmp_path / "cifar-100-python" / "meta").unlink()
    _accept_any_file(monkeypatch)
    with pytest.raises(FileNotFoundError, match=r"\(missing meta\)"):
        check_dataset_root("split-cifar100", tmp_path)


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="unknown benchmark"):
        real_benchmark("split-svhn", tmp_path)
    with pytest.raises(ValueError, match="n_experiences"):
        real_benchmark("split-mnist", tmp_path, n_experiences=11)
    with pytest.raises(FileNotFoundError, match="not a folder"):
        real_benchmark("split-mnist", tmp_path / "nowhere")


def test_synthetic_cifar_is_in_cifars_format_and_matches_avalanches_transform():
    from avalanche.benchmarks.classic.ccifar10 import _default_cifar10_eval_transform
    from PIL import Image

    from strategies.avalanche.real import cifar_tensor, synthetic_cifar

    images, labels = synthetic_cifar(n_classes=4, per_class=3, seed=1)
    assert images.dtype == np.uint8 and images.shape == (12, 32, 32, 3)
    assert labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    x = cifar_tensor(images)
    assert x.shape == (12, 3, 32, 32) and x.dtype == torch.float32
    expected = _default_cifar10_eval_transform(Image.fromarray(images[5]))
    torch.testing.assert_close(x[5], expected)
    same_class = (x[3] - x[4]).abs().mean()
    other_class = (x[3] - x[9]).abs().mean()
    assert same_class < other_class  # classes differ by their templates


# ----------------------------------------------------------------- the stream comparison / CLI
def test_the_cli_lists_every_avalanche_stream():
    from bioplastic.cli.stream import AVALANCHE_STREAMS as CLI_NAMES
    from bioplastic.experiments.stream.real import AVALANCHE_STREAMS

    assert (
        CLI_NAMES == AVALANCHE_STREAMS == tuple(f"avalanche-{n}" for n in sorted(REAL_BENCHMARKS))
    )


def test_stream_cli_runs_avalanches_split_mnist_from_a_root(tmp_path, capsys):
    from bioplastic.cli import main

    _write_mnist(tmp_path / "data", "MNIST")
    logdir = tmp_path / "runs"
    code = main(["stream", "--stream", "avalanche-split-mnist", "--root", str(tmp_path / "data"),
                 "--scenario", "class", "--strategies", "bio,naive", "--epochs", "1",
                 "--seeds", "1", "--logdir", str(logdir), "--no-progress"])  # fmt: skip
    assert code == 0
    results = (logdir / "avalanche-split-mnist-class" / "results.json").read_text()
    for name in ("bio", "naive"):
        assert f'"{name}"' in results
    assert "avalanche-split-mnist" in capsys.readouterr().out


def test_stream_cli_refuses_a_root_without_the_files_before_any_work(tmp_path, capsys):
    from bioplastic.cli import main

    (tmp_path / "empty").mkdir()
    empty, logdir = str(tmp_path / "empty"), str(tmp_path / "runs")
    code = main(["stream", "--stream", "avalanche-split-cifar10", "--root", empty,
                 "--scenario", "class", "--logdir", logdir, "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "cifar-10" in err.lower() and "Traceback" not in err
    assert not (tmp_path / "runs" / "avalanche-split-cifar10-class" / "bio").exists()


def test_task_incremental_cifar_is_refused_before_any_work(tmp_path):
    from bioplastic.experiments.stream import run_stream_comparison

    _write_cifar10(tmp_path / "data")
    with pytest.raises(ValueError, match="single-head"):
        run_stream_comparison("avalanche-split-cifar10", "task", strategies=("bio",), seeds=1,
                              logdir=tmp_path / "runs",
                              stream_kwargs={"root": tmp_path / "data"})  # fmt: skip
    assert not (tmp_path / "runs").exists()


def test_cifar_streams_get_a_resnet_dale_typed_only_for_dale_strategies(tmp_path, monkeypatch):
    from bioplastic.experiments.stream.real import avalanche_model, make_avalanche_stream

    _accept_any_file(monkeypatch)
    _write_cifar10(tmp_path)
    stream = make_avalanche_stream("avalanche-split-cifar10", "class", 0, tmp_path)
    assert (stream.n_experiences, stream.n_classes, stream.is_image) == (5, 10, True)
    bio, naive = avalanche_model(stream, "bio"), avalanche_model(stream, "naive")
    assert bio.fc.out_features == 10 and hasattr(bio.conv1, "dale_sign")
    assert not hasattr(naive.conv1, "dale_sign")
