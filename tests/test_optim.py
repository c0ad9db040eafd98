import io
import math
import os
import subprocess
import sys
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import bioplastic as bp
from bioplastic import functional as F
from bioplastic.baselines import EnforcedAdam, make_optimizer
from bioplastic.optim import BioRule

# Tests built on _mlp/_data run on this device (benchmarks/gpu_check.sh sets cuda).
DEVICE = os.environ.get("BIOPLASTIC_TEST_DEVICE", "cpu")


def _mlp(seed=0, sizes=(12, 16, 5)):
    torch.manual_seed(seed)
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=False):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return bp.dalify(nn.Sequential(*layers[:-1]), seed=seed).to(DEVICE)


def _data(n=64, d=12, k=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    teacher = torch.randn(d, k, generator=torch.Generator().manual_seed(100))
    return x.to(DEVICE), (x @ teacher).argmax(1).to(DEVICE)  # a learnable task


def _train(model, opt, steps, seed=0):
    x, y = _data(seed=seed)
    for i in range(steps):
        idx = slice((i * 16) % 64, (i * 16) % 64 + 16)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()


finite_floats = st.floats(-1e6, 1e6, allow_nan=False, width=32)


@settings(max_examples=60, deadline=None)
@given(
    grads=st.lists(finite_floats, min_size=24, max_size=24),
    lr=st.floats(1e-3, 100.0),
    noise=st.sampled_from([0.0, 0.5]),
    momentum=st.sampled_from([0.0, 0.9]),
    foreach=st.booleans(),
    grow=st.booleans(),
)
def test_no_sign_flip_and_zeros_stay_zero(grads, lr, noise, momentum, foreach, grow):
    w = torch.tensor([[0.5, -0.2, 0.0, 0.3], [-0.1, 0.0, 0.7, -0.4]] * 3)
    w = nn.Parameter(w * torch.tensor([1.0, -1.0, 1.0, -1.0]).abs())
    sign0 = torch.sign(w.detach()).clone()
    unit_sign = torch.tensor([1.0, -1.0, 1.0, -1.0])
    # make the weight Dale-consistent with unit_sign and give it absent synapses
    with torch.no_grad():
        w.copy_(w.abs() * unit_sign)
        w[0, 2] = 0.0
        w[3, 1] = 0.0
    w.dale_sign = unit_sign
    sign0 = torch.sign(w.detach()).clone()
    opt = BioRule(
        [w], lr=lr, noise=noise, momentum=momentum, foreach=foreach, seed=1,
        grow_every=1 if grow else 0, grow_fraction=0.5, grow_mode="random",
    )  # fmt: skip
    g = torch.tensor(grads).reshape(6, 4)
    for _ in range(3):
        w.grad = g.clone()
        opt.step()
        assert torch.isfinite(w).all()
        present = w.detach() != 0
        # present synapses keep the sign of their presynaptic unit
        assert torch.equal(torch.sign(w.detach())[present], unit_sign.expand_as(w)[present])
        if not grow:
            assert not present[sign0 == 0].any()
        # no present synapse ever has the opposite sign it started with
        assert not ((torch.sign(w.detach()) * sign0) < 0).any()


def test_foreach_and_single_tensor_paths_agree():
    results = []
    for foreach in (True, False):
        model = _mlp()
        opt = BioRule(model.parameters(), foreach=foreach, seed=3, momentum=0.5,
                      grow_every=2, grow_fraction=0.1)  # fmt: skip
        _train(model, opt, 6)
        results.append([p.detach().clone() for p in model.parameters()])
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_elimination_count_matches_threshold_absolute():
    w = nn.Parameter(torch.tensor([[1.0, 0.05, -0.02, 0.5], [0.009, -1.0, 0.3, -0.001]]))
    opt = BioRule([w], lr=1e-6, noise=0.0, homeostasis=False, prune_threshold=0.06,
                  prune_mode="absolute", max_step=None)  # fmt: skip
    w.grad = torch.zeros_like(w)
    opt.step()
    assert opt.structural_counts()["eliminated"] == 4
    assert (w.detach() == 0).sum() == 4
    assert torch.equal(w.detach() != 0, torch.tensor([[1, 0, 0, 1], [0, 1, 1, 0]]).bool())


def test_elimination_relative_to_initial_median():
    # present magnitudes 0.25, 1..6: median 3 (zeros are ignored) -> threshold 0.3
    w = nn.Parameter(torch.tensor([[1.0, 2.0, 3.0, 0.25], [4.0, -5.0, 0.0, 6.0]]))
    opt = BioRule([w], lr=1e-6, noise=0.0, homeostasis=False, prune_threshold=0.1,
                  max_step=None, prune_mode="relative")  # fmt: skip
    w.grad = torch.zeros_like(w)
    opt.step()
    assert opt.state[w]["ref_magnitude"] == pytest.approx(3.0)
    assert (w.detach() == 0).sum() == 2
    assert w[0, 3] == 0


@pytest.mark.parametrize("fraction,max_conn", [(0.5, 1.0), (1.0, 0.75), (0.1, 1.0)])
def test_growth_count_matches_configuration(fraction, max_conn):
    torch.manual_seed(0)
    w = nn.Parameter(torch.rand(10, 20) + 0.5)
    mask = torch.rand(10, 20) < 0.5  # about half absent
    with torch.no_grad():
        w.mul_(mask)
    n_absent = int((w == 0).sum())
    n_present = 200 - n_absent
    opt = BioRule([w], lr=1e-6, noise=0.0, homeostasis=False, prune_threshold=0.0,
                  grow_every=1, grow_fraction=fraction, grow_mode="random",
                  max_connectivity=max_conn, seed=0)  # fmt: skip
    w.grad = torch.zeros_like(w)
    opt.step()
    expected = min(round(fraction * n_absent), math.floor(max_conn * 200) - n_present)
    assert opt.structural_counts()["grown"] == expected
    assert int((w.detach() != 0).sum()) == n_present + expected
    assert (w.detach() != 0).float().mean() <= max_conn + 1e-9


def test_gradient_growth_only_where_it_lowers_the_loss():
    w = nn.Parameter(torch.zeros(4, 6))
    with torch.no_grad():
        w[:, 0] = 1.0
    w.dale_sign = torch.tensor([1.0, 1.0, 1.0, -1.0, -1.0, -1.0])
    opt = BioRule([w], lr=1e-6, noise=0.0, homeostasis=False, prune_threshold=0.0,
                  grow_every=1, grow_fraction=1.0, grow_mode="gradient")  # fmt: skip
    g = torch.zeros(4, 6)
    g[0, 1] = -2.0  # excitatory: s*g < 0 -> candidate
    g[1, 2] = 3.0  # excitatory: s*g > 0 -> not a candidate
    g[2, 4] = 1.0  # inhibitory: s*g = -1 < 0 -> candidate, and it grows negative
    w.grad = g
    opt.step()
    grown = (w.detach() != 0) & (torch.arange(6) != 0)
    assert grown.sum() == 2
    assert w[0, 1] > 0 and w[2, 4] < 0 and w[1, 2] == 0


def _snapshot_run(opt_kwargs, steps_a, steps_b, resume):
    model = _mlp(seed=1)
    opt = BioRule(model.parameters(), seed=7, **opt_kwargs)
    _train(model, opt, steps_a, seed=2)
    opt.consolidate(fraction=0.3, factor=0.5)
    if resume:
        buf = io.BytesIO()
        torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buf)
        buf.seek(0)
        saved = torch.load(buf, weights_only=True)
        model = _mlp(seed=99)  # different init: everything must come from the checkpoint
        model.load_state_dict(saved["model"])
        opt = BioRule(model.parameters(), seed=12345, **opt_kwargs)
        opt.load_state_dict(saved["opt"])
    _train(model, opt, steps_b, seed=3)
    return [p.detach().clone() for p in model.parameters()], opt.structural_counts()


