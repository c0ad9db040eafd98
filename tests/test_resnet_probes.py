"""Weight probes at scale: large layers are reduced in slices, never copied whole.

The streamed path of :func:`bioplastic.probes.log_magnitude_stats` (layers above
``EXACT_LIMIT`` entries) is checked against the exact one on a small weight by lowering the
limit and the slice size, so the slicing is exercised many times over.
"""

from __future__ import annotations

import math

import pytest
import torch

import bioplastic.probes.weights as pw
from bioplastic.probes import dale_violations, ei_totals, log_magnitude_stats


def _lognormal_weight(shape, zero_fraction=0.3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    mags = torch.exp(0.3 * torch.randn(shape, generator=gen) ** 2 - 2.0)  # skewed log-magnitudes
    sign = torch.where(torch.rand(shape[1], generator=gen) < 0.2, -1.0, 1.0)
    keep = torch.rand(shape, generator=gen) >= zero_fraction
    view = [1] * len(shape)
    view[1] = -1
    return mags * keep * sign.reshape(view), sign


def test_streamed_log_magnitude_stats_match_the_exact_ones(monkeypatch):
    weight, _ = _lognormal_weight((40, 30, 3, 3))
    exact = log_magnitude_stats(weight)
    monkeypatch.setattr(pw, "EXACT_LIMIT", 1000)
    monkeypatch.setattr(pw, "CHUNK", 997)  # 11 slices, the last one partial
    streamed = log_magnitude_stats(weight)
    assert streamed["n"] == exact["n"] == int((weight != 0).sum())
    for key in ("mean", "std", "skewness", "excess_kurtosis"):
        assert streamed[key] == pytest.approx(exact[key], rel=1e-9, abs=1e-12), key
    assert exact["skewness"] > 0.3  # a skewed sample: the moments are really tested
    assert streamed["ks_normal"] == pytest.approx(exact["ks_normal"], abs=2e-3)


def test_streamed_stats_of_an_empty_or_constant_layer(monkeypatch):
    monkeypatch.setattr(pw, "EXACT_LIMIT", 10)
    empty = log_magnitude_stats(torch.zeros(8, 8))
    assert empty["n"] == 0 and math.isnan(empty["mean"]) and math.isnan(empty["ks_normal"])
    const = log_magnitude_stats(torch.full((8, 8), 0.5))
    assert const["std"] == 0 and math.isnan(const["skewness"]) and math.isnan(const["ks_normal"])


def test_dale_violations_and_ei_totals_in_slices(monkeypatch):
    weight, sign = _lognormal_weight((50, 20, 3, 3), zero_fraction=0.5, seed=1)
    rows = weight.transpose(0, 1).reshape(20, -1).double()
    expected_exc = float(rows[sign > 0].abs().sum())
    expected_inh = float(rows[sign < 0].abs().sum())
    monkeypatch.setattr(pw, "CHUNK", 40)  # 2 postsynaptic rows (of 20 * 9 entries) per slice
    totals = ei_totals(weight, sign)
    assert totals["excitatory"] == pytest.approx(expected_exc, rel=1e-12)
    assert totals["inhibitory"] == pytest.approx(expected_inh, rel=1e-12)
    untyped = ei_totals(weight)
    assert untyped["excitatory"] == pytest.approx(expected_exc, rel=1e-12)
    assert dale_violations(weight, sign) == 0
    broken = weight.clone()
    broken[7, 4, 1, 1] = -broken[7, 4].abs().max() * sign[4]  # unit 4 gets one wrong sign
    broken[9, 2, 0, 0] = 0.0
    assert dale_violations(broken, sign) == 1
    assert dale_violations(broken) == 1  # mixed signs, even without known types
