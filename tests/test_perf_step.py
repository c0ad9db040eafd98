"""The fast and fused paths of BioRule's step (issue 12) against a plain implementation of the
rule's equations, the state memory per parameter, noise statistics and the group warm-up."""

import functools
import io

import pytest
import torch
from conftest import load_benchmark
from torch import nn

import bioplastic as bp
from bioplastic import _fast_step, _fused_step
from bioplastic.optim import BioRule

BETA, MU, COST, MAX_STEP, PRUNE, RATE, WARMUP, LR, EPS, SATURATION = (
    0.99,
    0.9,
    0.4,
    0.2,
    0.1,
    0.01,
    200,
    0.08,
    1e-8,
    30.0,
)  # fmt: skip  (BioRule's defaults, written out: the reference below must not read them)


def _reference_run(weights, signs, grads, steps):
    """Rule v2 (defaults, noise 0) written out per tensor, in float64 where it is cheap."""
    state = [None] * len(weights)
    for t in range(steps):
        for k, (w, s) in enumerate(zip(weights, signs, strict=True)):
            rows = w.view(w.shape[0], -1)
            g = grads[t][k].view(w.shape[0], -1)
            fan = rows.shape[1]
            e = (s.repeat_interleave(fan // len(s)) > 0).to(w.dtype)  # excitatory entries
            sign = 2 * e - 1
            mag = rows.abs()
            sums = torch.stack([(mag * e).sum(1), (mag * (1 - e)).sum(1)], 1)
            if state[k] is None:
                zeros = torch.zeros(rows.shape[0], dtype=torch.float64)
                state[k] = {"r": zeros, "buf": torch.zeros_like(rows), "b": sums.clone()}
            st = state[k]
            st["r"] = BETA * st["r"] + (1 - BETA) * (g.double() ** 2).mean(1)
            rhat = st["r"] / (1 - BETA ** (t + 1))
            c = (1 / torch.sqrt(rhat + 0.1 * rhat.mean() + EPS**2)).float()
            st["buf"] = MU * st["buf"] + c[:, None] * sign * g
            n = torch.stack([e.sum(), (1 - e).sum()]).clamp(min=1)
            mbar = torch.where(e > 0, (sums[:, 0] / n[0])[:, None], (sums[:, 1] / n[1])[:, None])
            metabolic = torch.where(mag > 0, COST * mbar / mag.clamp(min=1e-38), 0.0)
            lr = LR * min(1.0, (t + 1) / WARMUP) * fan**-0.5
            drive = st["buf"] + metabolic
            crowd = 1 + (mag / (SATURATION * mbar)) ** 2  # potentiation (drive < 0) saturates
            drive = torch.where(drive < 0, drive / crowd, drive)
            step = (-lr * drive).clamp(-MAX_STEP, MAX_STEP)
            st["b"] = st["b"] + RATE * (sums - st["b"])
            logs = torch.where(sums > 0, st["b"].log() - sums.log(), 0.0)
            step = step + torch.where(e > 0, logs[:, :1], logs[:, 1:])
            new = rows * torch.exp(step)
            mag = new.abs()
            present = (new != 0).to(w.dtype)
            mean = [
                ((mag * m).sum(1) / (present * m).sum(1).clamp(min=1))[:, None] for m in (e, 1 - e)
            ]
            new[mag <= PRUNE * torch.where(e > 0, mean[0], mean[1])] = 0.0
            w.view(w.shape[0], -1).copy_(new)


def _model():
    torch.manual_seed(0)
    layers = [nn.Conv2d(5, 6, 3, bias=False), nn.Flatten(), nn.Linear(96, 12, bias=False),
              nn.Linear(12, 5, bias=False)]  # fmt: skip
    model = bp.dalify(nn.Sequential(*layers), seed=0)
    with torch.no_grad():  # some weak synapses, below the elimination threshold
        for p in model.parameters():
            p.view(-1)[::7] *= 0.01
    return model


def _grads(model, steps):
    g = torch.Generator().manual_seed(1)
    return [
        [torch.randn(p.shape, generator=g) * 0.01 for p in model.parameters()] for _ in range(steps)
    ]


def _run(model, grads, steps, **kwargs):
    opt = BioRule(model.parameters(), seed=0, **kwargs)
    for t in range(steps):
        for p, g in zip(model.parameters(), grads[t], strict=True):
            p.grad = g.clone()
        opt.step()
    return [p.detach().clone() for p in model.parameters()], opt


@pytest.mark.parametrize("foreach,count_min", [(True, None), (True, 0), (False, None)])
def test_fast_and_reference_paths_equal_the_written_out_rule(foreach, count_min, monkeypatch):
    if count_min is not None:  # remember the counts of these small weights too
        monkeypatch.setattr(_fast_step, "COUNT_MIN_NUMEL", count_min)
    _check_against_the_written_out_rule(lambda grads, steps: _run(_model(), grads, steps,
                                                                  foreach=foreach))  # fmt: skip


def _check_against_the_written_out_rule(run) -> BioRule:
    """``run(grads, steps)`` (weights, optimizer) equals the written-out rule over 40 steps."""
    steps = 40
    model = _model()
    grads = _grads(model, steps)
    signs = [m.dale_sign for m in model if hasattr(m, "dale_sign")]
    expected = [p.detach().clone() for p in model.parameters()]
    _reference_run(expected, signs, grads, steps)
    got, opt = run(grads, steps)
    for a, b in zip(got, expected, strict=True):
        assert torch.equal(a != 0, b != 0)  # the same synapses eliminated
        torch.testing.assert_close(a, b, rtol=2e-5, atol=1e-8)
    assert any((a == 0).any() for a in got)  # elimination ran
    return opt


def test_fast_path_draws_the_reference_noise_stream():
    steps = 10
    grads = _grads(_model(), steps)
    kwargs = dict(noise=0.18, noise_halflife=0.0)
    fast, _ = _run(_model(), grads, steps, **kwargs)
    reference, _ = _run(_model(), grads, steps, foreach=False, **kwargs)
    for a, b in zip(fast, reference, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-8)


@functools.cache
def _compile_fails() -> str:
    """Why ``torch.compile`` cannot build a CPU kernel here ('' when it can)."""
    if not hasattr(torch, "compile"):
        return "torch.compile is not available"
    try:
        torch.compile(lambda x: x * 2.0 + 1.0, dynamic=True)(torch.ones(4))
    except Exception as error:  # no C++ compiler or inductor backend on this machine
        return f"torch.compile failed: {type(error).__name__}"
    return ""


@pytest.fixture
def compiled_path(monkeypatch):
    """Skip where torch.compile cannot work; compile even these small layers."""
    if _compile_fails():
        pytest.skip(_compile_fails())
    monkeypatch.setattr(_fused_step, "FUSED_MIN_NUMEL", 0)


def test_fused_path_equals_the_written_out_rule(compiled_path):
    opt = _check_against_the_written_out_rule(
        lambda grads, steps: _run(_model(), grads, steps, fused=True)
    )
    # every weight took the compiled path, which remembers the E/I sums it leaves
    for p in opt.param_groups[0]["params"]:
        sums, plan = opt._fused_sums[p][:2]
        torch.testing.assert_close(sums, plan.signed @ p.detach().view(len(p), -1).T)


def test_fused_path_draws_the_reference_noise_stream(compiled_path):
    steps = 10
    grads = _grads(_model(), steps)
    kwargs = dict(noise=0.18, noise_halflife=0.0)
    fused, _ = _run(_model(), grads, steps, fused=True, **kwargs)
    reference, _ = _run(_model(), grads, steps, foreach=False, **kwargs)
    for a, b in zip(fused, reference, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-8)


@pytest.mark.parametrize("noise", [0.0, 0.05])
def test_a_step_that_could_overflow_takes_the_eager_path(compiled_path, noise):
    """Magnitudes near the largest float: the compiled kernels do not make an overflowed
    weight finite, so such a step is taken on the eager fast path, which does, drawing the
    same noise (the compiled path's draw is undone)."""

    def huge():
        model = _model()
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(1e38)
        return model

    grads = _grads(huge(), 3)
    kwargs = dict(noise=noise, noise_halflife=0.0)
    fused, opt = _run(huge(), grads, 3, fused=True, **kwargs)
    eager, eager_opt = _run(huge(), grads, 3, **kwargs)
    assert len(opt._fused_sums) < len(fused)  # some weight took the eager path
    for a, b in zip(fused, eager, strict=True):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b, rtol=1e-4, atol=0.0)
    for device in ("cpu",):  # the generators end where the eager run's do
        state = opt._generator(torch.device(device)).get_state()
        assert torch.equal(state, eager_opt._generator(torch.device(device)).get_state())


def test_absent_synapses_of_plasticity_zero_stay_absent_without_emptying_their_row(
    compiled_path,
):
    """Consolidation factors whose product underflows to plasticity 0: an absent synapse's
    metabolic drive (infinite) times 0 must not turn its row's thresholds into NaN."""

    def run(**kwargs):
        torch.manual_seed(0)
        model = bp.dalify(nn.Sequential(nn.Linear(300, 300, bias=False)), seed=0)
        with torch.no_grad():
            model[0].weight.view(-1)[::7] *= 0.01  # weak synapses, eliminated soon
        opt = BioRule(model.parameters(), seed=0, warmup=0, protect_consolidated=False,
                      noise=0.1, noise_halflife=0.0, **kwargs)  # fmt: skip
        grads = _grads(model, 9)
        for t in range(9):
            if t in (3, 4):  # 1e-30 twice: 0 in float32
                opt.consolidate(fraction=0.9, factor=1e-30)
            model[0].weight.grad = grads[t][0].clone()
            opt.step()
        return model[0].weight.detach()

    fused, eager = run(fused=True), run()
    assert ((eager != 0).sum(1) > 0).all()  # no row emptied
    assert torch.equal(fused != 0, eager != 0)
    torch.testing.assert_close(fused, eager, rtol=1e-4, atol=1e-8)


def test_noise_per_synapse_is_white_with_the_set_variance():
    """log|w| of each synapse moves by noise * xi per step: mean 0, variance noise^2, no
    correlation between consecutive steps (checked over 200 steps x 4096 synapses)."""
    w = nn.Parameter(torch.ones(64, 64))
    opt = BioRule([w], noise=0.18, noise_halflife=0.0, cost=0.0, homeostasis=False,
                  prune_threshold=0.0, momentum=0.0, seed=3)  # fmt: skip
    logs = [w.detach().log().clone()]
    for _ in range(200):
        w.grad = torch.zeros_like(w)
        opt.step()
        logs.append(w.detach().log().clone())
    steps = torch.diff(torch.stack(logs), dim=0).reshape(200, -1)  # [step, synapse]
    assert abs(steps.mean().item()) < 0.002
    assert steps.var().item() == pytest.approx(0.18**2, rel=0.02)
    lag1 = ((steps[1:] * steps[:-1]).mean() / steps.var()).item()
    assert abs(lag1) < 0.01


def _bytes_per_param(opt, model):
    total = sum(
        v.numel() * v.element_size()
        for s in opt.state.values()
        for v in s.values()
        if torch.is_tensor(v)
    )
    return total / sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", ["mlp", "conv"])
def test_state_memory_per_parameter(name):
    torch.manual_seed(0)
    if name == "mlp":
        layers = [nn.Linear(784, 1000), nn.ReLU(), nn.Linear(1000, 1000), nn.ReLU()]
        model = bp.dalify(nn.Sequential(*layers, nn.Linear(1000, 10)))
        x = torch.rand(8, 784)
    else:
        model = bp.BioConvNet(1, 10, channels=(32, 64), on_off=True)
        x = torch.rand(8, 1, 28, 28)
    opt = BioRule(model.parameters())
    nn.functional.cross_entropy(model(x), torch.zeros(8, dtype=torch.long)).backward()
    opt.step()
    assert _bytes_per_param(opt, model) <= 4.1
    opt.consolidate(fraction=0.3, factor=0.1)
    opt.consolidate(fraction=0.3, factor=0.5)
    opt.step()
    assert _bytes_per_param(opt, model) <= 6.1


def test_compact_plasticity_is_exact_and_round_trips():
    w = nn.Parameter(torch.arange(1.0, 13.0).reshape(3, 4))
    opt = BioRule([w])
    opt.consolidate(fraction=0.5, factor=0.1)
    opt.consolidate(fraction=0.25, factor=0.3)
    expected = torch.ones(12)
    expected[6:] *= 0.1  # float32 products, in the order consolidation applies them
    expected[9:] *= 0.3
    assert torch.equal(opt.plasticity(w).reshape(-1), expected)
    saved = opt.state_dict()
    assert torch.equal(saved["state"][0]["plasticity"].reshape(-1), expected)  # floats on disk
    buf = io.BytesIO()
    torch.save(saved, buf)
    buf.seek(0)
    other = BioRule([w])
    other.load_state_dict(torch.load(buf, weights_only=True))
    assert torch.equal(other.plasticity(w).reshape(-1), expected)
    assert other.state[w]["plasticity_code"].dtype == torch.uint8
    assert other.consolidated_count() == 6


def test_warmup_counts_group_steps_so_a_new_parameter_gets_the_full_rate():
    torch.manual_seed(0)
    old = nn.Parameter(torch.rand(4, 6) + 0.1)
    head = nn.Parameter(torch.rand(3, 6) + 0.1)
    twin = nn.Parameter(head.detach().clone())
    opt = BioRule([old], seed=0)
    for _ in range(300):
        old.grad = torch.randn(4, 6)
        opt.step()
    opt.param_groups[0]["params"].append(head)  # a new task head, mid-run
    fresh = BioRule([twin], warmup=0, seed=0)
    g = torch.randn(3, 6)
    head.grad, twin.grad, old.grad = g.clone(), g.clone(), torch.randn(4, 6)
    start = head.detach().clone()
    opt.step()
    fresh.step()
    torch.testing.assert_close(head.detach(), twin.detach())
    assert not torch.equal(head.detach(), start)
    # the count travels with the state dict; an older state dict derives it from the steps
    state = opt.state_dict()
    assert state["bio"]["group_steps"] == [301]
    del state["bio"]["group_steps"]
    again = BioRule([old, head])
    again.load_state_dict(state)
    assert again._group_steps == [301]


def _eliminate_with(w, plan, known):
    got = w.clone()
    (after,) = _fast_step.multi_eliminate_(
        [got], [torch.empty_like(w)], [plan.signed @ w.T], [plan], 0.1, [None], [known]
    )
    return got, after


def test_remembered_counts_are_trusted_only_where_no_synapse_can_have_vanished(monkeypatch):
    """The fast elimination reuses the present-synapse counts of the last elimination, unless
    a synapse may have underflowed to 0 since (then fewer are present than counted)."""
    monkeypatch.setattr(_fast_step, "COUNT_MIN_NUMEL", 0)
    sign = torch.tensor([1, 1, 1, 1, -1], dtype=torch.int8)
    w = torch.tensor([[1.0, 1.0, 0.06, 0.0, -0.5]])
    plan = _fast_step.DalePlan.build(sign, w)
    expected = w.clone()
    _fast_step.dale_eliminate_(expected, torch.empty_like(w), plan.signed @ w.T, plan, 0.1, None)
    assert expected[0, 2] == 0  # 0.06 <= 0.1 * 2.06 / 3 (but > 0.1 * 2.06 / 4)
    # counted when the 4th synapse was present, whose threshold 1e-45 allows an underflow
    stale = (torch.tensor([[4.0], [1.0]]), torch.tensor(1e-45), torch.tensor(-1.0))
    got, after = _eliminate_with(w, plan, stale)
    assert torch.equal(got, expected)
    assert after[0].tolist() == [[2.0], [1.0]]  # counts after
    # exact counts, and no synapse can have vanished: eliminated without a count
    exact = (torch.tensor([[3.0], [1.0]]), torch.tensor(0.01), torch.tensor(-1.0))
    got, after = _eliminate_with(w, plan, exact)
    assert torch.equal(got, expected)
    assert after[0].tolist() == [[2.0], [1.0]]
    assert torch.equal(after[1], plan.signed @ got.T)  # sums after
    torch.testing.assert_close(after[2], torch.tensor(0.1 * 0.5))  # the smallest threshold
    # nothing to eliminate: w, counts and sums are kept
    w2 = torch.tensor([[1.0, 1.0, 0.5, 0.0, -0.5]])
    got, after = _eliminate_with(w2, plan, exact)
    assert torch.equal(got, w2)
    assert after[0] is exact[0] and torch.equal(after[1], plan.signed @ w2.T)


def test_weights_changed_between_steps_are_counted_afresh(monkeypatch):
    """A weight changed in place between steps (synapses removed, magnitudes scaled, a model
    ``load_state_dict``) takes the same elimination decisions on the fast path as on the
    reference path, which counts every step; unchanged weights reuse the remembered counts."""
    monkeypatch.setattr(_fast_step, "COUNT_MIN_NUMEL", 0)  # these weights are small
    steps = 30
    grads = _grads(_model(), steps)
    runs = []
    for foreach in (True, False):
        model = _model()
        opt = BioRule(model.parameters(), seed=0, foreach=foreach)
        for t in range(steps):
            for p, g in zip(model.parameters(), grads[t], strict=True):
                p.grad = g.clone()
            opt.step()
            with torch.no_grad():
                if t == 10:
                    first = next(model.parameters())
                    first.view(-1)[1::5] = 0.0
                    first.view(-1)[2::5] *= 0.05
                if t == 20:
                    model.load_state_dict({k: v * 1.5 for k, v in model.state_dict().items()})
        runs.append([p.detach().clone() for p in model.parameters()])
        if foreach:
            assert any(entry[1] is not None for entry in opt._counts.values())  # reused
    for a, b in zip(*runs, strict=True):
        assert torch.equal(a != 0, b != 0)
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-8)


