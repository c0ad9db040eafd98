"""Tests for bioplastic.probes: known values on constructed inputs, invariants, validation."""

import math

import pytest
import torch
from conftest import make_mlp
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from bioplastic import probes

FAST = settings(max_examples=25, deadline=None)


# ------------------------------------------------------------------------------ weight probes


def test_synaptic_layers_finds_linear_and_conv_only():
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Conv1d(2, 2, 1), nn.BatchNorm1d(2), nn.Linear(2, 2)
    )
    assert [n for n, _ in probes.synaptic_layers(model)] == ["0", "2", "4"]
    assert probes.synaptic_layers(nn.Linear(2, 2))[0][0] == ""


def test_connectivity_of_half_zero_matrix():
    w = torch.ones(4, 6)
    w[:2] = 0
    assert probes.connectivity(w) == 0.5
    model = make_mlp(6, 5, 3)
    with torch.no_grad():
        model[2].weight[:, :] = 0
    assert probes.connectivity_per_layer(model) == {"0": 1.0, "2": 0.0}


def test_dale_violations_counts_mixed_columns_exactly():
    w = torch.tensor(
        [
            [1.0, -1.0, 2.0, 0.0, -3.0],
            [2.0, -1.0, -2.0, 0.0, 3.0],
            [0.0, -4.0, 1.0, 0.0, 0.0],
        ]
    )
    # columns 2 and 4 mix signs; column 3 is absent everywhere; zeros do not count as signs
    assert probes.dale_violations(w) == 2
    # with recorded types, column 0 (positive) typed inhibitory also violates
    sign = torch.tensor([-1.0, -1.0, 1.0, 1.0, 1.0])
    assert probes.dale_violations(w, sign) == 3
    layer = nn.Linear(5, 3)
    with torch.no_grad():
        layer.weight.copy_(w)
    layer.register_buffer("dale_sign", sign)
    assert probes.dale_violations(layer) == 3
    assert probes.dale_violations(layer, torch.tensor([1.0, -1.0, 1.0, 1.0, 1.0])) == 2


def test_dale_violations_on_conv_uses_input_channels():
    conv = nn.Conv2d(3, 4, 2)
    with torch.no_grad():
        conv.weight.abs_()
        conv.weight[0, 1, 0, 0] = -1.0  # input channel 1 becomes mixed
    assert probes.dale_violations(conv) == 1


def test_sign_flips_exact_and_ignores_absent():
    ref = torch.tensor([1.0, -1.0, 2.0, 0.0, 3.0, -2.0])
    w = torch.tensor([-1.0, -2.0, 0.0, -5.0, -3.0, 2.0])
    # flips at 0, 4, 5; index 2 eliminated and index 3 grown do not count
    assert probes.sign_flips(w, ref) == 3


def test_log_magnitude_stats_lognormal_vs_uniform():
    g = torch.Generator().manual_seed(1)
    lognormal = torch.exp(0.7 * torch.randn(20000, generator=g) - 2.0)
    signs = torch.where(torch.rand(20000, generator=g) < 0.5, -1.0, 1.0)
    w = (lognormal * signs).reshape(100, 200)
    w[:10] = 0  # absent synapses are ignored
    s = probes.log_magnitude_stats(w)
    assert s["n"] == 18000
    assert s["mean"] == pytest.approx(-2.0, abs=0.03)
    assert s["std"] == pytest.approx(0.7, abs=0.02)
    assert abs(s["skewness"]) < 0.1
    assert abs(s["excess_kurtosis"]) < 0.2
    assert s["ks_normal"] < 0.02
    # |w| uniform: ln|w| = -Exp(1), skewness -2, excess kurtosis 6
    u = probes.log_magnitude_stats(torch.rand(100, 200, generator=g) + 1e-12)
    assert u["skewness"] < -1.5
    assert u["excess_kurtosis"] > 4.0
    assert u["ks_normal"] > 0.05


def test_log_magnitude_stats_match_textbook_definitions():
    np = pytest.importorskip("numpy")
    x = torch.rand(7, 9) + 0.01
    s = probes.log_magnitude_stats(-x)
    logs = np.log(x.double().flatten().numpy())
    d = logs - logs.mean()
    m2, m3, m4 = (d**2).mean(), (d**3).mean(), (d**4).mean()
    assert s["skewness"] == pytest.approx(m3 / m2**1.5, rel=1e-9)
    assert s["excess_kurtosis"] == pytest.approx(m4 / m2**2 - 3, rel=1e-9)
    z = np.sort(d / np.sqrt(m2))
    cdf = np.array([0.5 * (1 + math.erf(v / math.sqrt(2))) for v in z])
    n = len(z)
    ks = max((np.arange(1, n + 1) / n - cdf).max(), (cdf - np.arange(n) / n).max())
    assert s["ks_normal"] == pytest.approx(ks, rel=1e-9)


