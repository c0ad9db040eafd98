"""BioRule(total_steps=T): the rate anneals as lr * (1 + cos(pi t / T)), whose mean is lr."""

import copy
import math
import warnings

import pytest
import torch
from torch import nn

from bioplastic.optim import BioRule

# nothing but plasticity: one synapse per row, its log-step is -rate * s * g exactly
PLAIN = dict(momentum=0.0, cost=0.0, normalize=False, warmup=0, homeostasis=False,
             fan_in_exponent=0.0, max_step=None, prune_threshold=0.0)  # fmt: skip


def _rates(opt, p, steps):
    """The rate of each step, read back from the log-change of a synapse with s * g = 1."""
    rates = []
    for _ in range(steps):
        before = p.detach().clone()
        p.grad = torch.ones_like(p)
        opt.step()
        rates.append(float(torch.log(before / p.detach())[0, 0]))
    return rates


def _weight():
    return nn.Parameter(torch.full((2, 3), 0.5))


def test_the_rate_follows_a_cosine_whose_mean_is_lr():
    p, total, lr = _weight(), 8, 0.05
    rates = _rates(BioRule([p], lr=lr, total_steps=total, **PLAIN), p, total)
    want = [lr * (1 + math.cos(math.pi * t / total)) for t in range(total)]
    assert rates == pytest.approx(want, rel=1e-4)
    assert rates[0] == pytest.approx(2 * lr, rel=1e-4) and rates[-1] < 0.1 * lr
    # the discrete mean is lr * (1 + 1 / T): the same plasticity as a constant rate
    assert sum(rates) / total == pytest.approx(lr * (1 + 1 / total), rel=1e-4)
    constant = _rates(BioRule([q := _weight()], lr=lr, **PLAIN), q, 3)
    assert constant == pytest.approx([lr] * 3, rel=1e-4)


def test_warmup_multiplies_the_schedule():
    p = _weight()
    rates = _rates(BioRule([p], lr=0.1, total_steps=4, **{**PLAIN, "warmup": 2}), p, 2)
    assert rates == pytest.approx([0.1 * 0.5 * 2.0, 0.1 * (1 + math.cos(math.pi / 4))], rel=1e-4)


def test_past_the_end_the_last_rate_stays_with_one_warning():
    p = _weight()
    opt = BioRule([p], lr=0.1, total_steps=3, **PLAIN)
    _rates(opt, p, 3)
    with pytest.warns(RuntimeWarning, match="total_steps=3"):
        late = _rates(opt, p, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        late += _rates(opt, p, 2)
    assert late == pytest.approx([0.1 * (1 + math.cos(2 * math.pi / 3))] * 3, rel=1e-4)


def test_restart_schedule_starts_again_and_can_change_the_length():
    p = _weight()
    opt = BioRule([p], lr=0.1, total_steps=3, **PLAIN)
    _rates(opt, p, 2)
    opt.restart_schedule(4)
    assert opt.param_groups[0]["total_steps"] == 4
    rates = _rates(opt, p, 2)
    assert rates == pytest.approx([0.2, 0.1 * (1 + math.cos(math.pi / 4))], rel=1e-4)
    opt.restart_schedule()  # same length, from the next step
    assert _rates(opt, p, 1) == pytest.approx([0.2], rel=1e-4)
    with pytest.raises(ValueError, match="total_steps"):
        opt.restart_schedule(0)


def test_a_resumed_run_continues_the_schedule_exactly():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    x, y = torch.randn(16, 6), torch.randint(0, 3, (16,))

    def run(opt, steps):
        for _ in range(steps):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()

    start = {k: v.clone() for k, v in model.state_dict().items()}
    opt = BioRule(model.parameters(), total_steps=10, warmup=0, seed=0)
    run(opt, 3)
    opt.restart_schedule(6)
    run(opt, 2)
    saved = copy.deepcopy(opt.state_dict())  # (its tensors are the live state)
    saved_model = copy.deepcopy(model.state_dict())
    run(opt, 4)
    straight = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(saved_model)
    resumed = BioRule(model.parameters(), seed=1)  # constant rate until the state dict loads
    resumed.load_state_dict(saved)
    assert resumed.param_groups[0]["total_steps"] == 6
    run(resumed, 4)
    for key, value in model.state_dict().items():
        assert torch.equal(value, straight[key]), key
    assert not torch.equal(model[0].weight, start["0.weight"])


def test_a_state_dict_from_before_the_schedule_loads_at_a_constant_rate():
    p = _weight()
    opt = BioRule([p], lr=0.1, **PLAIN)
    _rates(opt, p, 1)
    old = opt.state_dict()
    for group in old["param_groups"]:
        del group["total_steps"]
    del old["bio"]["schedule_start"]
    q = _weight()
    fresh = BioRule([q], lr=0.1, total_steps=5, **PLAIN)
    fresh.load_state_dict(old)
    assert fresh.param_groups[0]["total_steps"] is None
    assert _rates(fresh, q, 2) == pytest.approx([0.1, 0.1], rel=1e-4)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "10"])
def test_bad_total_steps_are_refused_before_any_work(bad):
    with pytest.raises(ValueError, match="total_steps"):
        BioRule([_weight()], total_steps=bad)


def test_bioplastic_train_anneals_bio_over_the_run_unless_told(tmp_path):
    from bioplastic.data.sources import load_digits_arrays
    from bioplastic.experiments import train as train_mod

    steps = 2 * math.ceil(len(load_digits_arrays(seed=0)[0]) / 256)
    for name, options, want in (("a", {}, steps), ("b", {"total_steps": None}, None)):
        config = train_mod.TrainConfig(hidden=(8,), epochs=2, batch_size=256, out=tmp_path / name,
                                       rule_options=options)  # fmt: skip
        train_mod.train(config)
        ckpt = torch.load(tmp_path / name / train_mod.CHECKPOINT_NAME, weights_only=True)
        assert ckpt["optimizer"]["param_groups"][0]["total_steps"] == want
        assert ckpt["optimizer"]["bio"]["group_steps"] == [steps]


def test_a_bio_run_resumed_with_more_epochs_anneals_over_its_new_length(tmp_path, recwarn):
    from bioplastic.data.sources import load_digits_arrays
    from bioplastic.experiments import train as train_mod

    per_epoch = math.ceil(len(load_digits_arrays(seed=0)[0]) / 256)
    out = tmp_path / "run"
    for epochs, resume in ((1, False), (3, True)):
        config = train_mod.TrainConfig(hidden=(8,), epochs=epochs, batch_size=256, out=out,
                                       resume=resume)  # fmt: skip
        train_mod.train(config)
    ckpt = torch.load(out / train_mod.CHECKPOINT_NAME, weights_only=True)
    assert ckpt["optimizer"]["param_groups"][0]["total_steps"] == 3 * per_epoch
    assert ckpt["optimizer"]["bio"]["group_steps"] == [3 * per_epoch]
    assert not [w for w in recwarn if "total_steps" in str(w.message)]  # never past its end
