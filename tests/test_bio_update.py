"""bio_update: the differentiable, sign-preserving step on a whole module (maml_update style)."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from bioplastic import BioRule, dalify
from bioplastic.functional import bio_update, multiplicative_update, row_grad_scale


def _net(seed=0, dtype=torch.float32, connectivity=0.7):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3)).to(dtype)
    return dalify(net, connectivity=connectivity, seed=seed)


def _loss(net, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(8, 6, generator=g, dtype=net[0].weight.dtype)
    y = torch.randint(0, 3, (8,), generator=g)
    return nn.functional.cross_entropy(net(x), y)


def test_synapses_multiplicative_biases_additive():
    net = _net()
    before = [p.detach().clone() for p in net.parameters()]
    grads = torch.autograd.grad(_loss(net), list(net.parameters()))
    bio_update(net, lr=2.0, grads=grads, max_step=0.3, other_lr=0.1, normalize=False,
               fan_in_exponent=0.0)  # fmt: skip
    for old, g, new in zip(before, grads, net.parameters(), strict=True):
        if old.dim() >= 2:
            expected = multiplicative_update(old, g, 2.0, max_step=0.3)
            assert torch.equal(torch.sign(new), torch.sign(old))
            assert torch.all(new[old == 0] == 0)
            ratio = (new.detach()[old != 0] / old[old != 0]).log().abs()
            assert float(ratio.max()) <= 0.3 + 1e-6
        else:
            expected = old - 0.1 * g
        torch.testing.assert_close(new.detach(), expected)


def test_uses_dot_grad_when_grads_is_none_and_other_lr_defaults_to_lr():
    a, b = _net(), _net()
    _loss(a).backward()
    grads = [p.grad for p in a.parameters()]
    bio_update(a, lr=0.5)
    bio_update(b, lr=0.5, grads=grads, other_lr=0.5)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q)


def test_reroutes_without_touching_old_tensors_and_keeps_the_graph():
    net = _net()
    old = list(net.parameters())
    snapshot = [p.detach().clone() for p in old]
    grads = torch.autograd.grad(_loss(net), old, create_graph=True)
    bio_update(net, lr=1.0, grads=grads)
    new = list(net.parameters())
    assert all(n is not o for n, o in zip(new, old, strict=True))
    assert all(torch.equal(o, s) for o, s in zip(old, snapshot, strict=True))
    assert new[0].grad_fn is not None  # out of place, differentiable
    meta = torch.autograd.grad(_loss(net, seed=2), old)
    assert all(torch.isfinite(g).all() for g in meta)
    assert float(meta[0].abs().sum()) > 0


def test_shared_parameter_is_updated_once():
    lin = nn.Linear(4, 4)
    dalify(lin)
    net = nn.Sequential(lin, nn.Tanh(), lin)  # tied weights
    w0 = lin.weight.detach().clone()
    g = torch.ones_like(w0)
    bio_update(net, lr=0.1, grads=[g, torch.zeros(4)], max_step=None, normalize=False,
               fan_in_exponent=0.0)  # fmt: skip
    assert net[0].weight is net[2].weight
    torch.testing.assert_close(net[0].weight.detach(), w0 * torch.exp(-0.1 * torch.sign(w0)))


def test_buffers_are_left_alone():
    net = _net()
    sign = net[0].dale_sign
    bio_update(net, lr=1.0, grads=torch.autograd.grad(_loss(net), list(net.parameters())))
    assert net[0].dale_sign is sign


@pytest.mark.parametrize("normalize", [True, False])
def test_equals_one_biorule_step_where_both_apply(normalize):
    """BioRule with momentum 0, no warm-up, saturation, homeostasis, cost, noise or elimination,
    and an SGD step for biases takes exactly bio_update's step (normalised drive, fan-in scaled
    rate)."""
    a, b = _net(dtype=torch.float64), _net(dtype=torch.float64)
    grads = torch.autograd.grad(_loss(a), list(a.parameters()))
    for p, g in zip(b.parameters(), grads, strict=True):
        p.grad = g.clone()
    opt = BioRule(b.parameters(), lr=3.0, normalize=normalize, momentum=0.0, warmup=0, cost=0.0,
                  homeostasis=False, prune_threshold=0.0, noise=0.0, max_step=0.3, other="sgd",
                  other_lr=0.1, seed=0, saturation=0.0)  # fmt: skip
    opt.step()
    bio_update(a, lr=3.0, grads=grads, max_step=0.3, other_lr=0.1, normalize=normalize)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p.detach(), q.detach())
    assert not torch.equal(a[0].weight.detach(), _net(dtype=torch.float64)[0].weight)


def test_normalised_step_does_not_depend_on_the_loss_scale():
    a, b = _net(), _net()
    grads = torch.autograd.grad(_loss(a), list(a.parameters()))
    bio_update(a, lr=1.0, grads=grads, other_lr=0.0)
    bio_update(b, lr=1.0, grads=[1000.0 * g for g in grads], other_lr=0.0)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q)
    scale = row_grad_scale(grads[0])
    assert scale.shape == (5, 1)
    rms = (grads[0] * scale).square().mean(1).sqrt()
    assert float(rms.max()) <= 1.0 and float(rms.max()) > 0.9  # unit RMS up to the floor


def test_tensor_rates_per_parameter():
    """MetaSGD-style rates: a list with one (tensor) rate per parameter; the step is
    differentiable in the rates, and a constant tensor equals the scalar rate."""
    a, b = _net(), _net()
    grads = torch.autograd.grad(_loss(a), list(a.parameters()))
    rates = [torch.full_like(p, 0.7 if p.dim() >= 2 else 0.2, requires_grad=True)
             for p in a.parameters()]  # fmt: skip
    bio_update(a, lr=rates, grads=grads)
    bio_update(b, lr=0.7, grads=grads, other_lr=0.2)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q)
    meta = torch.autograd.grad(_loss(a, seed=2), rates)
    assert all(float(g.abs().sum()) > 0 for g in meta)
    c = _net()
    before = [p.detach().clone() for p in c.parameters()]
    bio_update(c, lr=[None, 0.5, None, 0.0], grads=grads)  # None: not updated
    assert torch.equal(c[0].weight, before[0]) and torch.equal(c[2].bias, before[3])
    assert not torch.equal(c[0].bias, before[1])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(lr=0.0), "lr"),
        (dict(lr=math.nan), "lr"),
        (dict(lr=1.0, max_step=0.0), "max_step"),
        (dict(lr=1.0, other_lr=-1.0), "other_lr"),
        (dict(lr=1.0, grads=[None]), "grads has 1 entries"),
        (dict(lr=1.0, grads=[torch.zeros(2)] * 4), r"grads\[0\] has shape"),
        (dict(lr=[1.0, 1.0]), "lr has 2 entries"),
        (dict(lr=[1.0, -1.0, 1.0, 1.0]), r"lr\[1\]"),
        (dict(lr=1.0, fan_in_exponent=3.0), "fan_in_exponent"),
    ],
)
def test_invalid_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        bio_update(_net(), **kwargs)


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    lr=st.floats(0.01, 50.0),
    max_step=st.one_of(st.none(), st.floats(0.01, 2.0)),
    scale=st.floats(0.0, 100.0),
)
def test_property_no_sign_flip_and_zeros_stay_zero(seed, lr, max_step, scale):
    net = _net(seed)
    before = [p.detach().clone() for p in net.parameters()]
    g = torch.Generator().manual_seed(seed)
    grads = [scale * torch.randn(p.shape, generator=g) for p in net.parameters()]
    bio_update(net, lr=lr, grads=grads, max_step=max_step, other_lr=0.0)
    for old, new in zip(before, net.parameters(), strict=True):
        if old.dim() < 2:
            assert torch.equal(new, old)
            continue
        finite = torch.isfinite(new)
        assert torch.all((torch.sign(new) == torch.sign(old)) | (new == 0) | ~finite)
        assert torch.all(new[old == 0] == 0)
