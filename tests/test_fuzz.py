"""Property-based fuzzing (hypothesis) of ``BioRule`` and of the probes: bad input never
corrupts a weight and never ends in an exception other than the documented ``ValueError``.

* ``BioRule`` with random valid configurations (every hyper-parameter across its range,
  including huge learning rates, no step clipping, huge noise and growth), on random small
  Dale weights (Linear and Conv shapes, some of them zero-size, float32/float64), stepped with
  random gradients (normal at scales from 1e-30 to 3e38, zeros, scattered or complete NaN/inf),
  with consolidations in between. After every step: every weight and bias is finite, every
  present synapse has its presynaptic unit's sign, no absent synapse reappears unless growth is
  on, and a tensor whose gradient was non-finite is left exactly as it was. At the end the
  state round-trips through ``torch.save``/``torch.load(weights_only=True)``.
* Random invalid configurations (one bad hyper-parameter at a time, in the constructor or in a
  param group, and bad ``consolidate`` arguments) raise a ``ValueError`` naming it.
* The probes on random tensors, including empty, 1-D, constant, all-zero, huge, subnormal and
  non-finite ones, return finite numbers (or the documented NaN/inf) in their documented ranges
  or raise ``ValueError``.

Set ``BIOPLASTIC_TEST_DEVICE=cuda`` to run the optimizer properties on the GPU, and
``BIOPLASTIC_FUZZ_SCALE=10`` for ten times as many examples. See the number of examples tried
with ``pytest tests/test_fuzz.py --hypothesis-show-statistics``.
"""

from __future__ import annotations

import io
import math
import os
import warnings

import pytest
import torch
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from torch import nn

from bioplastic import probes
from bioplastic._device import resolve_device
from bioplastic.functional import presynaptic_shape
from bioplastic.optim import BioRule

DEVICE = resolve_device(os.environ.get("BIOPLASTIC_TEST_DEVICE", "cpu"))
#: Multiplies every test's number of examples (e.g. 10 for a long fuzzing session).
SCALE = float(os.environ.get("BIOPLASTIC_FUZZ_SCALE", "1"))


def _examples(n: int) -> int:
    return max(1, round(n * SCALE))


FUZZ = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --------------------------------------------------------------------------------- BioRule
floats01 = st.floats(0.0, 1.0)

VALID_OPTIONS = {
    "lr": st.floats(1e-6, 1e3) | st.sampled_from([1e6, 1e30, 1e300]),
    "normalize": st.booleans(),
    "grad_beta": st.floats(0.0, 0.999),
    "momentum": st.floats(0.0, 0.99),
    "decay": st.floats(0.0, 10.0) | st.just(1e30),
    "noise": st.sampled_from([0.0, 0.0, 0.1]) | st.floats(0.0, 1e3),
    "noise_halflife": st.floats(0.0, 1e3),
    "noise_reuse": st.integers(1, 64),
    "max_step": st.none() | st.floats(1e-3, 1e3) | st.just(1e300),
    "prune_threshold": st.floats(0.0, 2.0) | st.just(1e300),
    "prune_mode": st.sampled_from(["relative", "absolute"]),
    "homeostasis": st.booleans(),
    "budget_rate": floats01,
    "grow_every": st.integers(0, 3),
    "grow_fraction": floats01,
    "grow_mode": st.sampled_from(["random", "gradient"]),
    "grow_scale": st.floats(1e-3, 1e3) | st.just(1e300),
    "max_connectivity": st.floats(0.01, 1.0),
    "track_importance": st.booleans(),
    "protect_consolidated": st.booleans(),
    "other": st.sampled_from(["adam", "sgd"]),
    "other_lr": st.floats(0.0, 1e3) | st.just(1e6),
    "weight_decay": st.floats(0.0, 10.0) | st.just(1e6),
    "foreach": st.booleans(),
    "seed": st.integers(0, 2**62),
}

