"""Bad arguments are refused with a ValueError naming them, before anything is changed;
NaN never reaches the weights; a pretrained model is not wiped by BioPlastic (issue 11)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from bioplastic import BioMLP, BioRule, dalify
from bioplastic._rule_options import GROUP_KEYS
from bioplastic.functional import bio_update


def _snapshot(model: nn.Module) -> list[torch.Tensor]:
    return [t.detach().clone() for t in model.state_dict().values()]


def _unchanged(model: nn.Module, before: list[torch.Tensor]) -> bool:
    return all(torch.equal(a, b) for a, b in zip(before, _snapshot(model), strict=True))


# ------------------------------------------------------------------ bio_update / BioMAML
def test_bio_update_refuses_an_lr_beyond_float32_and_leaves_the_model():
    net = dalify(nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)))
    before = _snapshot(net)
    grads = [torch.zeros_like(p) for p in net.parameters()]
    with pytest.raises(ValueError, match="lr must be <= "):
        bio_update(net, lr=1e39, grads=grads)
    assert _unchanged(net, before)


@pytest.mark.parametrize("lr", [math.nan, math.inf, -1.0, 0.0, "1"])
def test_bio_update_refuses_bad_lr(lr):
    with pytest.raises(ValueError, match="lr"):
        bio_update(dalify(nn.Linear(3, 2)), lr=lr, grads=[None, None])


def test_bio_update_skips_non_finite_gradients_as_biorule_does():
    net = dalify(nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2)))
    before = _snapshot(net)
    grads = [torch.full_like(p, math.nan) for p in net.parameters()]
    with pytest.warns(RuntimeWarning, match="non-finite"):
        bio_update(net, lr=1.0, grads=grads)
    assert _unchanged(net, before)
    assert all(torch.isfinite(p).all() for p in net.parameters())


def test_biomaml_refuses_non_bool_flags_and_huge_lr():
    fewshot = pytest.importorskip("strategies.fewshot")
    model = dalify(nn.Linear(4, 2))
    with pytest.raises(ValueError, match="first_order"):
        fewshot.BioMAML(model, lr=1.0, first_order="no")
    with pytest.raises(ValueError, match="allow_nograd"):
        fewshot.BioMAML(model, lr=1.0, allow_nograd=1)
    learner = fewshot.BioMAML(model, lr=1e39).clone()
    loss = learner(torch.randn(3, 4)).sum()
    with pytest.raises(ValueError, match="lr must be <= "):
        learner.adapt(loss)
    with pytest.raises(ValueError, match="first_order"):
        fewshot.BioMAML(model, lr=1.0).clone().adapt(loss, first_order="no")


# ------------------------------------------------------------------ dalify / BioMLP
@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"gain": math.nan}, "gain"),
        ({"gain": math.inf}, "gain"),
        ({"gain": -1.0}, "gain"),
        ({"sigma": math.nan}, "sigma"),
        ({"balance": "no"}, "balance"),
        ({"seed": "s"}, "seed"),
        ({"seed": 2**64}, "seed"),
        ({"init": "fresh"}, "init"),
        ({"skip": "0"}, "skip"),
    ],
)
def test_dalify_refuses_bad_arguments_before_changing_the_model(kwargs, name):
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    before = _snapshot(model)
    with pytest.raises(ValueError, match=name):
        dalify(model, **kwargs)
    assert _unchanged(model, before)
    assert not hasattr(model[0], "dale_sign")


def test_dalify_refuses_empty_and_meta_layers():
    with pytest.raises(ValueError, match="empty weight"):
        dalify(nn.Linear(0, 3))
    with pytest.raises(ValueError, match="meta device"):
        dalify(nn.Linear(3, 2, device="meta"))
    with pytest.raises(ValueError, match="nn.Module"):
        dalify("not a model")


def test_dalify_warns_when_a_layer_gets_no_inhibitory_unit():
    with pytest.warns(UserWarning, match="OnOffSplit"):
        dalify(nn.Sequential(nn.Conv2d(1, 4, 3)))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"sigma": math.nan}, "sigma"),
        ({"hidden": (64, 0)}, "hidden"),
        ({"hidden": "64"}, "hidden"),
        ({"on_off": "no"}, "on_off"),
        ({"seed": 2**64}, "seed"),
        ({"inh_fraction": 0.3}, "interneurons=0"),  # no effect with interneurons and ON/OFF
        ({"inh_fraction": 1.5, "interneurons": 0}, "inh_fraction"),
    ],
)
def test_biomlp_refuses_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        BioMLP(**kwargs)


def test_biomlp_takes_an_int_as_one_hidden_layer():
    net = BioMLP(in_features=8, hidden=16, out_features=3, interneurons=0)
    assert [m.out_features for m in net.modules() if isinstance(m, nn.Linear)] == [16, 3]


# ------------------------------------------------------------------ BioRule
def test_biorule_refuses_unknown_param_group_keys_and_huge_seeds():
    w = nn.Parameter(torch.ones(3, 2))
    rule = BioRule([w])
    with pytest.raises(ValueError, match="lrr"):
        rule.add_param_group({"params": [nn.Parameter(torch.ones(2, 2))], "lrr": 0.1})
    with pytest.raises(ValueError, match="seed"):
        BioRule([w], seed=2**64)
    BioRule([w], seed=2**63 - 1)  # the largest seed torch takes


def test_group_keys_are_biorule_options():
    rule = BioRule([nn.Parameter(torch.ones(2, 2))])
    assert set(rule.defaults) == set(GROUP_KEYS)


# ------------------------------------------------------------------ BioPlastic
def _trained_model() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    x = torch.randn(256, 8)
    y = (x[:, 0] + x[:, 1] > 0).long()
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 2))
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(100):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model, x, y


def _accuracy(model, x, y) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def test_bioplastic_keeps_a_pretrained_model_and_its_accuracy():
    avalanche = pytest.importorskip("strategies.avalanche")
    model, x, y = _trained_model()
    acc = _accuracy(model, x, y)
    assert acc > 0.9
    with pytest.warns(UserWarning, match="removed .* weights"):
        avalanche.BioPlastic(model=model, evaluator=None, device="cpu")
    assert _accuracy(model, x, y) > acc - 0.15  # minority entries removed, magnitudes kept
    assert hasattr(model[0], "dale_sign")
    for layer in (model[0], model[2]):  # no weight against its presynaptic type
        assert bool((layer.weight * layer.dale_sign >= 0).all())


@pytest.mark.parametrize(
    "bad",
    [
        {"criterion": 5},
        {"plugins": [5]},
        {"dalify_kwargs": {"gain": math.nan}},
        {"rule_kwargs": {"lrr": 0.1}},
        {"train_epochs": 0},
        {"dalify_init": "wipe"},
    ],
)
def test_bioplastic_that_raises_leaves_the_model_untouched(bad):
    avalanche = pytest.importorskip("strategies.avalanche")
    model, _, _ = _trained_model()
    before = _snapshot(model)
    with pytest.raises((ValueError, TypeError)):
        avalanche.BioPlastic(model=model, evaluator=None, device="cpu", **bad)
    assert _unchanged(model, before)
    assert not hasattr(model[0], "dale_sign")


def test_bioplastic_reinitialises_a_fresh_model_as_before():
    avalanche = pytest.importorskip("strategies.avalanche")
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    reference = dalify(nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2)))
    avalanche.BioPlastic(model=model, evaluator=None, device="cpu")
    assert torch.equal(model[0].weight, reference[0].weight)