def test_log_magnitude_stats_all_absent_is_nan():
    s = probes.log_magnitude_stats(torch.zeros(2, 3))
    assert s["n"] == 0 and math.isnan(s["mean"]) and math.isnan(s["ks_normal"])


def test_ei_totals_typed_and_untyped():
    w = torch.tensor([[1.0, -2.0, 3.0], [0.5, -1.0, 0.0]])
    t = probes.ei_totals(w)
    assert t == {"excitatory": 4.5, "inhibitory": 3.0, "ei_ratio": 1.5}
    layer = nn.Linear(3, 2)
    with torch.no_grad():
        layer.weight.copy_(w)
    layer.register_buffer("dale_sign", torch.tensor([1.0, -1.0, -1.0]))
    t = probes.ei_totals(layer)
    assert t["excitatory"] == 1.5 and t["inhibitory"] == 6.0 and t["ei_ratio"] == 0.25
    assert probes.ei_totals(torch.ones(2, 2))["ei_ratio"] == math.inf


def test_weight_report_per_layer():
    model = make_mlp(6, 5, 3)
    ref = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model[0].weight[0, 0] = -ref["0.weight"][0, 0]
        model[0].weight[1, :] = 0
    report = probes.weight_report(model, ref)
    assert set(report) == {"0", "2"}
    assert report["0"]["sign_flips"] == 1 and report["2"]["sign_flips"] == 0
    assert report["0"]["n_present"] == 24 and report["0"]["connectivity"] == 24 / 30
    assert {"dale_violations", "log_mag_skewness", "log_mag_ks_normal", "ei_ratio"} <= set(
        report["0"]
    )
    assert "sign_flips" not in probes.weight_report(model)["0"]


# ----------------------------------------------------------------------------- activity probes


def test_population_sparseness_known_values():
    assert probes.population_sparseness(torch.eye(5)) == pytest.approx(1.0)
    assert probes.population_sparseness(torch.full((3, 5), 2.0)) == pytest.approx(0.0)
    acts = torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    per_sample = probes.population_sparseness(acts, reduction="none")
    assert per_sample[0] == pytest.approx(1.0) and per_sample[2] == pytest.approx(0.0)
    assert math.isnan(per_sample[1])
    assert probes.population_sparseness(acts) == pytest.approx(0.5)


def test_lifetime_sparseness_known_values():
    acts = torch.zeros(4, 3)
    acts[2, 0] = 3.0  # unit 0 responds to one sample
    acts[:, 1] = 1.0  # unit 1 responds to all equally; unit 2 silent
    per_unit = probes.lifetime_sparseness(acts, reduction="none")
    assert per_unit[0] == pytest.approx(1.0) and per_unit[1] == pytest.approx(0.0)
    assert math.isnan(per_unit[2])
    assert probes.lifetime_sparseness(acts) == pytest.approx(0.5)
    assert probes.silent_fraction(acts) == pytest.approx(1 / 3)


@FAST
@given(
    st.integers(1, 6).flatmap(
        lambda n: st.lists(
            st.lists(st.floats(0, 1e3, allow_subnormal=False), min_size=n, max_size=n),
            min_size=2,
            max_size=6,
        )
    ),
)
def test_sparseness_in_unit_interval(rows):
    acts = torch.tensor(rows, dtype=torch.float64)
    if acts.shape[1] < 2:
        acts = torch.cat([acts, acts], dim=1)
    for measure in (probes.population_sparseness, probes.lifetime_sparseness):
        values = measure(acts, reduction="none")
        defined = ~torch.isnan(values)
        assert bool(((values[defined] >= 0) & (values[defined] <= 1)).all())
        # scale-free: multiplying all rates by a constant changes nothing
        scaled = measure(acts * 7.5, reduction="none")
        assert torch.allclose(scaled, values, equal_nan=True)
    # silent samples and only silent samples are undefined
    silent = (acts == 0).all(dim=1)
    assert torch.equal(torch.isnan(probes.population_sparseness(acts, reduction="none")), silent)


