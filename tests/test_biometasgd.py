"""BioMetaSGD (a learned bio rate per synapse) and the outer-optimizer sign check of BioMAML."""

import warnings

import pytest
import torch
from torch import nn

pytest.importorskip("learn2learn")

from bioplastic import dalify, make_optimizer  # noqa: E402
from bioplastic.experiments.metatrain import MAML_DEFAULTS, make_maml  # noqa: E402
from strategies.fewshot import BioMAML, BioMetaSGD  # noqa: E402


def _net():
    torch.manual_seed(0)
    return dalify(nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)), connectivity=0.7)


def _task(seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(6, 6, generator=g), torch.randint(0, 3, (6,), generator=g),
            torch.randn(9, 6, generator=g), torch.randint(0, 3, (9,), generator=g))  # fmt: skip


def _query_loss(meta, task):
    xs, ys, xq, yq = task
    learner = meta.clone()
    learner.adapt(nn.functional.cross_entropy(learner(xs), ys))
    return nn.functional.cross_entropy(learner(xq), yq), learner


def test_rates_start_at_lr_and_match_biomaml_there():
    net = _net()
    meta = BioMetaSGD(net, lr=0.8, other_lr=0.3)
    assert [tuple(r.shape) for r in meta.lrs] == [tuple(p.shape) for p in net.parameters()]
    assert all(float(r.detach().min()) == float(r.detach().max()) for r in meta.lrs)
    assert float(meta.lrs[0][0, 0]) == pytest.approx(0.8)
    assert float(meta.lrs[1][0]) == pytest.approx(0.3)
    task = _task()
    loss, _ = _query_loss(meta, task)
    reference, _ = _query_loss(BioMAML(net, lr=0.8, other_lr=0.3), task)
    torch.testing.assert_close(loss, reference)


def test_rates_are_meta_learned_and_signs_survive():
    net = _net()
    signs = [torch.sign(p).clone() for p in net.parameters() if p.dim() >= 2]
    meta = BioMetaSGD(net, lr=2.0, other_lr=0.3)
    outer = make_optimizer("bio", meta.param_groups(), warmup=0, seed=0)
    rates_before = [r.detach().clone() for r in meta.lrs]
    for step in range(3):
        loss, learner = _query_loss(meta, _task(seed=step))
        adapted = [p for p in learner.parameters() if p.dim() >= 2]
        assert all(torch.equal(torch.sign(a), s) for a, s in zip(adapted, signs, strict=True))
        outer.zero_grad()
        loss.backward()
        assert float(meta.lrs[0].grad.abs().sum()) > 0  # the rates get meta-gradients
        outer.step()
    assert any(not torch.equal(r, b) for r, b in zip(meta.lrs, rates_before, strict=True))
    weights = [p for p in net.parameters() if p.dim() >= 2]
    for s, w in zip(signs, weights, strict=True):  # the bio outer step keeps Dale's law
        assert torch.all((torch.sign(w) == s) | (w == 0))
    # the rates are an additive (non-synapse) group: never Dale-typed or eliminated
    assert outer.param_groups[1]["synapse"] is False


def test_make_maml_builds_both_meta_sgds():
    learner, outer = make_maml(_net(), "bio", meta_sgd=True)
    assert isinstance(learner, BioMetaSGD) and len(outer.param_groups) == 2
    import learn2learn as l2l

    learner, _ = make_maml(nn.Linear(6, 3), "adam", meta_sgd=True)
    assert isinstance(learner, l2l.algorithms.MetaSGD)


def test_make_maml_passes_inner_options_to_the_bio_learners_and_refuses_others():
    learner, _ = make_maml(_net(), "bio", inner_lr=100.0,
                           inner_options={"normalize": False, "max_step": 0.3})  # fmt: skip
    assert (learner.lr, learner.normalize, learner.max_step) == (100.0, False, 0.3)
    learner, _ = make_maml(_net(), "bio", meta_sgd=True, inner_options={"normalize": False})
    assert isinstance(learner, BioMetaSGD) and learner.normalize is False
    assert make_maml(_net(), "bio")[0].normalize == "model"  # BioMAML's default
    with pytest.raises(ValueError, match="unknown inner options \\['nosie'\\]"):
        make_maml(_net(), "bio", inner_options={"nosie": 0.1})
    with pytest.raises(ValueError, match="apply to the rules bio and eg, not 'adam'"):
        make_maml(nn.Linear(6, 3), "adam", inner_options={"normalize": False})


def test_clone_warns_once_when_the_outer_optimizer_flips_signs():
    net = _net()
    meta = BioMAML(net, lr=1.0)
    outer = torch.optim.Adam(meta.parameters(), lr=0.5)  # additive: crosses zero
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss, _ = _query_loss(meta, _task())  # the first clone only records the signs
    loss.backward()
    outer.step()
    with pytest.warns(RuntimeWarning, match="changed sign.*not sign-preserving"):
        _query_loss(meta, _task())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _query_loss(meta, _task())  # once