nan_inf = st.sampled_from([math.nan, math.inf, -math.inf])
not_a_number = st.sampled_from(["0.1", None, [0.1], True])
negative = st.floats(max_value=-1e-9, allow_nan=False, allow_infinity=False)
not_bool = st.sampled_from([0, 1, "yes", None, 1.0])
not_int = st.sampled_from([1.5, "2", None, True])
INVALID_OPTIONS = {
    "lr": st.floats(max_value=0.0) | nan_inf | not_a_number,
    "momentum": st.floats(min_value=1.0) | negative | nan_inf,
    "grad_beta": st.floats(min_value=1.0) | negative | nan_inf,
    "decay": negative | nan_inf | not_a_number,
    "noise": negative | nan_inf,
    "noise_halflife": negative | nan_inf,
    "noise_reuse": st.integers(max_value=0) | not_int,
    "max_step": st.floats(max_value=0.0) | nan_inf | not_a_number.filter(lambda v: v is not None),
    "prune_threshold": negative | nan_inf,
    "prune_mode": st.text(max_size=8).filter(lambda s: s not in ("relative", "absolute")),
    "budget_rate": st.floats(min_value=1.0, exclude_min=True) | negative | nan_inf,
    "grow_every": st.integers(max_value=-1) | not_int,
    "grow_fraction": st.floats(min_value=1.0, exclude_min=True) | negative | nan_inf,
    "grow_mode": st.text(max_size=8).filter(lambda s: s not in ("random", "gradient")),
    "grow_scale": st.floats(max_value=0.0) | nan_inf,
    "max_connectivity": st.floats(max_value=0.0) | st.floats(min_value=1.0, exclude_min=True),
    "other": st.text(max_size=8).filter(lambda s: s not in ("adam", "sgd")),
    "other_lr": negative | nan_inf | st.floats(min_value=1e6, exclude_min=True),
    "betas": st.sampled_from([(0.9,), (1.0, 0.999), (0.9, -0.1), (0.9, math.nan), "ab", None]),
    "eps": st.floats(max_value=0.0) | nan_inf,
    "weight_decay": negative | nan_inf | st.floats(min_value=1e6, exclude_min=True),
    "synapse": not_bool.filter(lambda v: v is not None),
    "normalize": not_bool,
    "homeostasis": not_bool,
    "track_importance": not_bool,
    "protect_consolidated": not_bool,
    "foreach": not_bool,
}
SCALES = [0.0, 1e-30, 1e-3, 1.0, 1e3, 1e20, 3e38]


@st.composite
def dale_weights(draw):
    """A small Dale-consistent weight (Linear or Conv shape, maybe zero-size) and its signs."""
    conv = draw(st.booleans())
    n_out = draw(st.integers(0, 6))
    n_in = draw(st.integers(0 if not conv else 1, 6))
    shape = (n_out, n_in, *([draw(st.integers(1, 3))] * 2 if conv else []))
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    connectivity = draw(st.sampled_from([0.0, 0.3, 0.8, 1.0]))
    seed = draw(st.integers(0, 2**31))
    gen = torch.Generator().manual_seed(seed)
    sign = torch.where(torch.rand(n_in, generator=gen) < 0.3, -1.0, 1.0)
    mag = torch.exp(torch.randn(shape, generator=gen) - 2.0)
    mag = mag * (torch.rand(shape, generator=gen) < connectivity)
    weight = nn.Parameter((sign.reshape(presynaptic_shape(mag)) * mag).to(DEVICE, dtype))
    sign = sign.to(DEVICE, dtype)
    if draw(st.booleans()):
        weight.dale_sign = sign  # else BioRule infers the types from the sign pattern
    return weight, sign


@st.composite
def gradients(draw, shape, dtype):
    """A gradient of ``shape``: normal at a random scale, maybe with NaN/inf entries."""
    kind = draw(st.sampled_from(["normal", "normal", "normal", "some_nonfinite", "all_nan"]))
    scale = draw(st.sampled_from(SCALES))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
    g = torch.randn(shape, generator=gen, dtype=torch.float64) * scale
    if kind == "some_nonfinite" and g.numel():
        bad = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
        where = torch.rand(shape, generator=gen) < draw(st.sampled_from([0.01, 0.3, 1.0]))
        g = torch.where(where, torch.full_like(g, bad), g)
    elif kind == "all_nan":
        g = torch.full_like(g, math.nan)
    return g.to(DEVICE, dtype)  # float32 may overflow to inf: also a case we want


