"""Tests for bioplastic.data: offline task streams and the IDX reader."""

from __future__ import annotations

import gzip
import random
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bioplastic.data import (
    available_streams,
    has_mnist,
    load_digits_arrays,
    locate_mnist_files,
    make_stream,
    permuted_digits,
    permuted_mnist,
    permuted_stream,
    read_idx,
    sources,
    split_digits,
    split_mnist,
    split_mnist1d,
    split_stream,
)

SCENARIOS = ["class", "task", "domain"]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BIOPLASTIC_CACHE", str(tmp_path / "cache"))


def _rows(x: torch.Tensor) -> list[bytes]:
    return sorted(row.tobytes() for row in x.numpy())


# --------------------------------------------------------------------------- split streams


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("n_experiences", [1, 2, 5, 10])
def test_split_digits_experiences_partition_the_classes(scenario, n_experiences):
    stream = split_digits(n_experiences=n_experiences, scenario=scenario, seed=3)
    groups = stream.classes_per_experience
    assert len(stream) == n_experiences
    assert sorted(c for g in groups for c in g) == list(range(10))  # cover all, no overlap
    assert all(len(g) == 10 // n_experiences for g in groups)
    for exp in stream:
        assert exp.x_train.dtype == torch.float32 and exp.y_train.dtype == torch.int64
        assert exp.x_train.shape[1:] == (64,) and stream.input_shape == (64,)
        assert 0.0 <= exp.x_train.min() and exp.x_train.max() <= 1.0
        assert set(exp.y_train.tolist()) == set(exp.labels) == set(exp.y_test.tolist())


def test_split_digits_train_and_test_partition_the_dataset():
    from sklearn.datasets import load_digits

    stream = split_digits(seed=1, test_fraction=0.25)
    digits = load_digits()
    full = sorted((row / 16.0).astype(np.float32).tobytes() for row in digits.data)
    train = [r for e in stream for r in _rows(e.x_train)]
    test = [r for e in stream for r in _rows(e.x_test)]
    # train + test is exactly the dataset (as a multiset of rows), so no sample is in both.
    assert sorted(train + test) == full
    n_test = sum(e.n_test for e in stream)
    assert abs(n_test / len(full) - 0.25) < 0.01


def test_split_digits_test_split_is_stratified():
    stream = split_digits(scenario="class", test_fraction=0.3)
    for exp in stream:
        for c in exp.classes:
            n_tr = int((exp.y_train == c).sum())
            n_te = int((exp.y_test == c).sum())
            assert abs(n_te / (n_tr + n_te) - 0.3) < 0.02


def test_split_is_deterministic_given_seed_and_differs_with_another_seed():
    a, b, c = split_digits(seed=7), split_digits(seed=7), split_digits(seed=8)
    assert a.classes_per_experience == b.classes_per_experience
    for ea, eb in zip(a, b, strict=True):
        assert torch.equal(ea.x_train, eb.x_train) and torch.equal(ea.y_test, eb.y_test)
    assert a.classes_per_experience != c.classes_per_experience
    assert not torch.equal(a[0].x_train[:5], c[0].x_train[:5])


def test_class_order_overrides_the_seed():
    order = [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
    stream = split_digits(class_order=order, seed=5)
    assert stream.classes_per_experience == [[8, 9], [6, 7], [4, 5], [2, 3], [0, 1]]


def test_task_incremental_labels_are_positions_in_the_experience_classes():
    by_class = split_digits(scenario="class", seed=2)
    by_task = split_digits(scenario="task", seed=2)
    assert by_task.n_classes == 2 and by_class.n_classes == 10
    assert by_task.n_task_labels == 5 and by_class.n_task_labels == 1
    for ec, et in zip(by_class, by_task, strict=True):
        assert et.task_label == et.task_id and ec.task_label == 0
        assert torch.equal(ec.x_train, et.x_train)
        assert set(et.y_train.tolist()) == {0, 1}
        expected = torch.tensor([et.classes.index(int(y)) for y in ec.y_train])
        assert torch.equal(et.y_train, expected)


def test_domain_incremental_remaps_labels_without_task_labels():
    stream = split_digits(scenario="domain")
    assert [e.task_label for e in stream] == [0] * 5
    assert [e.task_id for e in stream] == list(range(5))
    assert all(set(e.y_test.tolist()) == {0, 1} for e in stream)


def test_max_per_experience_takes_a_subset():
    full = split_digits(seed=4)
    small = split_digits(seed=4, max_train_per_experience=20, max_test_per_experience=7)
    assert small.classes_per_experience == full.classes_per_experience
    for ef, es in zip(full, small, strict=True):
        assert es.n_train == 20 and es.n_test == 7
        assert set(_rows(es.x_train)) <= set(_rows(ef.x_train))


@settings(max_examples=25, deadline=None)
@given(
    n_classes=st.integers(1, 12),
    per_class=st.integers(1, 4),
    seed=st.integers(0, 2**32 - 1),
    scenario=st.sampled_from(SCENARIOS),
    data=st.data(),
)
def test_split_stream_partitions_any_dataset(n_classes, per_class, seed, scenario, data):
    divisors = [d for d in range(1, n_classes + 1) if n_classes % d == 0]
    n_experiences = data.draw(st.sampled_from(divisors))
    y = torch.arange(n_classes).repeat_interleave(per_class) * 3  # non-contiguous labels
    x = torch.arange(len(y), dtype=torch.float32)[:, None]  # each row identifies its sample
    stream = split_stream(
        "toy", x, y, x, y, n_experiences=n_experiences, scenario=scenario, seed=seed
    )
    groups = stream.classes_per_experience
    assert sorted(c for g in groups for c in g) == sorted(set(y.tolist()))
    seen = torch.cat([e.x_train[:, 0] for e in stream]).sort().values
    assert torch.equal(seen, x[:, 0])  # every sample lands in exactly one experience
    for exp in stream:
        assert 0 <= exp.y_train.min() and exp.y_train.max() < stream.n_classes


# --------------------------------------------------------------------------- permuted streams


def test_permuted_digits_applies_one_fixed_permutation_per_experience():
    x_train, y_train, *_ = load_digits_arrays(seed=0)
    stream = permuted_digits(n_experiences=4, seed=0)
    perms = [e.input_permutation for e in stream]
    assert torch.equal(perms[0], torch.arange(64))
    assert torch.equal(stream[0].x_train, torch.from_numpy(x_train))
    for exp, perm in zip(stream, perms, strict=True):
        assert torch.equal(perm.sort().values, torch.arange(64))  # a permutation
        assert torch.equal(exp.x_train, torch.from_numpy(x_train)[:, perm])
        assert torch.equal(exp.y_train, torch.from_numpy(y_train))
        # same multiset of pixel values per sample
        assert torch.equal(exp.x_train.sort(dim=1).values, stream[0].x_train.sort(dim=1).values)
        assert exp.classes == list(range(10))
    for i in range(4):
        for j in range(i + 1, 4):
            assert not torch.equal(perms[i], perms[j])


def test_permuted_is_deterministic_and_seed_dependent():
    a, b, c = (permuted_digits(n_experiences=3, seed=s) for s in (1, 1, 2))
    assert all(torch.equal(ea.x_test, eb.x_test) for ea, eb in zip(a, b, strict=True))
    assert not torch.equal(a[1].input_permutation, c[1].input_permutation)


def test_permuted_scenarios_set_targets_and_task_labels():
    domain = permuted_digits(n_experiences=3)
    task = permuted_digits(n_experiences=3, scenario="task")
    klass = permuted_digits(n_experiences=3, scenario="class")
    assert domain.n_classes == task.n_classes == 10 and klass.n_classes == 30
    assert [e.task_label for e in domain] == [0, 0, 0]
    assert [e.task_label for e in task] == [0, 1, 2]
    for t, (ed, ek) in enumerate(zip(domain, klass, strict=True)):
        assert torch.equal(ek.y_train, ed.y_train + 10 * t)
        assert ek.labels == list(range(10 * t, 10 * t + 10))


def test_permuted_stream_flattens_image_inputs():
    x = torch.rand(12, 1, 3, 3)
    y = torch.arange(12) % 3
    stream = permuted_stream("toy", x, y, x, y, n_experiences=2, seed=0)
    assert stream.input_shape == (9,)
    assert torch.equal(stream[1].x_train, x.reshape(12, 9)[:, stream[1].input_permutation])


# --------------------------------------------------------------------------- MNIST-1D


def test_split_mnist1d_shapes_and_cache(tmp_path, monkeypatch):
    state = np.random.get_state()
    py_state = random.getstate()
    stream = split_mnist1d(n_samples=300, scenario="task")
    assert stream.input_shape == (40,) and stream.n_classes == 2
    assert sorted(c for g in stream.classes_per_experience for c in g) == list(range(10))
    assert sum(e.n_train + e.n_test for e in stream) == 300
    assert sum(e.n_test for e in stream) == 60
    for exp in stream:
        assert exp.x_train.shape == (exp.n_train, 40) and exp.x_train.dtype == torch.float32
    # generation must not reseed the caller's global generators
    assert np.array_equal(np.random.get_state()[1], state[1]) and random.getstate() == py_state

    cached = list((tmp_path / "cache" / "mnist1d").glob("mnist1d-*.npz"))
    assert len(cached) == 1
    assert not list((tmp_path / "cache" / "mnist1d").glob("*.tmp"))

    def fail(*args, **kwargs):
        raise AssertionError("regenerated despite a cache hit")

    monkeypatch.setattr(sources, "_generate_mnist1d", fail)
    again = split_mnist1d(n_samples=300, scenario="task")
    assert all(torch.equal(a.x_train, b.x_train) for a, b in zip(stream, again, strict=True))


def test_mnist1d_cache_is_keyed_by_arguments(tmp_path):
    a = sources.load_mnist1d_arrays(n_samples=200, data_seed=1)
    b = sources.load_mnist1d_arrays(n_samples=200, data_seed=2)
    assert not np.array_equal(a[0], b[0])
    assert len(list((tmp_path / "cache" / "mnist1d").glob("*.npz"))) == 2


def test_unreadable_mnist1d_cache_is_regenerated(tmp_path):
    a = sources.load_mnist1d_arrays(n_samples=200)
    (path,) = (tmp_path / "cache" / "mnist1d").glob("*.npz")
    path.write_bytes(b"not a zip file")
    b = sources.load_mnist1d_arrays(n_samples=200)
    assert np.array_equal(a[0], b[0])


# --------------------------------------------------------------------------- IDX files


def _idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    header = struct.pack(">BBBB", 0, 0, type_code, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def _write_mnist(folder: Path, n_train: int = 30, n_test: int = 20, gz: bool = False) -> dict:
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) % 10).astype(np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        data = _idx_bytes(array)
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return arrays


@pytest.mark.parametrize(
    ("array", "code"),
    [
        (np.arange(24, dtype=np.uint8).reshape(2, 3, 4), 0x08),
        (np.array([-3, 0, 7], dtype=np.int32), 0x0C),
        (np.array([[1.5, -2.25]], dtype=np.float32), 0x0D),
    ],
)
def test_read_idx_round_trips_plain_and_gzip(tmp_path, array, code):
    plain, packed = tmp_path / "a-idx", tmp_path / "a-idx.gz"
    plain.write_bytes(_idx_bytes(array, code))
    packed.write_bytes(gzip.compress(_idx_bytes(array, code)))
    for path in (plain, packed):
        out = read_idx(path)
        assert out.shape == array.shape and out.dtype == array.dtype
        assert np.array_equal(out, array)


def test_read_idx_rejects_bad_magic_naming_the_file(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(b"\x01\x02\x08\x01" + struct.pack(">I", 2) + b"\x00\x00")
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.*magic"):
        read_idx(path)
    path.write_bytes(b"\x00\x00\x42\x01" + struct.pack(">I", 2) + b"\x00\x00")
    with pytest.raises(ValueError, match="element type 0x42"):
        read_idx(path)


def test_read_idx_rejects_length_mismatch_and_missing_file(tmp_path):
    path = tmp_path / "short-idx1-ubyte"
    path.write_bytes(_idx_bytes(np.zeros(5, np.uint8))[:-1])
    with pytest.raises(ValueError, match=r"short-idx1-ubyte.*\(5,\).*4 data bytes"):
        read_idx(path)
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        read_idx(tmp_path / "nothing-here")


@pytest.mark.parametrize(
    ("layout", "gz", "fashion"),
    [
        ("", False, False),
        ("", True, False),
        ("MNIST/raw", False, False),
        ("FashionMNIST/raw", True, True),
    ],
)
def test_split_mnist_reads_local_idx_layouts(tmp_path, layout, gz, fashion):
    root = tmp_path / "data"
    arrays = _write_mnist(root / layout, gz=gz)
    assert has_mnist(root, fashion=fashion)
    stream = split_mnist(root, fashion=fashion, scenario="class", seed=0)
    assert stream.name == ("split-fashion-mnist" if fashion else "split-mnist")
    assert stream.input_shape == (784,)
    assert sum(e.n_train for e in stream) == 30 and sum(e.n_test for e in stream) == 20
    expected = arrays["train-images-idx3-ubyte"].reshape(30, -1) / np.float32(255)
    got = sorted(r for e in stream for r in _rows(e.x_train))
    assert got == sorted(row.tobytes() for row in expected.astype(np.float32))
    images = split_mnist(root, fashion=fashion, flatten=False, n_experiences=2)
    assert images.input_shape == (1, 28, 28)


def test_permuted_mnist_from_local_files(tmp_path):
    _write_mnist(tmp_path)
    stream = make_stream(
        "permuted-mnist", root=tmp_path, n_experiences=2, max_train_per_experience=10
    )
    assert stream.input_shape == (784,) and [e.n_train for e in stream] == [10, 10]
    assert torch.equal(stream[1].x_test, stream[0].x_test[:, stream[1].input_permutation])


def test_missing_mnist_says_where_to_put_the_files(tmp_path):
    _write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    assert not has_mnist(tmp_path)
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte.*never downloads"):
        locate_mnist_files(tmp_path)
    with pytest.raises(FileNotFoundError):
        permuted_mnist(tmp_path)


def test_mnist_with_bad_magic_names_the_file(tmp_path):
    _write_mnist(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"\xff" * 16)
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte"):
        split_mnist(tmp_path)


def test_mnist_images_with_wrong_rank_are_rejected(tmp_path):
    _write_mnist(tmp_path)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(_idx_bytes(np.zeros(30, np.uint8)))
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.*3-D"):
        split_mnist(tmp_path)


# --------------------------------------------------------------------------- registry and arguments


def test_registry_names_and_unknown_name():
    required = {"split-digits", "permuted-digits", "split-mnist1d", "split-mnist"}
    required |= {"split-fashion-mnist", "permuted-mnist"}
    assert required <= set(available_streams())
    assert make_stream("Split_Digits", n_experiences=2).classes_per_experience == (
        split_digits(n_experiences=2).classes_per_experience
    )
    with pytest.raises(ValueError, match="unknown stream 'split-cifar'.*split-digits"):
        make_stream("split-cifar")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_experiences": 3}, r"n_experiences.*\[1, 2, 5, 10\].*got 3"),
        ({"n_experiences": 0}, "n_experiences"),
        ({"n_experiences": True}, "n_experiences"),
        ({"n_experiences": 2.5}, "n_experiences"),
        ({"test_fraction": 0.0}, r"test_fraction.*\(0(\.0)?, 1(\.0)?\)"),
        ({"test_fraction": 1.0}, "test_fraction"),
        ({"test_fraction": float("nan")}, "test_fraction"),
        ({"scenario": "incremental"}, "scenario must be one of 'class', 'task', 'domain'"),
        ({"seed": -1}, "seed"),
        ({"max_train_per_experience": 0}, "max_train_per_experience"),
        ({"class_order": [0, 1, 2]}, "class_order must be a permutation"),
    ],
)
def test_split_digits_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_stream("split-digits", **kwargs)


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("permuted-digits", {"n_experiences": 0}, "n_experiences must be an integer >= 1"),
        ("permuted-digits", {"scenario": "x"}, "scenario"),
        ("split-mnist1d", {"n_samples": 10}, "n_samples must be an integer >= 100"),
        ("split-mnist1d", {"test_fraction": 2}, "test_fraction"),
        ("split-mnist1d", {"n_experiences": 4}, "n_experiences"),
    ],
)
def test_other_builders_reject_bad_arguments(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_stream(name, **kwargs)


def test_split_stream_rejects_unseen_test_labels():
    x = torch.zeros(4, 2)
    with pytest.raises(ValueError, match=r"test labels \[7\]"):
        split_stream(
            "toy", x, torch.tensor([0, 1, 0, 1]), x, torch.tensor([0, 1, 7, 1]), n_experiences=1
        )
