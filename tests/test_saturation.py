"""BioRule(saturation=k): potentiation times 1 / (1 + (m / (k * mbar)) ** 2)."""

import math

import pytest
import torch
from test_perf_step import compiled_path  # noqa: F401 (fixture: skip without compile, compile small weights)
from torch import nn

import bioplastic as bp
from bioplastic import functional as F
from bioplastic.optim import BioRule

# one step, nothing but plasticity: no momentum, cost, normalisation or clip; homeostasis on
# (its budgets start at the current sums, so the first step's rescale is 1) for the Dale types
PLAIN = dict(momentum=0.0, cost=0.0, normalize=False, warmup=0,
             fan_in_exponent=0.0, max_step=None, prune_threshold=0.0)  # fmt: skip
SIGNS = torch.tensor([1.0, 1.0, 1.0, -1.0])


def _weight():
    # row 0: three excitatory inputs (one weak, one strong, one absent) and one inhibitory
    p = nn.Parameter(torch.tensor([[0.05, 0.8, 0.0, -0.4], [0.3, 0.3, 0.6, -0.1]]))
    p.dale_sign = SIGNS.clone()
    return p


def _mbar(w):
    """The row's same-type magnitude per potential synapse of that type."""
    mbar_e = w[:, :3].abs().sum(1, keepdim=True) / 3
    mbar_i = w[:, 3:].abs().sum(1, keepdim=True) / 1
    return torch.cat([mbar_e.expand(-1, 3), mbar_i], 1)


@pytest.mark.parametrize("k", [0.5, 2.0])
def test_one_step_damps_potentiation_and_leaves_depression(k):
    p = _weight()
    w = p.detach().clone()
    g = torch.tensor([[-1.0, -1.0, -1.0, 1.0], [1.0, -2.0, 0.5, -1.0]])
    lr = 0.1
    opt = BioRule([p], lr=lr, saturation=k, **PLAIN)
    p.grad = g.clone()
    opt.step()
    drive = SIGNS * g
    damp = 1.0 / (1.0 + (w.abs() / (k * _mbar(w))) ** 2)
    expected = w * torch.exp(-lr * drive * torch.where(drive < 0, damp, 1.0))
    torch.testing.assert_close(p.detach(), expected, rtol=1e-5, atol=1e-7)
    assert p[0, 2] == 0  # absent stays absent
    # the strong synapse is held back more than the weak one, relative to the plain rule
    plain = w * torch.exp(-lr * drive)
    held = torch.log(plain / p.detach().clamp(min=1e-30))[0, :2]
    assert held[1] > held[0] > 0


def test_the_factor_is_a_half_at_the_level_one_far_below_and_on_absent_synapses():
    ratio = torch.tensor([0.0, 0.5, 1e-3, 1e30, 1e38])  # mbar / m
    got = F.saturation_factor(ratio, 2.0)
    # m = mbar / ratio: absent; at the level (k * mbar); far above; far below (twice)
    want = torch.tensor([1.0, 0.5, 1.0 / (1.0 + 500.0**2), 1.0, 1.0])
    torch.testing.assert_close(got, want)
    assert torch.isfinite(F.saturation_factor(ratio, 1e6)).all()


def _train(steps=8, **options):
    torch.manual_seed(0)
    model = bp.dalify(nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 5)), seed=0)
    opt = BioRule(model.parameters(), seed=1, warmup=0, **options)
    x = torch.randn(8 * steps, 12, generator=torch.Generator().manual_seed(2))
    y = torch.arange(8 * steps) % 5
    for i in range(0, 8 * steps, 8):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[i : i + 8]), y[i : i + 8]).backward()
        opt.step()
    return [q.detach().clone() for q in model.parameters()]


# momentum 0.9: the multi-tensor fast path; 0: the one-tensor fast path; cost 0: the reference
@pytest.mark.parametrize("options", [{}, {"momentum": 0.0}, {"cost": 0.0}])
def test_the_fast_paths_equal_the_reference_path(options):
    # foreach=False is the reference path (fused=True: the eager path, tested below)
    runs = [_train(saturation=3.0, foreach=foreach, fused=fused, **options)
            for foreach, fused in ((False, False), (True, False), (True, True))]  # fmt: skip
    for other in runs[1:]:
        for a, b in zip(runs[0], other, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    plain = _train(saturation=0.0, **options)
    assert any(not torch.allclose(a, b) for a, b in zip(runs[0], plain, strict=True))


@pytest.mark.parametrize("options", [{}, {"decay": 0.05}])  # decay: added after saturating
@pytest.mark.usefixtures("compiled_path")
def test_the_compiled_path_equals_the_reference_path_with_saturation(options, monkeypatch):
    from bioplastic import _fused_step

    calls, build = [], _fused_step.compiled
    monkeypatch.setattr(_fused_step, "compiled", lambda fn: calls.append(fn.__name__) or build(fn))
    reference = _train(saturation=3.0, foreach=False, **options)
    compiled = _train(saturation=3.0, fused=True, **options)
    assert "fused_update_" in calls  # the compiled kernel ran
    for a, b in zip(reference, compiled, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    plain = _train(saturation=0.0, fused=True, **options)
    assert any(not torch.allclose(a, b) for a, b in zip(compiled, plain, strict=True))


def test_a_state_dict_from_before_the_options_resumes_the_rule_without_them():
    # saturation's default is 30 now; a run saved before the option existed trained without it
    model = bp.dalify(nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3)), seed=0)
    opt = BioRule(model.parameters(), seed=0)
    nn.functional.cross_entropy(model(torch.randn(5, 6)), torch.arange(5) % 3).backward()
    opt.step()
    saved = opt.state_dict()
    for group in saved["param_groups"]:  # as saved before these options existed
        for key in ("fused", "saturation", "weight_dependence", "weight_dependence_on"):
            del group[key]
    fresh = BioRule(model.parameters(), seed=0, saturation=5.0, foreach=False)
    fresh.load_state_dict(saved)
    group = fresh.param_groups[0]
    assert (group["saturation"], group["weight_dependence"], group["weight_dependence_on"],
            group["fused"]) == (0.0, 1.0, "both", False)  # fmt: skip
    fresh.step()  # the reference path reads all three
    assert all(torch.isfinite(q).all() for q in model.parameters())


def test_a_far_level_gives_the_plain_rule():
    for a, b in zip(_train(saturation=1e6), _train(saturation=0.0), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("value", [-1.0, math.inf, math.nan, 1e7, 1e-9])
def test_bad_saturation_is_refused_by_name(value):
    with pytest.raises(ValueError, match="saturation"):
        BioRule([_weight()], saturation=value)