@settings(FUZZ, max_examples=_examples(300))
@given(
    data=st.data(),
    options=st.fixed_dictionaries(
        {"seed": VALID_OPTIONS["seed"]},  # None would draw from torch's global generator
        optional={k: v for k, v in VALID_OPTIONS.items() if k != "seed"},
    ),
)
def test_bio_rule_never_corrupts_weights(data, options):
    params = [
        data.draw(dale_weights(), label="weight") for _ in range(data.draw(st.integers(1, 2)))
    ]
    weights = [w for w, _ in params]
    biases = [nn.Parameter(torch.zeros(max(w.shape[0], 1), device=DEVICE)) for w in weights]
    opt = BioRule([*weights, *biases], **options)
    growth = options.get("grow_every", 0) > 0 and options.get("grow_fraction", 0.0) > 0
    initial_sign = [torch.sign(w.detach()).clone() for w in weights]
    n_steps = data.draw(st.integers(1, 4), label="steps")
    for step in range(n_steps):
        grads = [data.draw(gradients(w.shape, w.dtype), label=f"grad{step}") for w in weights]
        before = [w.detach().clone() for w in weights]
        for w, g in zip(weights, grads, strict=True):
            w.grad = g
        for b in biases:
            b.grad = torch.randn_like(b) * data.draw(st.sampled_from(SCALES))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            opt.step()
        for w, (_, sign), g, old, sign0 in zip(
            weights, params, grads, before, initial_sign, strict=True
        ):
            new = w.detach()
            note(f"step {step}: shape {tuple(w.shape)} {w.dtype}")
            assert torch.isfinite(new).all(), "a weight became non-finite"
            present = new != 0
            state = opt.state.get(w, {})
            if "unit_sign" in state and not hasattr(w, "dale_sign"):
                # types inferred from the sign pattern: right wherever a unit had a synapse
                inferred = state["unit_sign"].to(sign.dtype)
                had_synapse = (sign0 != 0).transpose(0, 1).flatten(1).any(1)
                assert torch.equal(inferred[had_synapse], sign[had_synapse])
                sign = inferred
            expected = sign.reshape(presynaptic_shape(new)).expand_as(new)
            assert torch.equal(torch.sign(new)[present], expected[present]), "a sign flipped"
            assert not (torch.sign(new) * sign0 < 0).any(), "a sign flipped since init"
            if not growth:
                assert not (present & (old == 0)).any(), "an absent synapse came back"
            if not torch.isfinite(g).all():
                assert torch.equal(new, old), "a non-finite gradient changed the weight"
        for b in biases:
            assert torch.isfinite(b).all(), "a bias became non-finite"
        if data.draw(st.booleans(), label="consolidate"):
            by = data.draw(st.sampled_from(["magnitude", "importance"]))
            fraction, factor = data.draw(floats01), data.draw(st.floats(1e-6, 1.0))
            if by == "importance" and not options.get("track_importance", False):
                with pytest.raises(ValueError, match="track_importance"):
                    opt.consolidate(fraction, factor, by=by)
            else:
                opt.consolidate(fraction, factor, by=by)
        opt.zero_grad()
    counts = opt.structural_counts()
    assert all(isinstance(v, int) and v >= 0 for v in counts.values())
    # the state saved by bioplastic loads without unpickling code, and resumes
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    clones = [nn.Parameter(p.detach().clone()) for p in [*weights, *biases]]
    fresh = BioRule(clones, **options)
    fresh.load_state_dict(state)
    assert fresh.structural_counts()["nonfinite_skips"] == counts["nonfinite_skips"]