def test_resuming_from_a_checkpoint_is_bit_identical_with_remembered_counts(monkeypatch):
    """A resumed optimizer counts afresh once; the remembered counts give the same bits."""
    monkeypatch.setattr(_fast_step, "COUNT_MIN_NUMEL", 0)
    steps = 30
    grads = _grads(_model(), steps)
    straight, _ = _run(_model(), grads, steps)
    model = _model()
    _, opt = _run(model, grads, 15)
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    resumed = BioRule(model.parameters(), seed=0)
    resumed.load_state_dict(torch.load(buffer))
    for t in range(15, steps):
        for p, g in zip(model.parameters(), grads[t], strict=True):
            p.grad = g.clone()
        resumed.step()
    for a, b in zip(straight, model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_step_benchmark_times_the_rule_against_adam_and_the_peers(tmp_path):
    """``benchmarks/optimizer_step.py`` in one small run: every optimizer gets a row with its
    ratios and state, a peer that cannot run on a model is listed with the reason, and the
    files (the scaling plot too) go where ``--out`` says."""
    pytest.importorskip("deep_rewire")
    pytest.importorskip("rigl_torch")
    bench = load_benchmark("optimizer_step")
    out = tmp_path / "step"
    names = "adam(),adam-fused,bio,deepr,rigl"
    results = bench.main(
        [
            "--models",
            "mlp-1e5,conv",
            "--optimizers",
            names,
            "--repeats",
            "2",
            "--warmup",
            "1",
            "--out",
            str(out),
        ]
    )
    conv = results["models"]["conv"]
    assert set(conv) == {"adam()", "adam-fused", "bio", "deepr", "rigl"}
    assert conv["adam()"]["ratio_vs_adam()"] == 1.0
    assert all(row["median_ms"] > 0 and row["ratio_vs_adam-fused"] > 0 for row in conv.values())
    assert conv["bio"]["state_bytes_per_param"] <= 4.1  # one momentum buffer, float32
    assert conv["adam()"]["state_bytes_per_param"] == pytest.approx(8.0, abs=0.01)  # + steps
    assert "rigl" not in results["models"]["mlp-1e5"]  # its first layer stays dense there
    assert "first layer dense" in results["skipped"]["mlp-1e5"]["rigl"]
    assert "not run on mlp-1e5: `rigl`" in (out.with_suffix(".md")).read_text()
    # the plot goes beside --out (not over the committed figure)
    assert (tmp_path / "figures" / "step_scaling.png").stat().st_size > 0