def test_participation_ratio_isotropic_and_rank_one():
    n = 8
    iso = torch.randn(4000, n)
    assert probes.participation_ratio(iso) == pytest.approx(n, rel=0.05)
    line = torch.randn(500, 1) * torch.randn(1, n)
    assert probes.participation_ratio(line) == pytest.approx(1.0, rel=1e-6)
    assert math.isnan(probes.participation_ratio(torch.ones(3, n)))


def test_activity_distribution_stats():
    acts = torch.tensor([[0.0, 1.0], [0.0, 3.0]])
    s = probes.activity_distribution_stats(acts)
    # entries 0, 0, 1, 3: central moments m2 = 1.5, m3 = 1.5, m4 = 4.5
    assert s["fraction_zero"] == 0.5 and s["mean"] == 1.0
    assert s["std"] == pytest.approx(math.sqrt(1.5))
    assert s["skewness"] == pytest.approx(1.5 / 1.5**1.5)
    assert s["excess_kurtosis"] == pytest.approx(4.5 / 1.5**2 - 3)


def test_ei_input_balance_linear():
    layer = nn.Linear(3, 2, bias=True)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 2.0, -1.0], [0.5, 0.0, -2.0]]))
    layer.register_buffer("dale_sign", torch.tensor([1.0, 1.0, -1.0]))
    x = torch.tensor([[1.0, 1.0, 1.0], [2.0, 0.0, 3.0]])
    out = probes.ei_input_balance(layer, x)
    # unit 0: E = [3, 2], I = [1, 3]; unit 1: E = [0.5, 1], I = [2, 6]
    torch.testing.assert_close(out["excitatory"], torch.tensor([2.5, 0.75], dtype=torch.float64))
    torch.testing.assert_close(out["inhibitory"], torch.tensor([2.0, 4.0], dtype=torch.float64))
    torch.testing.assert_close(out["ratio"], torch.tensor([1.25, 0.1875], dtype=torch.float64))
    torch.testing.assert_close(out["correlation"], torch.tensor([-1.0, 1.0], dtype=torch.float64))


def test_unit_activity_stats_equal_the_single_probes():
    from bioplastic.probes.activity import unit_activity_stats

    acts = torch.rand(64, 20) * (torch.rand(64, 20) > 0.5)
    acts[:, 3] = 0  # a silent unit
    s = unit_activity_stats(acts)
    assert s == {
        "population_sparseness": probes.population_sparseness(acts),
        "lifetime_sparseness": probes.lifetime_sparseness(acts),
        "silent_fraction": probes.silent_fraction(acts),
        "participation_ratio": probes.participation_ratio(acts),
    }
    assert s["silent_fraction"] == pytest.approx(1 / 20)
    signed = unit_activity_stats(acts - 0.5)  # sparseness needs rates >= 0: left out
    assert set(signed) == {"silent_fraction", "participation_ratio"}


def test_participation_ratio_float32_agrees_with_float64():
    acts = torch.rand(300, 40) @ torch.rand(40, 120) * 1e6  # large rates: no float32 overflow
    pr32, pr64 = probes.participation_ratio(acts), probes.participation_ratio(acts.double())
    assert pr32 == pytest.approx(pr64, rel=1e-5) and 1.0 <= pr64 <= 40.0


def test_ei_input_balance_typed_linear_matches_float64_currents():
    torch.manual_seed(0)
    layer = nn.Linear(50, 7)
    sign = torch.where(torch.rand(50) < 0.8, 1.0, -1.0)
    with torch.no_grad():
        layer.weight.copy_(layer.weight.abs() * sign)
    layer.register_buffer("dale_sign", sign)
    x = torch.rand(40, 50)
    out = probes.ei_input_balance(layer, x)
    w, xd = layer.weight.detach().double(), x.double()
    exc = xd[:, sign > 0] @ w[:, sign > 0].T
    inh = -(xd[:, sign < 0] @ w[:, sign < 0].T)
    torch.testing.assert_close(out["excitatory"], exc.mean(0), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out["inhibitory"], inh.mean(0), rtol=1e-5, atol=1e-6)
    pairs = zip(exc.T, inh.T, strict=True)
    corr = torch.stack([torch.corrcoef(torch.stack([e, i]))[0, 1] for e, i in pairs])
    torch.testing.assert_close(out["correlation"], corr, rtol=1e-4, atol=1e-4)


def test_ei_input_balance_conv_shapes():
    conv = nn.Conv2d(3, 4, 3)
    out = probes.ei_input_balance(conv, torch.rand(2, 3, 6, 6))
    assert all(v.shape == (4,) for v in out.values())
    assert bool((out["excitatory"] >= 0).all() and (out["inhibitory"] >= 0).all())
    with pytest.raises(ValueError, match="inputs"):
        probes.ei_input_balance(conv, torch.rand(2, 5, 6, 6))


