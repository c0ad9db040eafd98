import math

import pytest
import torch
from torch import nn

from bioplastic.dale import BioMLP, dalify
from bioplastic.representation import (
    activity_profile,
    effective_filters,
    first_layer,
    input_gradient_stats,
    lipschitz_upper_bound,
    log_magnitude_histogram,
    plot_receptive_fields,
    receptive_field_grid,
    weight_scale_stats,
)


def test_effective_filter_is_e_copy_minus_i_copy_on_a_hand_built_weight():
    # 2 units, 2 input features; columns: E-copy of x0, x1, then I-copy of x0, x1
    w = torch.tensor([[3.0, 1.0, -1.0, -2.0], [0.0, 0.5, -0.5, 0.0]])
    sign = torch.tensor([1.0, 1.0, -1.0, -1.0])
    expected = torch.tensor([[2.0, -1.0], [-0.5, 0.5]])  # m_E - m_I per feature
    assert torch.equal(effective_filters(w, sign), expected)
    assert torch.equal(effective_filters(w, on_off=True), expected)
    # other sign patterns are not ON/OFF: the weight is returned unchanged
    assert torch.equal(effective_filters(w, torch.tensor([1.0, -1.0, 1.0, -1.0])), w)
    assert torch.equal(effective_filters(w, on_off=False), w)
    with pytest.raises(ValueError, match="even number"):
        effective_filters(torch.ones(2, 3), on_off=True)


def test_effective_filters_reproduce_the_first_layer_of_an_on_off_biomlp():
    model = BioMLP(6, (5,), 3, seed=1)
    name, layer, on_off = first_layer(model)
    assert on_off and name == "net.2"
    x = torch.rand(4, 6)
    with torch.no_grad():
        direct = layer(model.net[1](x))
        via_filters = x @ effective_filters(layer.weight, on_off=True).T + layer.bias
    assert torch.allclose(direct, via_filters, atol=1e-6)
    plain = dalify(nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)))
    assert first_layer(plain)[2] is False


def test_receptive_field_grid_layout_padding_and_normalisation():
    filters = torch.arange(1, 5 * 6 + 1, dtype=torch.float32).reshape(5, 6)  # 5 filters, 2x3
    grid = receptive_field_grid(filters, (2, 3))
    # ceil(sqrt(5)) = 3 tiles per row, 2 rows, 1-pixel padding
    assert grid.shape == (2 * 3 - 1, 3 * 4 - 1)
    tile = filters[4].reshape(2, 3) / filters[4].abs().max()
    assert torch.allclose(grid[3:5, 4:7], tile)  # filter 4: row 1, column 1
    assert torch.isnan(grid[2]).all() and torch.isnan(grid[:, 3]).all()  # padding
    assert torch.isnan(grid[3:5, 8:11]).all()  # unused sixth tile
    assert float(grid[~torch.isnan(grid)].abs().max()) == 1.0
    raw = receptive_field_grid(filters, (2, 3), ncols=5, pad=0, normalize=False)
    assert raw.shape == (2, 15) and torch.equal(raw[:, :3], filters[0].reshape(2, 3))
    # 1-D signals: one filter per row
    strips = receptive_field_grid(torch.randn(7, 40), (40,))
    assert strips.shape == (7, 40) and not torch.isnan(strips).any()
    with pytest.raises(ValueError, match="pixels"):
        receptive_field_grid(filters, (3, 3))


def test_plot_receptive_fields_writes_a_png(tmp_path):
    grids = {"bio": receptive_field_grid(torch.randn(4, 64), (8, 8))}
    path = plot_receptive_fields(grids, tmp_path / "f" / "rf.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_activity_profile_counts_a_silent_unit_and_reports_balance():
    lin = nn.Linear(2, 3, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]))
    model = nn.Sequential(lin, nn.ReLU())
    x = torch.rand(50, 2) + 0.1  # positive inputs: unit 2 never fires
    profile = activity_profile(model, x)
    assert profile["1"]["silent_fraction"] == pytest.approx(1 / 3)
    assert 0.0 <= profile["1"]["population_sparseness"] <= 1.0
    assert 1.0 <= profile["1"]["participation_ratio"] <= 3.0
    assert set(profile["0 (E/I)"]) == {"ei_ratio_median", "ei_correlation_mean"}


def test_lipschitz_bound_and_weight_scale_of_a_diagonal_network():
    a, b = nn.Linear(2, 2), nn.Linear(2, 2)
    with torch.no_grad():
        a.weight.copy_(torch.diag(torch.tensor([2.0, 1.0])))
        b.weight.copy_(torch.diag(torch.tensor([3.0, 0.0])))
    model = nn.Sequential(a, nn.ReLU(), b)
    assert lipschitz_upper_bound(model) == pytest.approx(6.0)
    stats = weight_scale_stats(model)
    assert stats["2"]["frobenius"] == pytest.approx(3.0)
    assert stats["2"]["mean_abs_present"] == pytest.approx(3.0)


def test_input_gradient_stats_on_a_linear_model_with_known_margin():
    lin = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    x, y = torch.tensor([[0.5, 0.3]]), torch.tensor([0])
    stats = input_gradient_stats(lin, x, y)
    assert stats["logit_margin"] == pytest.approx(0.5)
    assert stats["margin_grad_l1"] == pytest.approx(1.0)
    assert stats["linearized_radius_linf"] == pytest.approx(0.5)
    # in units of a wider input range the same margin is a smaller fraction of the range
    wide = input_gradient_stats(lin, x, y, input_range=(-1.0, 1.0))
    assert wide["linearized_radius_linf"] == pytest.approx(0.25)


def test_log_magnitude_histogram_fits_a_lognormal_and_ignores_absent_synapses():
    gen = torch.Generator().manual_seed(0)
    mags = torch.exp(0.7 * torch.randn(20_000, generator=gen) - 1.0)
    w = torch.cat([mags, torch.zeros(5_000)])
    h = log_magnitude_histogram(w, bins=40)
    assert h["n_present"] == 20_000 and h["n_total"] == 25_000
    assert h["mu"] == pytest.approx(-1.0, abs=0.03)
    assert h["sigma"] == pytest.approx(0.7, abs=0.03)
    assert h["ks_distance"] < 0.02
    widths = [b - a for a, b in zip(h["edges"], h["edges"][1:], strict=False)]
    assert math.fsum(d * w for d, w in zip(h["density"], widths, strict=True)) == pytest.approx(1)
    with pytest.raises(ValueError, match="present"):
        log_magnitude_histogram(torch.zeros(10))


def test_lipschitz_bound_of_an_inhibited_mlp_counts_the_interneurons_as_sqrt_1_plus_norm_squared():
    import math

    import bioplastic as bp
    from bioplastic.representation import lipschitz_upper_bound, weight_scale_stats

    model = bp.BioMLP(6, (16, 16), 3, seed=0)
    stats = weight_scale_stats(model)
    factors = [math.hypot(1.0, s["spectral"]) if name.endswith(".interneurons") else s["spectral"]
               for name, s in stats.items()]  # fmt: skip
    assert sum(name.endswith(".interneurons") for name in stats) == 2
    assert lipschitz_upper_bound(model) == pytest.approx(math.prod(factors))
    x = torch.rand(256, 6)
    y = x + 1e-3 * torch.randn_like(x)
    with torch.no_grad():
        ratio = (model(x) - model(y)).norm(dim=1) / (x - y).norm(dim=1)
    assert float(ratio.max()) <= lipschitz_upper_bound(model)
