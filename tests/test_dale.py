import math

import pytest
import torch
from torch import nn

import bioplastic as bp
from bioplastic.probes import dale_violations


def test_dalify_types_every_presynaptic_unit_of_any_model():
    model = nn.Sequential(
        nn.Conv2d(3, 20, 3), nn.ReLU(), nn.Flatten(), nn.Linear(20 * 6 * 6, 50), nn.ReLU(),
        nn.Linear(50, 10),
    )  # fmt: skip
    bp.dalify(model, inh_fraction=0.2, seed=0)
    for _, m in bp.synaptic_layers(model):
        n_pre = m.weight.shape[1]
        assert m.dale_sign.shape == (n_pre,)
        assert int((m.dale_sign < 0).sum()) == round(0.2 * n_pre)
        assert m.weight.dale_sign is m.dale_sign
        assert dale_violations(m) == 0
        shape = [1] * m.weight.dim()
        shape[1] = -1
        assert (m.weight * m.dale_sign.reshape(shape) > 0).all()  # every synapse present
        assert (m.bias == 0).all()


def test_dalify_balances_excitation_and_inhibition_per_unit():
    model = bp.dalify(nn.Sequential(nn.Linear(100, 30)), seed=1)
    w = model[0].weight.detach()
    exc = w.clamp(min=0).sum(1)
    inh = (-w).clamp(min=0).sum(1)
    torch.testing.assert_close(exc, inh)


def test_dalify_scale_follows_the_documented_formula():
    fan_in, sigma, gain = 400, 0.5, math.sqrt(2.0)
    model = bp.dalify(nn.Sequential(nn.Linear(fan_in, 2000)), sigma=sigma, gain=gain,
                      balance=False, seed=2)  # fmt: skip
    w = model[0].weight.detach()
    # E[w^2] = gain^2 / fan_in, and log-magnitudes have std sigma within each type
    assert (w**2).mean().item() == pytest.approx(gain**2 / fan_in, rel=0.05)
    exc = w[w > 0].log()
    assert exc.std().item() == pytest.approx(sigma, rel=0.05)
    f = 0.2
    a_e = gain * math.exp(-(sigma**2)) / math.sqrt(fan_in * (1 - f) / f)
    assert exc.median().exp().item() == pytest.approx(a_e, rel=0.05)


def test_dalify_initial_sparsity_and_skip():
    model = nn.Sequential(nn.Linear(50, 40), nn.ReLU(), nn.Linear(40, 3))
    before = model[2].weight.detach().clone()
    bp.dalify(model, connectivity=0.25, skip=("2",), seed=0)
    conn = (model[0].weight != 0).float().mean().item()
    assert conn == pytest.approx(0.25, abs=0.05)
    assert torch.equal(model[2].weight.detach(), before)
    assert not hasattr(model[2], "dale_sign")


@pytest.mark.parametrize(
    "kwargs,name",
    [
        (dict(inh_fraction=1.0), "inh_fraction"),
        (dict(inh_fraction=-0.1), "inh_fraction"),
        (dict(sigma=0.0), "sigma"),
        (dict(connectivity=0.0), "connectivity"),
        (dict(skip=("nope",)), "skip"),
    ],
)
def test_dalify_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        bp.dalify(nn.Sequential(nn.Linear(4, 4)), **kwargs)


def test_dalify_needs_a_synaptic_layer():
    with pytest.raises(ValueError, match="no nn.Linear"):
        bp.dalify(nn.Sequential(nn.ReLU()))


def test_dalify_keeps_existing_types():
    model = bp.BioMLP(8, (16,), 3, on_off=True)
    first = model.net[2]
    signs = first.dale_sign.clone()
    bp.dalify(model, seed=5)
    assert torch.equal(first.dale_sign, signs)


def test_biomlp_on_off_split_lets_the_first_layer_learn_signed_filters():
    model = bp.BioMLP(8, (16,), 3, on_off=True)
    first = model.net[2]
    assert first.weight.shape == (16, 16)
    assert torch.equal(first.dale_sign, bp.on_off_sign(8))
    effective = first.weight[:, :8] + first.weight[:, 8:]  # ON minus OFF magnitude per pixel
    assert (effective > 0).any() and (effective < 0).any()
    assert all(dale_violations(m) == 0 for _, m in bp.synaptic_layers(model))
    assert model(torch.rand(5, 2, 4)).shape == (5, 3)  # flattens its input


def test_bioconvnet_is_dale_typed_and_runs():
    model = bp.BioConvNet(1, 5, channels=(4, 8))
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 5)
    for _, m in bp.synaptic_layers(model):
        assert dale_violations(m) == 0


def test_dale_sign_follows_the_model_to_a_checkpoint():
    model = bp.BioMLP(4, (6,), 2)
    state = model.state_dict()
    assert "net.2.dale_sign" in state and "net.4.principal.dale_sign" in state
    other = bp.BioMLP(4, (6,), 2, seed=3)
    other.load_state_dict(state)
    assert torch.equal(other.net[4].principal.dale_sign, model.net[4].principal.dale_sign)


def test_bio_rule_reads_signs_of_fully_absent_columns_from_dalify():
    model = bp.dalify(nn.Sequential(nn.Linear(6, 4)), seed=0)
    w = model[0].weight
    with torch.no_grad():
        w[:, 0] = 0.0  # a presynaptic unit with no synapse left
    opt = bp.BioRule(model.parameters(), grow_every=1, grow_fraction=1.0, grow_mode="random",
                     homeostasis=False, prune_threshold=0.0)  # fmt: skip
    w.grad = torch.zeros_like(w)
    opt.step()
    assert (torch.sign(w[:, 0]) == model[0].dale_sign[0]).all()


class _TwoBranches(nn.Module):
    """``a`` and ``b`` read the same input; ``c`` reads ``a``'s output."""

    def __init__(self):
        super().__init__()
        self.c = nn.Linear(6, 3)  # registered first: dalify must still follow the forward order
        self.b = nn.Linear(10, 3)
        self.a = nn.Linear(10, 6)

    def forward(self, x):
        return self.c(torch.relu(self.a(x))) + self.b(x)


def test_dalify_with_example_input_ties_layers_that_read_one_tensor():
    model = _TwoBranches().train()
    assert bp.dale.shared_input_layers(model, torch.zeros(2, 10)) == {"b": "a"}
    assert model.training and model.a.training
    bp.dalify(model, inh_fraction=0.3, seed=0, example_input=torch.zeros(2, 10))
    torch.testing.assert_close(model.b.dale_sign, model.a.dale_sign)
    assert int((model.a.dale_sign < 0).sum()) == 3
    assert dale_violations(model.b) == 0
    assert bp.dale.shared_input_layers(nn.Linear(4, 2), torch.zeros(1, 4)) == {}
