"""Issue 11: the one hand-written interval helper gives the library's t interval."""

from __future__ import annotations

import pytest

from bioplastic.experiments._common import paired_difference


def test_paired_difference_is_scipys_t_interval():
    stats = pytest.importorskip("scipy.stats")
    diffs = [0.031, -0.004, 0.052, 0.017, 0.009]
    low, high = stats.t.interval(0.95, len(diffs) - 1, loc=stats.tmean(diffs),
                                 scale=stats.sem(diffs))  # fmt: skip
    p = paired_difference(diffs)
    assert p["mean_diff"] == pytest.approx(sum(diffs) / 5)
    assert (p["ci95_low"], p["ci95_high"]) == pytest.approx((low, high), rel=1e-12)
    assert paired_difference([0.2])["ci95_low"] is None  # one seed: no interval