@settings(FUZZ, max_examples=_examples(300))
@given(data=st.data(), name=st.sampled_from(sorted(INVALID_OPTIONS)), in_group=st.booleans())
def test_invalid_configuration_raises_value_error_naming_it(data, name, in_group):
    value = data.draw(INVALID_OPTIONS[name], label=name)
    w = nn.Parameter(torch.ones(2, 3, device=DEVICE))
    with pytest.raises(ValueError, match=name.split("[")[0]):
        if in_group:
            BioRule([{"params": [w], name: value}])
        else:
            BioRule([w], **{name: value})


@settings(FUZZ, max_examples=_examples(50))
@given(seed=st.floats(-10, 10) | st.integers(max_value=-1) | st.sampled_from([True, "1"]))
def test_invalid_seed_raises_value_error(seed):
    if isinstance(seed, float) and seed.is_integer() and seed >= 0:
        seed += 0.5
    with pytest.raises(ValueError, match="seed"):
        BioRule([nn.Parameter(torch.ones(2, 2))], seed=seed)


@settings(FUZZ, max_examples=_examples(100))
@given(
    fraction=st.floats(allow_nan=True) | not_a_number,
    factor=st.floats(allow_nan=True) | not_a_number,
    by=st.sampled_from(["magnitude", "importance", "size", ""]),
)
def test_consolidate_validates_its_arguments(fraction, factor, by):
    w = nn.Parameter(torch.rand(3, 4, device=DEVICE))
    opt = BioRule([w], track_importance=True)
    ok_fraction = isinstance(fraction, float) and 0 <= fraction <= 1
    ok_factor = isinstance(factor, float) and 0 < factor <= 1
    if ok_fraction and ok_factor and by in ("magnitude", "importance"):
        w.grad = torch.randn_like(w)
        opt.step()
        opt.consolidate(fraction, factor, by=by)
        return
    with pytest.raises(ValueError, match="fraction|factor|by"):
        opt.consolidate(fraction, factor, by=by)


# --------------------------------------------------------------------------------- probes
@st.composite
def tensors(draw, min_dim=0, max_dim=4, dtype=None):
    """Random tensors, including empty, constant, zero, huge, subnormal and non-finite ones."""
    n_dim = draw(st.integers(min_dim, max_dim))
    shape = tuple(draw(st.integers(0, 5)) for _ in range(n_dim))
    kind = draw(
        st.sampled_from(["normal", "relu", "zeros", "constant", "huge", "tiny", "nonfinite"])
    )
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    if kind == "relu":
        x = x.clamp(min=0)
    elif kind == "zeros":
        x = torch.zeros(shape, dtype=torch.float64)
    elif kind == "constant":
        x = torch.full(shape, draw(st.floats(-10, 10)), dtype=torch.float64)
    elif kind == "huge":
        x = x.sign() * 1e38
    elif kind == "tiny":
        x = x.sign() * 1e-44
    elif kind == "nonfinite" and x.numel():
        x.view(-1)[0] = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
    dtype = dtype or draw(st.sampled_from([torch.float32, torch.float64, torch.int64]))
    return x.to(dtype)


def _finite_or_documented(value, lo=-math.inf, hi=math.inf, allow_inf=False) -> None:
    """A probe's number is finite and in [lo, hi], or NaN (undefined), or inf if documented."""
    if isinstance(value, torch.Tensor):
        for v in value.reshape(-1).tolist():
            _finite_or_documented(v, lo, hi, allow_inf)
        return
    if isinstance(value, dict):
        for v in value.values():
            _finite_or_documented(v, lo, hi, allow_inf)
        return
    value = float(value)
    if math.isnan(value):
        return
    if math.isinf(value):
        assert allow_inf, f"undocumented infinity {value}"
        return
    assert lo - 1e-9 <= value <= hi + 1e-9, f"{value} outside [{lo}, {hi}]"


def _call(fn, *args, **kwargs):
    """The probe's result, or None if it raised the documented ValueError."""
    try:
        return fn(*args, **kwargs)
    except ValueError as err:
        assert str(err), "a ValueError needs a message"
        return None