@pytest.mark.parametrize("foreach", [True, False])
def test_state_dict_round_trip_is_bit_identical(foreach):
    kwargs = dict(noise=0.1, momentum=0.9, grow_every=2, grow_fraction=0.05,
                  track_importance=True, foreach=foreach)  # fmt: skip
    straight, c1 = _snapshot_run(kwargs, 5, 6, resume=False)
    resumed, c2 = _snapshot_run(kwargs, 5, 6, resume=True)
    for a, b in zip(straight, resumed, strict=True):
        assert torch.equal(a, b)
    assert c1 == c2


def test_state_is_created_lazily_after_a_wipe():
    from collections import defaultdict

    model = _mlp()
    opt = BioRule(model.parameters())
    opt.state = defaultdict(dict)  # what Avalanche's reset_optimizer does
    _train(model, opt, 2)
    w = model[0].weight
    assert opt.state[w]["step"] == 2
    assert opt.state[w]["unit_sign"].dtype == torch.int8


@pytest.mark.parametrize(
    "kwargs,name",
    [
        (dict(lr=0.0), "lr"),
        (dict(lr=float("nan")), "lr"),
        (dict(momentum=1.0), "momentum"),
        (dict(decay=-1.0), "decay"),
        (dict(noise=-0.1), "noise"),
        (dict(noise_halflife=-1.0), "noise_halflife"),
        (dict(max_step=0.0), "max_step"),
        (dict(prune_threshold=-0.1), "prune_threshold"),
        (dict(prune_mode="median"), "prune_mode"),
        (dict(grow_every=-1), "grow_every"),
        (dict(grow_every=1.5), "grow_every"),
        (dict(grow_fraction=1.5), "grow_fraction"),
        (dict(grow_mode="best"), "grow_mode"),
        (dict(max_connectivity=0.0), "max_connectivity"),
        (dict(other="rmsprop"), "other"),
        (dict(betas=(0.9, 1.0)), "betas"),
        (dict(eps=0.0), "eps"),
        (dict(homeostasis="yes"), "homeostasis"),
        (dict(seed=-1), "seed"),
    ],
)
def test_bad_hyper_parameters_name_the_parameter(kwargs, name):
    model = _mlp()
    with pytest.raises(ValueError, match=name.replace("[", r"\[")):
        BioRule(model.parameters(), **kwargs)