def test_no_warning_with_the_bio_outer_optimizer():
    meta = BioMAML(_net(), lr=1.0)
    outer = make_optimizer("bio", meta.parameters(), warmup=0, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for step in range(3):
            loss, _ = _query_loss(meta, _task(seed=step))
            outer.zero_grad()
            loss.backward()
            outer.step()


def test_meta_train_tasks_runs_learn2learns_loop_reproducibly():
    import math

    from bioplastic.data import load_digits_arrays
    from bioplastic.experiments.metatrain import meta_train_tasks
    from bioplastic.probes import weight_report
    from strategies.fewshot.tasksets import make_taskset

    x, y, _, _ = (torch.as_tensor(a) for a in load_digits_arrays())
    keep = y < 5
    taskset = make_taskset(x[keep], y[keep], ways=5, shots=1, queries=3)

    def run() -> tuple[list[float], nn.Module]:
        net = dalify(nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 5)), seed=0)
        meta, outer = make_maml(net, "bio")
        return meta_train_tasks(meta, outer, taskset, shots=1, iterations=3, meta_batch=2), net

    (losses, net), (again, _) = run(), run()
    assert len(losses) == 3 and all(math.isfinite(v) and v > 0 for v in losses)
    assert losses == again  # the seeded task draws make the loop reproducible
    assert all(r["dale_violations"] == 0 for r in weight_report(net).values())
    with pytest.raises(ValueError, match="meta_batch"):
        meta_train_tasks(*make_maml(net, "bio"), taskset, shots=1, iterations=1, meta_batch=0)


def _adapted(meta, loss_scale=1.0, task=None):
    xs, ys, _, _ = task or _task()
    learner = meta.clone()
    learner.adapt(loss_scale * nn.functional.cross_entropy(learner(xs), ys))
    return [p.detach() for p in learner.parameters()]


def test_model_normalisation_divides_every_synapse_gradient_by_one_rms():
    net = _net()
    meta = BioMAML(net, lr=0.3, other_lr=0.2, normalize="model", max_step=None)
    xs, ys, _, _ = _task()
    grads = torch.autograd.grad(nn.functional.cross_entropy(net(xs), ys), list(net.parameters()))
    synapse = [g for p, g in zip(net.parameters(), grads, strict=True) if p.dim() >= 2]
    rms = torch.sqrt(
        sum((g.double() ** 2).sum() for g in synapse) / sum(g.numel() for g in synapse)
    )
    for p, g, new in zip(net.parameters(), grads, _adapted(meta), strict=True):
        if p.dim() >= 2:  # w * exp(-lr * n^-0.5 * sign(w) * g / rms)
            step = -0.3 * p.shape[1] ** -0.5 * torch.sign(p) * g / rms.float()
            torch.testing.assert_close(new, p.detach() * torch.exp(step))
        else:
            torch.testing.assert_close(new, p.detach() - 0.2 * g)


@pytest.mark.parametrize("cls", [BioMAML, BioMetaSGD])
def test_model_normalised_steps_ignore_the_loss_scale_and_keep_relative_sizes(cls):
    net = _net()
    model = cls(net, lr=0.3, normalize="model", other_lr=0.0)
    row = cls(net, lr=0.3, normalize=True, other_lr=0.0)
    a, b = _adapted(model), _adapted(model, loss_scale=100.0)
    for x, y in zip(a, b, strict=True):  # free of the loss scale, as the per-unit one
        torch.testing.assert_close(x, y)
    raw = cls(net, lr=0.3, normalize=False, other_lr=0.0)
    assert not torch.allclose(_adapted(raw)[0], _adapted(raw, loss_scale=100.0)[0])
    # the model-wide scale keeps how much larger one unit's gradient is than another's: each
    # unit's RMS log-step is proportional to its RMS gradient (the per-unit one equalises them)
    w = net[0].weight.detach()
    xs, ys, _, _ = _task()
    g = torch.autograd.grad(nn.functional.cross_entropy(net(xs), ys), net[0].weight)[0]

    def rms(t):
        return t.where(w != 0, torch.nan).pow(2).nanmean(1).sqrt()

    ratios = [rms(torch.log(new[0] / w)) / rms(g) for new in (_adapted(model), _adapted(row))]
    torch.testing.assert_close(ratios[0], ratios[0].mean().expand(8))
    assert ratios[1].std() / ratios[1].mean() > 0.2