def test_record_activations_shapes_hooks_and_mode():
    model = make_mlp(6, 5, 3)
    model.train()
    model[2].eval()
    x = torch.randn(10, 6)
    loader = [(x[:4], torch.zeros(4)), (x[4:], torch.zeros(6))]
    acts = probes.record_activations(model, loader)
    assert list(acts) == ["0", "2"]
    assert acts["0"].shape == (10, 5) and acts["2"].shape == (10, 3)
    torch.testing.assert_close(acts["2"], model(x).detach())
    assert all(not m._forward_hooks for m in model.modules())
    assert model.training and model[0].training and not model[2].training
    relu = probes.record_activations(model, x, layers=["1"])["1"]
    assert bool((relu >= 0).all()) and relu.shape == (10, 5)
    inputs = probes.record_activations(model, x, layers=["2"], capture="input")["2"]
    torch.testing.assert_close(inputs, relu)
    assert probes.record_activations(model, loader, max_batches=1)["0"].shape == (4, 5)


def test_record_activations_removes_hooks_on_error():
    model = make_mlp(6, 5, 3)
    with pytest.raises(RuntimeError):
        probes.record_activations(model, torch.randn(2, 7))
    assert all(not m._forward_hooks for m in model.modules())
    assert model.training


# ------------------------------------------------------------------------ task-encoding probes


def test_recruited_synapses_grown_and_strengthened():
    before = torch.tensor([0.0, 1.0, 1.0, -1.0, 2.0, 0.0])
    after = torch.tensor([0.5, 3.0, 1.5, -2.5, 0.0, 0.0])
    # grown: 0; strengthened > ln 2: 1 (x3), 3 (x2.5); 2 (x1.5) not; 4 eliminated; 5 absent
    expected = torch.tensor([True, True, False, True, False, False])
    assert torch.equal(probes.recruited_synapses(before, after), expected)
    no_grown = probes.recruited_synapses(before, after, grown_counts=False)
    assert torch.equal(no_grown, expected & (before != 0))
    assert probes.recruited_synapses(before, after, rel_threshold=1.0).tolist() == [
        True,
        True,
        False,
        False,
        False,
        False,
    ]
    per_layer = probes.recruited_synapses({"a": before}, {"a": after})
    assert torch.equal(per_layer["a"], expected)


def test_task_selectivity_and_recruited_units():
    r = torch.tensor([[1.0, 1.0, 0.0, 4.0], [0.0, 1.0, 0.0, 2.0]])
    sel = probes.task_selectivity(r)
    assert sel.index[0] == pytest.approx(1.0) and sel.index[1] == pytest.approx(0.0)
    assert math.isnan(sel.index[2]) and sel.index[3] == pytest.approx(1 / 3)
    assert sel.preferred.tolist() == [0, 0, -1, 0]
    units = probes.recruited_units(r)
    assert units.tolist() == [[True, True, False, True], [False, True, False, True]]
    assert probes.recruited_units(r, rel_activity=1.0)[1].tolist() == [False, True, False, False]
    heat = probes.allocation_matrix(units)
    assert heat.shape == (2, 4) and heat.dtype == torch.float32
    torch.testing.assert_close(probes.allocation_matrix(list(units)), heat)


def test_jaccard_identical_and_disjoint():
    a = torch.tensor([True, True, False, False])
    b = torch.tensor([False, False, True, True])
    c = torch.tensor([True, False, True, False])
    j = probes.jaccard_matrix([a, a.clone(), b, c])
    assert j[0, 1] == 1.0 and j[0, 2] == 0.0 and j[0, 3] == pytest.approx(1 / 3)
    per_layer = probes.jaccard_matrix([{"x": a, "y": b}, {"y": b, "x": a}])
    assert torch.equal(per_layer, torch.ones(2, 2, dtype=torch.float64))


@FAST
@given(st.lists(st.lists(st.booleans(), min_size=5, max_size=5), min_size=1, max_size=5))
def test_jaccard_symmetric_unit_diagonal_bounded(rows):
    j = probes.jaccard_matrix([torch.tensor(r) for r in rows])
    assert torch.equal(j, j.T)
    assert bool((torch.diagonal(j) == 1).all())
    assert bool(((j >= 0) & (j <= 1)).all())