def test_bad_hyper_parameter_in_param_group():
    model = _mlp()
    with pytest.raises(ValueError, match="grow_fraction"):
        BioRule([{"params": model.parameters(), "grow_fraction": -0.5}])


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_gradient_never_corrupts_a_weight(bad):
    model = _mlp()
    opt = BioRule(model.parameters())
    before = [p.detach().clone() for p in model.parameters()]
    x, y = _data()
    nn.functional.cross_entropy(model(x), y).backward()
    model[0].weight.grad[0, 0] = bad
    with pytest.warns(RuntimeWarning, match="non-finite"):
        opt.step()
    assert torch.equal(model[0].weight.detach(), before[0])  # skipped
    assert not torch.equal(model[2].weight.detach(), before[2])  # others still updated
    assert opt.nonfinite_skips == 1
    model[0].weight.grad[0, 1] = bad
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once only
        opt.step()
    assert opt.nonfinite_skips == 2
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_huge_finite_gradient_is_not_mistaken_for_non_finite():
    w = nn.Parameter(torch.ones(3, 3))
    opt = BioRule([w], homeostasis=False, prune_threshold=0.0, noise=0.0, max_step=0.5,
                  normalize=False)  # fmt: skip
    w.grad = torch.full((3, 3), 3e38)
    opt.step()
    assert opt.nonfinite_skips == 0
    torch.testing.assert_close(w.detach(), torch.full((3, 3), math.exp(-0.5)))


