"""BioRule(weight_dependence=mu): the drive times (mbar / m) ** (1 - mu)."""

import math

import pytest
import torch
from torch import nn

import bioplastic as bp
from bioplastic import functional as F
from bioplastic.optim import BioRule

# one step, nothing but plasticity: no momentum, cost, normalisation or clip; homeostasis on
# (its budgets start at the current sums, so the first step's rescale is 1) for the Dale types
PLAIN = dict(momentum=0.0, cost=0.0, normalize=False, warmup=0, saturation=0.0,
             fan_in_exponent=0.0, max_step=None, prune_threshold=0.0)  # fmt: skip


def _weight():
    # row 0: three excitatory inputs (one weak, one strong, one absent) and one inhibitory
    w = torch.tensor([[0.05, 0.8, 0.0, -0.4], [0.3, 0.3, 0.6, -0.1]])
    p = nn.Parameter(w.clone())
    p.dale_sign = torch.tensor([1.0, 1.0, 1.0, -1.0])
    return p


@pytest.mark.parametrize("on", ["both", "potentiation"])
@pytest.mark.parametrize("mu", [1.0, 0.5, 0.0])
def test_one_step_is_the_drive_times_the_weight_dependence(mu, on):
    p = _weight()
    w = p.detach().clone()
    g = torch.tensor([[-1.0, -1.0, -1.0, 1.0], [1.0, -2.0, 0.5, -1.0]])
    lr = 0.1
    opt = BioRule([p], lr=lr, weight_dependence=mu, weight_dependence_on=on, **PLAIN)
    p.grad = g.clone()
    opt.step()
    s = torch.tensor([1.0, 1.0, 1.0, -1.0])
    drive = s * g
    # mbar: the row's same-type magnitude per potential synapse of that type
    mbar_e = w[:, :3].abs().sum(1, keepdim=True) / 3
    mbar_i = w[:, 3:].abs().sum(1, keepdim=True) / 1
    mbar = torch.cat([mbar_e.expand(-1, 3), mbar_i], 1)
    factor = torch.where(w != 0, (mbar / w.abs().clamp(min=1e-30)) ** (1 - mu), 1.0)
    if on == "potentiation":
        factor = torch.where(drive < 0, factor, 1.0)
    expected = w * torch.exp(-lr * drive * factor)
    torch.testing.assert_close(p.detach(), expected, rtol=1e-5, atol=1e-7)
    assert p[0, 2] == 0  # absent stays absent


def test_a_weak_synapse_potentiates_relatively_faster_below_exponent_one():
    p = _weight()
    w = p.detach().clone()
    opt = BioRule([p], lr=0.001, weight_dependence=0.0, **PLAIN)
    p.grad = torch.tensor([[-1.0, -1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    opt.step()
    gain = (p.detach() / w.clamp(min=1e-30))[0]
    # mu = 0: both change by about the same absolute amount, so the weak one relatively more
    assert gain[0] > gain[1] > 1
    torch.testing.assert_close(p[0, 0] - w[0, 0], p[0, 1] - w[0, 1], rtol=0.01, atol=0.0)


def test_the_reference_paths_agree_and_the_fast_paths_defer_to_them():
    results = []
    for foreach, fused in ((True, False), (False, False), (True, True)):
        torch.manual_seed(0)
        model = bp.dalify(nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 5)), seed=0)
        opt = BioRule(model.parameters(), seed=1, weight_dependence=0.5, foreach=foreach,
                      fused=fused, warmup=0)  # fmt: skip
        x = torch.randn(64, 12, generator=torch.Generator().manual_seed(2))
        y = torch.arange(64) % 5
        for i in range(0, 64, 8):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[i : i + 8]), y[i : i + 8]).backward()
            opt.step()
        results.append([q.detach().clone() for q in model.parameters()])
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


# the drive factors: weight dependence (reference path) and saturation (fast and reference)
@pytest.mark.parametrize(
    "options",
    [dict(weight_dependence=0.0, weight_dependence_on=on, cost=cost)
     for on in ("both", "potentiation") for cost in (0.0, 0.4)]
    + [dict(saturation=0.5), dict(saturation=0.5, cost=0.0)],
)  # fmt: skip
def test_no_sign_flips_no_revived_zeros_and_finite_weights(options):
    torch.manual_seed(0)
    model = bp.dalify(nn.Sequential(nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 3)), seed=0)
    with torch.no_grad():
        model[0].weight[:, :3] = 0.0  # absent synapses from the start
    signs = [torch.sign(q.detach()).clone() for q in model.parameters() if q.dim() == 2]
    opt = BioRule(model.parameters(), seed=0, lr=1.0, noise=0.1, **options)
    gen = torch.Generator().manual_seed(3)
    for _ in range(20):
        for q in model.parameters():
            q.grad = torch.randn(q.shape, generator=gen) * 10
        opt.step()
    for q, s in zip([q for q in model.parameters() if q.dim() == 2], signs, strict=True):
        assert torch.isfinite(q).all()
        now = torch.sign(q.detach())
        assert ((now == s) | (now == 0)).all()  # no flip; a synapse may only disappear
    assert (model[0].weight[:, :3] == 0).all()


def test_weight_dependence_helper_is_one_on_absent_synapses():
    w = torch.tensor([[0.0, 0.5, 1.5]])
    factor = F.weight_dependence(w, None, 0.5)
    mbar = 2.0 / 2  # without types each entry is typed by its sign: the mean is over present ones
    torch.testing.assert_close(factor, torch.tensor([[1.0, math.sqrt(mbar / 0.5),
                                                      math.sqrt(mbar / 1.5)]]))  # fmt: skip


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [(dict(weight_dependence=1.5), "weight_dependence"),
     (dict(weight_dependence=-0.1), "weight_dependence"),
     (dict(weight_dependence_on="depression"), "weight_dependence_on")],
)  # fmt: skip
def test_bad_weight_dependence_is_refused_by_name(kwargs, name):
    with pytest.raises(ValueError, match=name):
        BioRule([_weight()], **kwargs)