def test_capacity_union_of_disjoint_masks():
    w = torch.ones(4, 5)
    w[3] = 0
    m1 = torch.zeros(4, 5, dtype=torch.bool)
    m1[0] = True
    m2 = torch.zeros(4, 5, dtype=torch.bool)
    m2[1, :3] = True
    cap = probes.capacity([m1, m2], w)
    assert cap["n_used"] == 8 and cap["used_fraction"] == pytest.approx(8 / 20)
    assert cap["free_fraction"] == pytest.approx(12 / 20)
    assert cap["free_present_fraction"] == pytest.approx(7 / 20)
    assert probes.capacity([], w)["used_fraction"] == 0.0
    per_layer = probes.capacity([{"a": m1, "b": m2[1:2]}], {"a": w, "b": w[:1]})
    assert per_layer["n_used"] == 8 and per_layer["n_potential"] == 25


# ----------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: probes.connectivity(torch.empty(0)), "weight"),
        (lambda: probes.dale_violations(torch.ones(3)), "module_or_weight"),
        (lambda: probes.dale_violations(torch.ones(2, 3), torch.ones(2)), "dale_sign"),
        (lambda: probes.dale_violations(torch.ones(2, 3), torch.zeros(3)), "dale_sign"),
        (lambda: probes.dale_violations(nn.ReLU()), "module_or_weight"),
        (lambda: probes.sign_flips(torch.ones(2, 3), torch.ones(3, 2)), "reference"),
        (lambda: probes.population_sparseness(torch.ones(3)), "acts"),
        (lambda: probes.population_sparseness(-torch.ones(2, 2)), "acts"),
        (lambda: probes.population_sparseness(torch.ones(2, 1)), "acts"),
        (lambda: probes.population_sparseness(torch.ones(2, 2), reduction="sum"), "reduction"),
        (lambda: probes.lifetime_sparseness(torch.ones(1, 3)), "acts"),
        (lambda: probes.participation_ratio(torch.ones(1, 3)), "acts"),
        (lambda: probes.silent_fraction(torch.ones(2, 2), eps=-1.0), "eps"),
        (
            lambda: probes.record_activations(make_mlp(6, 5, 3), torch.ones(1, 6), ["nope"]),
            "layers",
        ),
        (lambda: probes.record_activations(make_mlp(6, 5, 3), [], None), "loader_or_tensor"),
        (lambda: probes.recruited_synapses(torch.ones(2), torch.ones(3)), "after_weight"),
        (lambda: probes.recruited_synapses(torch.ones(2), torch.ones(2), -1.0), "rel_threshold"),
        (lambda: probes.task_selectivity(torch.ones(1, 3)), "mean_activity_per_task"),
        (lambda: probes.recruited_units(torch.ones(2, 3), rel_activity=0.0), "rel_activity"),
        (lambda: probes.jaccard_matrix([]), "masks"),
        (lambda: probes.jaccard_matrix([torch.ones(2)]), "masks"),
        (lambda: probes.jaccard_matrix([torch.ones(2).bool(), torch.ones(3).bool()]), "masks"),
        (lambda: probes.capacity([torch.ones(2, 2).bool()], torch.ones(2, 3)), "masks_so_far"),
        (lambda: probes.capacity([torch.ones(2).bool()], {"a": torch.ones(2)}), "masks_so_far"),
        (lambda: probes.allocation_matrix(torch.ones(2, 3)), "unit_masks"),
    ],
)
def test_bad_inputs_raise_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_shared_dale_violations_reads_layers_of_the_same_units_together():
    """Each layer alone keeps Dale's law, but unit 0 excites one and inhibits the other; unit 2
    has a synapse against its type in the second layer; a shape mismatch is refused."""
    a = torch.tensor([[1.0, -1.0, 0.5], [2.0, -0.5, 0.0]])
    b = torch.tensor([[-1.0, -2.0, 0.0], [0.0, -1.0, 0.0]])
    assert probes.dale_violations(a) == 0 and probes.dale_violations(b) == 0
    assert probes.shared_dale_violations([a, b]) == 1
    layer = nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[-1.0, -2.0, -0.3], [0.0, -1.0, 0.0]]))
    layer.register_buffer("dale_sign", torch.tensor([-1.0, -1.0, 1.0]))
    assert probes.dale_violations(layer) == 1  # unit 2 against its type
    assert probes.shared_dale_violations([a, layer]) == 2
    assert probes.shared_dale_violations([]) == 0
    with pytest.raises(ValueError, match="same presynaptic units"):
        probes.shared_dale_violations([a, torch.ones(2, 4)])
