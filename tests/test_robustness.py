import json
import sys

import pytest
import torch
from conftest import make_mlp
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from bioplastic import robustness
from bioplastic.robustness import (
    ATTACKS,
    adversarial_examples,
    evaluate_attack,
    gradient_masking_checks,
    masking,
    robustness_curve,
    train_to_accuracy,
)


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    x = torch.tensor(d.data / 16.0, dtype=torch.float32)
    y = torch.tensor(d.target)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    train, test = perm[:1400], perm[1400:]
    return (x[train], y[train]), (x[test], y[test])


@pytest.fixture(scope="module")
def trained(digits):
    (x_train, y_train), test = digits
    torch.manual_seed(0)
    model = make_mlp(64, 32, 10)
    loader = DataLoader(TensorDataset(x_train, y_train), batch_size=64, shuffle=True)
    result = train_to_accuracy(
        model, torch.optim.Adam(model.parameters(), lr=1e-2), loader, test, 0.93, 40
    )
    assert result.reached
    return model, test


class Quantised(nn.Module):
    """Gradient masking by design: rounding the input has zero gradient almost everywhere."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(torch.round(x * 16) / 16)


class ModeRecorder(nn.Module):
    def __init__(self):
        super().__init__()
        self.seen: list[bool] = []

    def forward(self, x):
        self.seen.append(self.training)
        return x


def test_attacks_reduce_accuracy_pgd_stronger_and_large_eps_near_chance(trained):
    model, test = trained
    clean = robustness.accuracy(model, test)
    fgsm = evaluate_attack(model, test, "fgsm", 0.1)
    pgd = evaluate_attack(model, test, "pgd", 0.1, steps=10)
    assert clean > 0.9
    assert fgsm < clean - 0.1
    assert pgd < clean - 0.1
    assert pgd <= fgsm + 0.02
    assert evaluate_attack(model, test, "pgd", 1.0) <= 0.1 + 0.05
    # Flat (N, 64) inputs through PGDL2, whose reshaping assumes 4-D images.
    assert evaluate_attack(model, test, "pgd_l2", 1.5) < clean - 0.1
    assert evaluate_attack(model, test, "pgd", 0.0) == clean


@pytest.mark.parametrize("attack", ATTACKS)
@pytest.mark.parametrize("input_range", [(0.0, 1.0), (-1.0, 1.0)])
def test_adversarial_examples_stay_in_budget_and_range(trained, attack, input_range):
    model, (x, y) = trained
    lo, hi = input_range
    x, y = x[:50] * (hi - lo) + lo, y[:50]
    shifted = nn.Sequential(_Affine(1.0 / (hi - lo), -lo / (hi - lo)), model)
    eps = 0.3
    adv = adversarial_examples(shifted, x, y, attack, eps, steps=5, input_range=input_range)
    assert adv.shape == x.shape
    assert adv.min() >= lo - 1e-6 and adv.max() <= hi + 1e-6
    delta = (adv - x) / (hi - lo)
    if attack == "pgd_l2":
        assert (delta.norm(dim=1) <= eps + 1e-5).all()
    else:
        assert delta.abs().max() <= eps + 1e-6
    assert (delta != 0).any()


class _Affine(nn.Module):
    def __init__(self, scale: float, shift: float):
        super().__init__()
        self.scale, self.shift = scale, shift

    def forward(self, x):
        return x * self.scale + self.shift


def test_input_range_makes_eps_a_fraction_of_the_range(trained):
    model, (x, y) = trained
    # The same network fed inputs in [-1, 1]: with eps in range units the attack is the same.
    pm_model = nn.Sequential(_Affine(0.5, 0.5), model)
    pm_data = (2 * x - 1, y)
    for attack in ("fgsm", "pgd"):
        kw = {"random_start": False}
        ref = evaluate_attack(model, (x, y), attack, 0.1, **kw)
        got = evaluate_attack(pm_model, pm_data, attack, 0.1, input_range=(-1, 1), **kw)
        assert got == pytest.approx(ref, abs=0.01)
    with pytest.warns(UserWarning, match="input_range"):
        evaluate_attack(pm_model, pm_data, "fgsm", 0.1)  # [-1, 1] data, default (0, 1) range


def test_restarts_never_raise_accuracy_and_loader_matches_tensors(trained):
    model, (x, y) = trained
    torch.manual_seed(1)
    one = evaluate_attack(model, (x, y), "pgd", 0.08, steps=3, batch_size=len(x))
    torch.manual_seed(1)
    three = evaluate_attack(model, (x, y), "pgd", 0.08, steps=3, restarts=3, batch_size=len(x))
    assert three <= one
    # Avalanche-style loaders yield (x, y, task_label); extra items are ignored.
    tasks = torch.zeros_like(y)
    loader = DataLoader(TensorDataset(x, y, tasks), batch_size=64)
    assert evaluate_attack(model, loader, "fgsm", 0.1) == evaluate_attack(
        model, (x, y), "fgsm", 0.1
    )


def test_robustness_curve_is_json_and_consistent(trained):
    model, test = trained
    curve = robustness_curve(model, test, epsilons=[0.0, 0.02, 0.3], steps=5)
    curve = json.loads(json.dumps(curve))
    clean = curve["clean_accuracy"]
    assert curve["n_samples"] == len(test[1])
    assert curve["attacks"] == ["fgsm", "pgd"]
    for attack in ("fgsm", "pgd"):
        accs = curve["accuracy"][attack]
        assert len(accs) == 3 and accs[0] == clean
        assert accs[2] < accs[1] <= clean
    per_attack = robustness_curve(
        model, test, attacks=("pgd", "pgd_l2"), epsilons={"pgd": [0.1], "pgd_l2": [0.5]}
    )
    assert per_attack["epsilons"] == {"pgd": [0.1], "pgd_l2": [0.5]}


def test_masked_model_is_flagged_plain_model_is_not(trained):
    model, test = trained
    plain = gradient_masking_checks(model, test, [0.05, 0.1], steps=10, restarts=2)
    assert plain["masked"] is False
    assert plain["large_eps_accuracy"] <= plain["chance"]
    masked = gradient_masking_checks(Quantised(model), test, [0.05, 0.1], steps=10, restarts=2)
    assert masked["masked"] is True
    assert masked["zero_or_nan_gradients"] is True
    assert masked["zero_gradient_fraction"] == 1.0
    # FGSM cannot move a zero-gradient model, which is what makes its accuracy look robust.
    assert masked["fgsm_accuracy@0.1"] == masked["clean_accuracy"]
    json.dumps(masked)


def test_masking_flags_follow_their_definitions(trained, monkeypatch):
    model, test = trained
    fake = {("fgsm", 0.1): 0.30, ("pgd", 0.1): 0.50, ("pgd", 1.0): 0.40}
    monkeypatch.setattr(
        masking, "evaluate_attack", lambda m, d, attack, eps, **kw: fake[(attack, eps)]
    )
    out = gradient_masking_checks(model, test, [0.1])
    assert out["pgd_minus_fgsm_max"] == pytest.approx(0.2)
    assert out["pgd_weaker_than_fgsm"] is True
    assert out["large_eps_not_near_chance"] is True
    assert out["zero_or_nan_gradients"] is False
    assert out["masked"] is True
    fake.update({("pgd", 0.1): 0.31, ("pgd", 1.0): 0.15})
    out = gradient_masking_checks(model, test, [0.1], check_gradients=False)
    assert not out["pgd_weaker_than_fgsm"] and not out["large_eps_not_near_chance"]
    assert "zero_gradient_fraction" not in out and out["masked"] is False


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"attack": "cw"}, "fgsm.*pgd.*pgd_l2"),
        ({"eps": -0.1}, "eps"),
        ({"eps": float("nan")}, "eps"),
        ({"steps": 0}, "steps"),
        ({"restarts": 0}, "restarts"),
        ({"alpha": -1.0}, "alpha"),
        ({"input_range": (1.0, 0.0)}, "input_range"),
    ],
)
def test_evaluate_attack_rejects_bad_arguments(trained, kwargs, match):
    model, test = trained
    args = {"attack": "pgd", "eps": 0.1} | kwargs
    with pytest.raises(ValueError, match=match):
        evaluate_attack(model, test, **args)


def test_other_functions_reject_bad_arguments(trained, digits):
    model, test = trained
    with pytest.raises(ValueError, match="pgd_l2"):
        robustness_curve(model, test, attacks=("pgd", "deepfool"))
    with pytest.raises(ValueError, match="epsilons"):
        robustness_curve(model, test, epsilons=[0.1, -0.2])
    with pytest.raises(ValueError, match="eps_grid"):
        gradient_masking_checks(model, test, [0.0, 0.1])
    with pytest.raises(ValueError, match="steps"):
        gradient_masking_checks(model, test, [0.1], steps=0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="target_acc"):
        train_to_accuracy(model, opt, [], test, 1.5, 1)
    with pytest.raises(ValueError, match="max_epochs"):
        train_to_accuracy(model, opt, [], test, 0.5, 0)


def test_modes_are_restored_and_attacks_run_in_eval_mode(trained):
    model, test = trained
    original = [m.training for m in model.modules()]
    recorder = ModeRecorder()
    wrapped = nn.Sequential(recorder, model)
    wrapped.train()
    model[0].eval()  # a mixed-mode model must come back exactly as it was
    before = [m.training for m in wrapped.modules()]
    evaluate_attack(wrapped, test, "pgd", 0.1, steps=2, restarts=2)
    gradient_masking_checks(wrapped, test, [0.1], steps=2, restarts=1)
    assert [m.training for m in wrapped.modules()] == before
    assert recorder.seen and not any(recorder.seen)
    for module, training in zip(model.modules(), original, strict=True):
        module.training = training


def test_train_to_accuracy_stops_at_target(digits):
    (x_train, y_train), val = digits
    torch.manual_seed(0)
    model = make_mlp(64, 32, 10)
    model.eval()
    loader = DataLoader(TensorDataset(x_train, y_train), batch_size=64, shuffle=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    result = train_to_accuracy(model, opt, loader, val, 0.8, 30, eval_every_steps=5)
    assert result.reached and result.accuracy >= 0.8
    # It stopped at the first validation over the target, not later.
    assert all(acc < 0.8 for _, acc in result.history[:-1])
    assert result.history[-1] == (result.steps, result.accuracy)
    assert result.steps % 5 == 0 and 1 <= result.epoch <= 30
    assert robustness.accuracy(model, val) == result.accuracy
    assert model.training is False
    json.dumps(result.as_dict())
    # Already at the target: no training at all.
    again = train_to_accuracy(model, opt, loader, val, 0.5, 3)
    assert (again.reached, again.epoch, again.steps) == (True, 0, 0)
    # Unreachable within budget.
    fresh = make_mlp(64, 32, 10)
    short = train_to_accuracy(
        fresh, torch.optim.SGD(fresh.parameters(), lr=1e-4), loader, val, 1.0, 1
    )
    assert not short.reached and short.epoch == 1 and short.steps == len(loader)


def test_missing_torchattacks_gives_install_hint(trained, monkeypatch):
    model, test = trained
    monkeypatch.setitem(sys.modules, "torchattacks", None)
    with pytest.raises(ImportError, match="pip install torchattacks"):
        evaluate_attack(model, test, "fgsm", 0.1)
    # Clean accuracy needs no attack library.
    assert evaluate_attack(model, test, "fgsm", 0.0) > 0.9