@pytest.mark.parametrize("bad", ["row", "tensor", 1, None])
def test_an_unknown_normalisation_is_refused(bad):
    with pytest.raises(ValueError, match="normalize must be True, False or 'model'"):
        BioMAML(_net(), lr=0.3, normalize=bad)


def test_model_normalisation_keeps_other_lr_when_no_synapse_has_a_gradient():
    net = _net()
    for p in net.parameters():
        p.requires_grad_(p.dim() < 2)  # only the biases adapt
    meta = BioMAML(net, lr=0.3, other_lr=0.4, allow_nograd=True)
    xs, ys, _, _ = _task()
    learner = meta.clone()
    loss = nn.functional.cross_entropy(learner(xs), ys)
    grads = torch.autograd.grad(loss, [p for p in learner.parameters() if p.requires_grad])
    learner.adapt(nn.functional.cross_entropy(learner(xs), ys))
    biases = [p for p in net.parameters() if p.dim() < 2]
    adapted = [p for p in learner.parameters() if p.dim() < 2]
    for old, new, g in zip(biases, adapted, grads, strict=True):
        torch.testing.assert_close(new.detach(), old.detach() - 0.4 * g)


def test_the_l2l_benchmarks_conv_nets_share_an_architecture_and_bios_is_dale_typed():
    from conftest import load_benchmark

    import bioplastic

    bench = load_benchmark("fewshot_l2l")
    bio, plain = bench._model(0, True, "conv"), bench._model(0, False, "conv")
    shapes = [tuple(p.shape) for p in bio.parameters()]
    assert shapes == [tuple(p.shape) for p in plain.parameters()]
    assert torch.equal(bio[1].dale_sign, bioplastic.on_off_sign(1))  # ON / OFF afferents
    assert not hasattr(plain[1], "dale_sign")
    x = torch.rand(3, 1, 28, 28)
    assert bio(x).shape == plain(x).shape == (3, bench.WAYS)
    for layer in [m for m in bio.modules() if isinstance(m, nn.Conv2d | nn.Linear)]:
        sign = layer.dale_sign.reshape(1, -1, *[1] * (layer.weight.dim() - 2))
        assert torch.all(layer.weight * sign >= 0)  # every synapse carries its input's sign
    assert bench._data("test", "conv")[0].shape[1:] == (1, 28, 28)


@pytest.mark.parametrize("meta_sgd", [False, True])
def test_an_outer_bias_rate_of_zero_leaves_biases_to_the_inner_loop(meta_sgd):
    meta, outer = make_maml(_net(), "bio", meta_sgd=meta_sgd, outer_kwargs={"other_lr": 0.0})
    biases = {n: p.detach().clone() for n, p in meta.module.named_parameters() if p.dim() < 2}
    weights = {n: p.detach().clone() for n, p in meta.module.named_parameters() if p.dim() >= 2}
    rates = [r.detach().clone() for r in meta.lrs] if meta_sgd else []
    for step in range(3):
        loss, learner = _query_loss(meta, _task(seed=step))
        adapted = dict(learner.module.named_parameters())
        assert any(not torch.equal(adapted[n], b) for n, b in biases.items())  # inner: adapted
        outer.zero_grad()
        loss.backward()
        outer.step()
    for name, p in meta.module.named_parameters():
        before = biases.get(name, weights.get(name))
        assert torch.equal(p.detach(), before) == (name in biases), name
    if meta_sgd:  # the learned rates keep their own step
        assert all(not torch.equal(r.detach(), r0) for r, r0 in zip(meta.lrs, rates, strict=True))


def test_an_outer_sgd_bias_step_leaves_the_learned_rates_on_adam():
    meta, outer = make_maml(_net(), "bio", meta_sgd=True,
                            outer_kwargs={"other": "sgd", "other_lr": 0.01})  # fmt: skip
    biases, rates = outer.param_groups
    assert (biases["other"], biases["other_lr"]) == ("sgd", 0.01)
    assert (rates["other"], rates["other_lr"]) == ("adam", MAML_DEFAULTS["bio"]["rates_lr"])
    loss, _ = _query_loss(meta, _task(seed=0))
    outer.zero_grad()
    loss.backward()
    outer.step()
    assert all("exp_avg" in outer.state[r] for r in meta.lrs)  # Adam's state: Adam stepped them


def test_outer_step_options_for_the_biases_leave_the_learned_rates_at_bio_rules_defaults():
    _, outer = make_maml(_net(), "bio", meta_sgd=True,
                         outer_kwargs={"weight_decay": 0.1, "betas": (0.5, 0.9)})  # fmt: skip
    biases, rates = outer.param_groups
    assert (biases["weight_decay"], biases["betas"]) == (0.1, (0.5, 0.9))
    assert (rates["weight_decay"], rates["betas"]) == (0.0, (0.9, 0.999))
