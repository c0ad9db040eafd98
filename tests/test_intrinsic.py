"""IntrinsicPlasticityPlugin: firing fractions move to the target; weights are never touched."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bioplastic import dalify
from strategies.avalanche.intrinsic import IntrinsicPlasticityPlugin, excitable_units


def _firing(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return (model[1](model[0](x)) > 0).float().mean(0)


def _toy() -> tuple[nn.Sequential, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    with torch.no_grad():
        model[0].bias.fill_(2.0)  # every unit fires on (almost) every input
    return model, torch.randn(64, 8)


def test_firing_fraction_moves_to_target_and_weights_stay() -> None:
    model, x = _toy()
    dalify(model)
    with torch.no_grad():
        model[0].bias.fill_(2.0)
    weights = [m.weight.detach().clone() for m in (model[0], model[2])]
    head_bias = model[2].bias.detach().clone()
    plugin = IntrinsicPlasticityPlugin(target=0.2, rate=0.05, smoothing=0.5)
    plugin.attach(model)
    before = _firing(model, x)
    assert before.mean() > 0.9
    for _ in range(400):
        model(x)  # training mode: the hook records the mini-batch's firing fractions
        plugin.step()
    plugin.detach()
    after = _firing(model, x)
    assert (after - 0.2).abs().mean() < 0.1, after
    assert (after - 0.2).abs().mean() < (before - 0.2).abs().mean()
    for w, m in zip(weights, (model[0], model[2]), strict=True):
        assert torch.equal(w, m.weight)  # magnitudes and signs (Dale types) untouched
    assert torch.equal(head_bias, model[2].bias)  # the head has no activation: left alone
    assert set(plugin.firing) == {"1"}


def test_silent_units_lower_their_threshold_and_eval_is_not_recorded() -> None:
    model, x = _toy()
    with torch.no_grad():
        model[0].bias.fill_(-10.0)  # silent everywhere
    plugin = IntrinsicPlasticityPlugin(target=0.3, rate=0.1, smoothing=0.0)
    plugin.attach(model)
    model.eval()
    model(x)
    plugin.step()
    assert torch.all(model[0].bias == -10.0)  # nothing recorded in eval mode
    model.train()
    model(x)
    plugin.step()
    assert torch.allclose(model[0].bias, torch.full((16,), -10.0 + 0.1 * 0.3))
    plugin.detach()
    model(x)
    plugin.step()
    assert torch.allclose(model[0].bias, torch.full((16,), -10.0 + 0.1 * 0.3))  # unhooked


def test_pairs_follow_module_order_and_state_is_plain() -> None:
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 2))
    pairs = excitable_units(model)
    assert pairs == {"1": model[0], "3": model[2]}
    plugin = IntrinsicPlasticityPlugin()
    plugin.attach(model)
    assert set(plugin.__getstate__()) == {"target", "rate", "smoothing", "firing"}
    plugin.detach()
    with pytest.raises(ValueError, match="activation"):
        plugin.attach(nn.Linear(3, 2))


@pytest.mark.parametrize(
    "kwargs", [{"target": 0.0}, {"target": 1.0}, {"rate": 0.0}, {"smoothing": 1.0}]
)
def test_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        IntrinsicPlasticityPlugin(**kwargs)