@settings(FUZZ, max_examples=_examples(250))
@given(weight=tensors(), other=tensors(), sign=tensors(max_dim=2))
def test_weight_probes_on_random_input(weight, other, sign):
    if (r := _call(probes.connectivity, weight)) is not None:
        _finite_or_documented(r, 0.0, 1.0)
    if (r := _call(probes.dale_violations, weight)) is not None:
        assert 0 <= r <= weight.shape[1]
    if (r := _call(probes.dale_violations, weight, sign)) is not None:
        assert 0 <= r <= weight.shape[1]
    if (r := _call(probes.sign_flips, weight, other)) is not None:
        assert 0 <= r <= weight.numel()
    if (r := _call(probes.log_magnitude_stats, weight)) is not None:
        assert r["n"] == int((weight != 0).sum())
        _finite_or_documented(r["ks_normal"], 0.0, 1.0)
        if torch.isfinite(weight.double()).all():
            _finite_or_documented({k: v for k, v in r.items() if k != "n"})
    if (r := _call(probes.ei_totals, weight)) is not None:
        _finite_or_documented(r["ei_ratio"], 0.0, math.inf, allow_inf=True)
        if torch.isfinite(weight.double()).all():
            _finite_or_documented({k: r[k] for k in ("excitatory", "inhibitory")}, 0.0)
    masks = [weight != 0, other != 0]
    if (r := _call(probes.jaccard_matrix, masks)) is not None:
        _finite_or_documented(r, 0.0, 1.0)
    if (r := _call(probes.capacity, masks, weight)) is not None:
        _finite_or_documented({k: r[k] for k in ("used_fraction", "free_fraction")}, 0.0, 1.0)
    if (r := _call(probes.recruited_synapses, weight, other)) is not None:
        assert r.dtype == torch.bool and r.shape == weight.shape
    if (r := _call(probes.allocation_matrix, weight != 0)) is not None:
        _finite_or_documented(r, 0.0, 1.0)


@settings(FUZZ, max_examples=_examples(250))
@given(acts=tensors(), eps=st.floats(-1.0, 1.0) | st.just(math.nan))
def test_activity_probes_on_random_input(acts, eps):
    for fn in (probes.population_sparseness, probes.lifetime_sparseness):
        if (r := _call(fn, acts)) is not None:
            _finite_or_documented(r, 0.0, 1.0)
        if (r := _call(fn, acts, reduction="none")) is not None:
            _finite_or_documented(r, 0.0, 1.0)
    if (r := _call(probes.silent_fraction, acts, eps)) is not None:
        _finite_or_documented(r, 0.0, 1.0)
    if (r := _call(probes.participation_ratio, acts)) is not None:
        _finite_or_documented(r, 1.0 - 1e-6, acts.shape[1] * (1 + 1e-6))
    if (r := _call(probes.activity_distribution_stats, acts, eps)) is not None:
        _finite_or_documented(r["fraction_zero"], 0.0, 1.0)
        _finite_or_documented(r)
    if (r := _call(probes.task_selectivity, acts)) is not None:
        _finite_or_documented(r.index, 0.0, 1.0)
        assert ((r.preferred >= -1) & (r.preferred < acts.shape[0])).all()
    if (r := _call(probes.recruited_units, acts, 0.5)) is not None:
        assert r.dtype == torch.bool and r.shape == acts.shape


@settings(FUZZ, max_examples=_examples(100))
@given(
    n_in=st.integers(1, 4),
    n_out=st.integers(1, 4),
    conv=st.booleans(),
    inputs=tensors(dtype=torch.float32),
)
def test_ei_input_balance_on_random_input(n_in, n_out, conv, inputs):
    module = nn.Conv1d(n_in, n_out, 2) if conv else nn.Linear(n_in, n_out)
    if (r := _call(probes.ei_input_balance, module, inputs)) is not None:
        _finite_or_documented(r["correlation"], -1.0, 1.0)
        _finite_or_documented(r["ratio"], allow_inf=True)
