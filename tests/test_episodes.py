"""Tests for bioplastic.data.episodes: seeded N-way K-shot episodes and few-shot splits."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import Dataset, TensorDataset

from bioplastic.data.episodes import EpisodeSampler, digits_fewshot_splits, mnist1d_fewshot_splits


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BIOPLASTIC_CACHE", str(tmp_path / "cache"))


def _identifiable(n_classes=10, per_class=8):
    """x holds each example's index, so an episode's examples can be traced back."""
    y = torch.arange(n_classes).repeat_interleave(per_class)
    y = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(1))]
    x = torch.arange(len(y), dtype=torch.float32)[:, None].repeat(1, 3)
    return x, y


def _check_episode(episode, y, ways, shots, queries):
    support_x, support_y, query_x, query_y = episode
    assert support_x.shape == (ways * shots, 3) and query_x.shape == (ways * queries, 3)
    assert torch.equal(support_y, torch.arange(ways).repeat_interleave(shots))
    assert torch.equal(query_y, torch.arange(ways).repeat_interleave(queries))
    support_ids, query_ids = support_x[:, 0].long(), query_x[:, 0].long()
    ids = torch.cat([support_ids, query_ids])
    assert len(torch.unique(ids)) == len(ids)  # support and query disjoint, no repeats
    for label in range(ways):  # one original class per episode label, a different one each
        original = y[support_ids[support_y == label]]
        assert (original == original[0]).all()
        assert (y[query_ids[query_y == label]] == original[0]).all()
    originals = y[support_ids[::shots]]
    assert len(torch.unique(originals)) == ways


@pytest.mark.parametrize(("ways", "shots", "queries"), [(5, 1, 5), (5, 5, 3), (10, 2, 0)])
def test_episode_shapes_labels_and_disjointness(ways, shots, queries):
    x, y = _identifiable()
    sampler = EpisodeSampler(x, y, ways=ways, shots=shots, queries=queries, seed=0)
    for episode in sampler.episodes(20):
        _check_episode(episode, y, ways, shots, queries)


@settings(max_examples=30, deadline=None)
@given(
    ways=st.integers(1, 6),
    shots=st.integers(1, 4),
    queries=st.integers(0, 4),
    seed=st.integers(0, 2**31),
)
def test_episode_invariants_hold_for_any_configuration(ways, shots, queries, seed):
    x, y = _identifiable(n_classes=6, per_class=8)
    sampler = EpisodeSampler(x, y, ways=ways, shots=shots, queries=queries, seed=seed)
    _check_episode(sampler.sample(), y, ways, shots, queries)


def test_same_seed_same_episodes_other_seed_other_episodes():
    x, y = _identifiable()
    a = EpisodeSampler(x, y, ways=5, shots=2, queries=3, seed=7)
    torch.manual_seed(123)  # global state must not matter
    b = EpisodeSampler(x, y, ways=5, shots=2, queries=3, seed=7)
    c = EpisodeSampler(x, y, ways=5, shots=2, queries=3, seed=8)
    for _ in range(5):
        ea, eb, ec = a.sample(), b.sample(), c.sample()
        assert all(torch.equal(p, q) for p, q in zip(ea, eb, strict=True))
    assert not torch.equal(ea[0], ec[0])


def test_episodes_is_a_fixed_list_and_sampling_leaves_global_rng_alone():
    x, y = _identifiable()
    sampler = EpisodeSampler(x, y, ways=3, shots=1, queries=2, seed=0)
    state = torch.get_rng_state()
    first = sampler.episodes(4)
    sampler.sample()
    second = sampler.episodes(4)
    assert torch.equal(torch.get_rng_state(), state)
    for e1, e2 in zip(first, second, strict=True):
        assert all(torch.equal(p, q) for p, q in zip(e1, e2, strict=True))
    fresh = EpisodeSampler(x, y, ways=3, shots=1, queries=2, seed=0)
    assert all(torch.equal(p, q) for p, q in zip(next(iter(fresh)), first[0], strict=True))
    assert not all(torch.equal(p, q) for p, q in zip(first[0], first[1], strict=True))
    sampler.reset()
    assert all(torch.equal(p, q) for p, q in zip(sampler.sample(), first[0], strict=True))


class _Labelled(Dataset):
    def __init__(self, x, y):
        self.x, self.targets = x, y.tolist()

    def __len__(self):
        return len(self.x)

    def __getitem__(self, index):
        return self.x[index], self.targets[index]


def test_datasets_with_targets_or_given_labels_work_like_tensors():
    x, y = _identifiable()
    reference = EpisodeSampler(x, y, ways=4, shots=2, queries=2, seed=3).sample()
    for sampler in (
        EpisodeSampler(_Labelled(x, y), ways=4, shots=2, queries=2, seed=3),
        EpisodeSampler(TensorDataset(x), y.numpy(), ways=4, shots=2, queries=2, seed=3),
    ):
        assert all(torch.equal(p, q) for p, q in zip(sampler.sample(), reference, strict=True))


def test_unsorted_non_contiguous_labels_are_remapped():
    x, y = _identifiable(n_classes=4)
    y = y * 10 + 3  # labels 3, 13, 23, 33
    sampler = EpisodeSampler(x, y, ways=4, shots=2, queries=1, seed=0)
    assert sampler.classes == (3, 13, 23, 33)
    _check_episode(sampler.sample(), y, 4, 2, 1)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"ways": 11}, "ways"),  # only 10 classes
        ({"ways": 0}, "ways"),
        ({"shots": 0}, "shots"),
        ({"queries": -1}, "queries"),
        ({"shots": 5, "queries": 4}, "shots"),  # 8 examples per class
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(kwargs, name):
    x, y = _identifiable()
    with pytest.raises(ValueError, match=name):
        EpisodeSampler(x, y, **{"ways": 5, "shots": 1, "queries": 1, **kwargs})


def test_bad_labels_raise():
    x, y = _identifiable()
    with pytest.raises(ValueError, match="y has"):
        EpisodeSampler(x, y[:-1], ways=2, shots=1, queries=1)
    with pytest.raises(ValueError, match="integer"):
        EpisodeSampler(x, y.float(), ways=2, shots=1, queries=1)
    with pytest.raises(ValueError, match="y"):
        EpisodeSampler(x, None, ways=2, shots=1, queries=1)
    with pytest.raises(TypeError, match="targets"):
        EpisodeSampler(TensorDataset(x), ways=2, shots=1, queries=1)


def _check_disjoint(train, test, n_total, n_features):
    assert not set(train.classes) & set(test.classes)
    assert set(train.classes) | set(test.classes) == set(range(10))
    for part in (train, test):
        assert set(part.y.unique().tolist()) == set(part.classes)
        assert part.x.shape == (len(part.y), n_features) and part.x.dtype == torch.float32
    assert len(train.y) + len(test.y) == n_total


def test_digits_fewshot_splits_are_class_disjoint():
    train, test = digits_fewshot_splits()
    assert train.classes == (0, 1, 2, 3, 4) and test.classes == (5, 6, 7, 8, 9)
    _check_disjoint(train, test, 1797, 64)
    assert train.x.min() >= 0 and train.x.max() <= 1
    seeded_train, seeded_test = digits_fewshot_splits(seed=1, n_train_classes=7)
    assert len(seeded_train.classes) == 7 and seeded_train.classes != (0, 1, 2, 3, 4, 5, 6)
    _check_disjoint(seeded_train, seeded_test, 1797, 64)
    assert digits_fewshot_splits(seed=1, n_train_classes=7)[0].classes == seeded_train.classes
    support_x, *_ = EpisodeSampler(test.x, test.y, ways=5, shots=5, queries=15).sample()
    assert support_x.shape == (25, 64)


@pytest.mark.parametrize("n_train_classes", [0, 10])
def test_fewshot_splits_reject_bad_class_counts(n_train_classes):
    with pytest.raises(ValueError, match="n_train_classes"):
        digits_fewshot_splits(n_train_classes=n_train_classes)


def test_mnist1d_fewshot_splits_are_class_disjoint(tmp_path):
    pytest.importorskip("mnist1d")
    train, test = mnist1d_fewshot_splits(seed=0, n_samples=500, cache_dir=tmp_path)
    _check_disjoint(train, test, 500, 40)
    assert len(train.classes) == 5
