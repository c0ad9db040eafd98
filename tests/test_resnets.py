"""ResNets (torchvision's ResNet-18 for 32x32, Avalanche's SlimResNet18) under the bio rule.

Trained for a few iterations by ``BioPlastic`` on tiny synthetic CIFAR-shaped data: no sign
flip, no Dale violation, BatchNorm parameters updated as non-synapses, the loss goes down.
"""

from __future__ import annotations

import pytest
import torch
from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets
from avalanche.core import SupervisedPlugin
from torch import nn

import bioplastic as bp
from bioplastic.dale import shared_input_layers
from bioplastic.probes import dale_violations, sign_flips
from bioplastic.probes.weights import norm_scale_signs
from strategies.avalanche import BioPlastic, tensor_classification_dataset
from strategies.avalanche.resnets import dalify_resnet, resnet18_32x32, slim_resnet18

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SHORTCUTS = {
    resnet18_32x32: {f"layer{i}.0.downsample.0": f"layer{i}.0.conv1" for i in (2, 3, 4)},
    slim_resnet18: {f"layer{i}.0.shortcut.0": f"layer{i}.0.conv1" for i in (2, 3, 4)},
}


def test_resnet18_has_the_cifar_stem():
    model = resnet18_32x32(num_classes=7)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, nn.Identity)
    assert len(bp.synaptic_layers(model)) == 21  # 20 convolutions and the linear readout
    with torch.no_grad():
        assert model.eval()(torch.zeros(2, 3, 32, 32)).shape == (2, 7)


def test_layers_reading_one_tensor_share_its_types():
    build = slim_resnet18  # resnet18_32x32: checked in test_bioplastic_trains_a_resnet
    model = build(num_classes=4)
    x = torch.zeros(2, 3, 32, 32)
    running = model.bn1.running_mean.clone()
    assert shared_input_layers(model, x) == SHORTCUTS[build]
    assert model.training and torch.equal(model.bn1.running_mean, running)  # eval pass, restored
    dalify_resnet(model, seed=3)
    layers = dict(bp.synaptic_layers(model))
    for follower, leader in SHORTCUTS[build].items():
        assert torch.equal(layers[follower].dale_sign, layers[leader].dale_sign)
    assert all(dale_violations(m) == 0 for m in layers.values())
    untied = dict(bp.synaptic_layers(bp.dalify(build(num_classes=4), seed=3)))
    assert any(
        not torch.equal(untied[f].dale_sign, untied[lead].dale_sign)
        for f, lead in SHORTCUTS[build].items()
    )  # without the forward pass each layer draws its own types


def test_example_input_needs_a_fresh_model():
    with pytest.raises(ValueError, match="example_input"):
        bp.dalify(slim_resnet18(), example_input=torch.zeros(2, 3, 32, 32), init="keep")
    with pytest.raises(ValueError, match="example_input must be a tensor"):
        bp.dalify(slim_resnet18(), example_input=[1, 2])


class _Losses(SupervisedPlugin):
    def __init__(self):
        super().__init__()
        self.losses: list[float] = []

    def after_training_iteration(self, strategy, **kwargs):
        self.losses.append(float(strategy.loss.detach()))


@pytest.mark.parametrize(("build", "n", "epochs"), [(resnet18_32x32, 4, 3), (slim_resnet18, 8, 4)])
def test_bioplastic_trains_a_resnet(build, n, epochs):
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 2
    x = torch.randn(n, 3, 32, 32, generator=gen)
    data = tensor_classification_dataset(x, y)
    benchmark = benchmark_from_datasets(train=[data], test=[data])
    model = dalify_resnet(build(num_classes=2))
    start = {k: v.clone() for k, v in model.state_dict().items()}
    losses = _Losses()
    strategy = BioPlastic(model=model, dalify_model=False, train_mb_size=n, train_epochs=epochs,
                          evaluator=None, plugins=[losses], device="cpu")  # fmt: skip
    strategy.train(benchmark.train_stream[0])
    layers = dict(bp.synaptic_layers(model))
    for follower, leader in SHORTCUTS[build].items():
        assert torch.equal(layers[follower].dale_sign, layers[leader].dale_sign)
    assert len(losses.losses) == epochs
    assert losses.losses[-1] < losses.losses[0]
    for name, m in bp.synaptic_layers(model):
        assert sign_flips(m.weight, start[f"{name}.weight"]) == 0, name
        assert dale_violations(m) == 0, name
    # BatchNorm scales are not synapses: Adam's additive step (<= other_lr per step) moves them
    gamma, gamma0 = model.bn1.weight.detach(), start["bn1.weight"]
    assert not torch.equal(gamma, gamma0)
    assert float((gamma - gamma0).abs().max()) <= epochs * 1e-3 * 1.01
    assert sum(v["negative"] for v in norm_scale_signs(model).values()) == 0


def test_norm_scale_signs_counts_negative_and_zero_scales():
    model = slim_resnet18()
    with torch.no_grad():
        model.bn1.weight[:3] = -0.5
        model.bn1.weight[3] = 0.0
    signs = norm_scale_signs(model)
    assert signs["bn1"] == {"n": 20, "negative": 3, "zero": 1}
    assert len(signs) == 1 + 2 * 8 + 3  # stem, two per block, three shortcuts
    assert signs["layer1.0.bn1"]["negative"] == 0