@pytest.mark.parametrize("wd", [0.0, 0.01])
def test_eg_mode_is_textbook_exponentiated_gradient(wd):
    torch.manual_seed(0)
    w0 = torch.randn(5, 7)
    w0[0, 0] = 0.0
    w = nn.Parameter(w0.clone())
    lr = 0.3
    opt = make_optimizer("eg", [w], lr=lr, weight_decay=wd)
    expected = w0.clone()
    for _ in range(4):
        g = torch.randn(5, 7)
        w.grad = g.clone()
        opt.step()
        s = torch.sign(expected)
        expected = expected * torch.exp(-lr * s * (g + wd * s))
    torch.testing.assert_close(w.detach(), expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("dale", [True, False])
def test_homeostasis_keeps_excitatory_and_inhibitory_budgets(dale):
    model = _mlp()
    w = model[0].weight
    if not dale:  # mixed signs within presynaptic units: the element-wise path
        with torch.no_grad():
            w[::2, :] *= -1
    exc0, inh0 = F.row_budgets(w.detach())
    opt = BioRule(model.parameters(), prune_threshold=0.0, max_step=0.05, noise=0.0, momentum=0.0,
                  budget_rate=0.0, cost=0.0)  # fmt: skip
    assert opt.param_groups[0]["homeostasis"]
    _train(model, opt, 5)
    exc, inh = F.row_budgets(w.detach())
    # scaling happens inside each step: the sums are off by at most that step's change
    torch.testing.assert_close(exc, exc0, rtol=0.06, atol=0)
    assert not torch.allclose(w.detach().abs().sum(1), exc0 + inh0, rtol=1e-4)  # it did learn
    w.grad = torch.zeros_like(w)
    opt.step()  # a step without plastic change restores the budgets exactly
    exc, inh = F.row_budgets(w.detach())
    torch.testing.assert_close(exc, exc0, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(inh, inh0, rtol=1e-5, atol=1e-7)
    assert opt.state[w]["dale"] is dale


def test_consolidation_lowers_plasticity_and_protects():
    w = nn.Parameter(torch.tensor([[1.0, 2.0, 3.0, 4.0]]))
    opt = BioRule([w], prune_threshold=10.0, prune_mode="absolute", homeostasis=False,
                  noise=0.0, lr=1e-6)  # fmt: skip
    counts = opt.consolidate(fraction=0.5, factor=0.25)
    assert counts == {"consolidated": 2, "consolidated_total": 2}
    p = opt.plasticity(w)
    assert torch.equal(p, torch.tensor([[1.0, 1.0, 0.25, 0.25]]))
    w.grad = torch.zeros_like(w)
    opt.step()  # everything is below 10.0, but the consolidated synapses are protected
    assert torch.equal(w.detach() != 0, torch.tensor([[False, False, True, True]]))


def test_consolidated_synapses_change_less():
    w = nn.Parameter(torch.ones(1, 4))
    opt = BioRule([w], homeostasis=False, prune_threshold=0.0, noise=0.0, lr=0.1,
                  fan_in_exponent=0.0, warmup=0, cost=0.0, normalize_by="tensor")  # fmt: skip
    with torch.no_grad():
        w[0, 3] = 2.0
    opt.consolidate(fraction=0.25, factor=0.1)
    w.grad = torch.ones(1, 4)
    opt.step()
    torch.testing.assert_close(w[0, 0].detach(), torch.tensor(math.exp(-0.1)))
    torch.testing.assert_close(w[0, 3].detach(), torch.tensor(2 * math.exp(-0.01)))


def test_non_synapse_parameters_follow_adam():
    torch.manual_seed(0)
    b1 = nn.Parameter(torch.randn(6))
    b2 = nn.Parameter(b1.detach().clone())
    ours = BioRule([b1], other_lr=0.01, weight_decay=0.1)
    ref = torch.optim.Adam([b2], lr=0.01, weight_decay=0.1)
    for _ in range(5):
        g = torch.randn(6)
        b1.grad, b2.grad = g.clone(), g.clone()
        ours.step()
        ref.step()
    torch.testing.assert_close(b1.detach(), b2.detach())


def test_non_synapse_parameters_can_use_sgd():
    b = nn.Parameter(torch.ones(3))
    opt = BioRule([b], other="sgd", other_lr=0.5)
    b.grad = torch.ones(3)
    opt.step()
    torch.testing.assert_close(b.detach(), torch.full((3,), 0.5))


def test_synapse_flag_per_group():
    w = nn.Parameter(torch.ones(2, 2))
    opt = BioRule([{"params": [w], "synapse": False}], other="sgd", other_lr=2.0)
    w.grad = torch.ones(2, 2)
    opt.step()
    assert (w.detach() < 0).all()  # additive update crossed zero: not treated as synapses


def test_closure_is_called_and_returned():
    model = _mlp()
    opt = BioRule(model.parameters())
    x, y = _data()

    def closure():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    assert torch.isfinite(opt.step(closure))


def test_enforced_adam_enforces_sign_and_sparsity():
    model = _mlp()
    sign0 = [torch.sign(m.weight.detach()) for m in model if isinstance(m, nn.Linear)]
    opt = EnforcedAdam(model.parameters(), lr=0.05, target_connectivity=0.3, prune_every=2,
                       prune_rate=0.5)  # fmt: skip
    _train(model, opt, 40)
    for m, s0 in zip([m for m in model if isinstance(m, nn.Linear)], sign0, strict=True):
        w = m.weight.detach()
        assert not ((torch.sign(w) * s0) < 0).any()
        assert (w != 0).float().mean() <= 0.3 + 1e-6
        assert bp.probes.dale_violations(m) == 0


def test_make_optimizer_names():
    model = _mlp()
    for name in bp.OPTIMIZER_NAMES:
        assert isinstance(make_optimizer(name, model.parameters()), torch.optim.Optimizer)
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
        make_optimizer("rmsprop", model.parameters())


@pytest.mark.parametrize("name", bp.OPTIMIZER_NAMES)
def test_make_optimizer_refuses_an_option_the_rule_does_not_take_listing_its_own(name):
    model = _mlp()
    with pytest.raises(ValueError, match=f"{name} takes no option nosie; its options: ") as info:
        make_optimizer(name, model.parameters(), nosie=0.1)
    assert "lr" in str(info.value).split("its options: ")[1].split(", ")
    assert "other_weight_decay" in bp.baselines.optimizer_options("eg")
    assert "weight_decay" in bp.baselines.optimizer_options("enforced")  # passed on to Adam
    make_optimizer("enforced", _mlp().parameters(), weight_decay=1e-4, amsgrad=True)
    assert "noise" not in bp.baselines.optimizer_options("adam")


def test_default_bio_learns_while_keeping_dale():
    torch.manual_seed(0)
    x, y = _data(n=256)
    model = _mlp()
    opt = make_optimizer("bio", model.parameters())
    signs = [m.dale_sign.clone() for m in model if isinstance(m, nn.Linear)]
    loss0 = nn.functional.cross_entropy(model(x), y).item()
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    assert nn.functional.cross_entropy(model(x), y).item() < 0.7 * loss0
    for m, s in zip([m for m in model if isinstance(m, nn.Linear)], signs, strict=True):
        assert bp.probes.dale_violations(m) == 0
        assert torch.equal(m.dale_sign, s)


def test_import_does_not_need_avalanche_or_learn2learn():
    code = (
        "import sys, bioplastic, bioplastic.data, bioplastic.probes, bioplastic.robustness; "
        "bad = [m for m in ('avalanche', 'learn2learn') if m in sys.modules]; "
        "sys.exit(1 if bad else 0)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_normalized_step_does_not_depend_on_the_loss_scale():
    finals = []
    for scale in (1.0, 1000.0):
        model = _mlp()
        opt = BioRule(model.parameters(), noise=0.0, seed=0)
        x, y = _data()
        for _ in range(3):
            opt.zero_grad()
            (scale * nn.functional.cross_entropy(model(x), y)).backward()
            opt.step()
        finals.append(model[0].weight.detach().clone())
    torch.testing.assert_close(finals[0], finals[1], rtol=1e-4, atol=1e-7)


def test_reused_noise_is_fresh_per_step_and_uncorrelated_across_synapses():
    n, reuse, steps = 4096, 8, 300
    gen = torch.Generator().manual_seed(0)
    offsets = torch.Generator().manual_seed(1)
    walks = torch.zeros(n)
    previous = None
    for _ in range(steps):
        step = torch.zeros(n)
        F.add_noise_(step, 1.0, gen, reuse=reuse, offset_generator=offsets)
        if previous is not None:  # fresh numbers every call
            assert abs(torch.corrcoef(torch.stack([step, previous]))[0, 1]) < 0.1
        previous = step
        walks += step
    # every entry does a unit-variance random walk ...
    assert walks.var().item() == pytest.approx(steps, rel=0.1)
    # ... independent of the entry one block (n / reuse) further on, which reads the same pool
    block = n // reuse
    corr = torch.corrcoef(torch.stack([walks[:block], walks[block : 2 * block]]))[0, 1]
    assert abs(corr) < 0.15


def test_growth_without_a_fraction_warns_that_it_grows_nothing():
    w = torch.nn.Parameter(torch.rand(4, 6))
    with pytest.warns(UserWarning, match="grows nothing"):
        BioRule([w], grow_every=10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        BioRule([w], grow_every=10, grow_fraction=0.1)  # no warning when growth can happen
