"""The core on the test device: ``BIOPLASTIC_TEST_DEVICE`` (``cpu`` by default, ``cuda`` in
``benchmarks/gpu_check.sh``).

``dalify`` draws the types and weights on the CPU whatever the model's device, so a model on the
GPU gets exactly the weights the same model gets on the CPU; a GPU machine once failed here
(the signs on the GPU, the draw on the CPU). ``BioRule`` then steps the model on the device and
keeps every present synapse's sign.
"""

from __future__ import annotations

import math
import os

import pytest
import torch
from conftest import assert_bio_rule_trains_keeping_signs
from torch import nn

import bioplastic as bp
from bioplastic._device import resolve_device
from bioplastic.probes import dale_violations, synaptic_layers

DEVICE = resolve_device(os.environ.get("BIOPLASTIC_TEST_DEVICE", "cpu"))


def _net(inhibited: bool = False) -> nn.Module:
    """A conv layer and two linear ones; ``inhibited``: the later layers with interneurons."""
    torch.manual_seed(3)
    if inhibited:
        return nn.Sequential(
            nn.Conv2d(5, 4, 3), nn.ReLU(), bp.InhibitedConv2d(4, 4, 1, 1), nn.ReLU(),
            nn.Flatten(), bp.InhibitedLinear(4 * 4 * 4, 8, 6), nn.ReLU(),
            bp.InhibitedLinear(8, 3, 1),
        )  # fmt: skip
    return nn.Sequential(
        nn.Conv2d(5, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 8), nn.ReLU(),
        nn.Linear(8, 3),
    )  # fmt: skip


@pytest.mark.parametrize("inhibited", [False, True])
def test_dalify_on_the_device_draws_the_weights_it_draws_on_the_cpu(inhibited):
    on_cpu = bp.dalify(_net(inhibited), connectivity=0.7, seed=5)
    on_device = bp.dalify(_net(inhibited).to(DEVICE), connectivity=0.7, seed=5)
    for (name, a), b in zip(on_cpu.state_dict().items(), on_device.state_dict().values(),
                            strict=True):  # fmt: skip
        assert b.device.type == DEVICE.type, name
        torch.testing.assert_close(b.cpu(), a, rtol=1e-6, atol=0, msg=name)
    assert all(dale_violations(m) == 0 for _, m in synaptic_layers(on_device))


@pytest.mark.parametrize("inhibited", [False, True])
def test_bio_rule_steps_a_model_on_the_device_keeping_every_sign(inhibited):
    model = bp.dalify(_net(inhibited).to(DEVICE), seed=1)
    x = torch.randn(16, 5, 6, 6, device=DEVICE)
    y = torch.randint(0, 3, (16,), device=DEVICE)
    assert_bio_rule_trains_keeping_signs(model, x, y, steps=20)


def test_kernel_scalar_rounds_beyond_float32_as_cpu_kernels_do():
    from bioplastic._scalars import kernel_scalar

    assert kernel_scalar(1e300, torch.float32) == math.inf
    assert kernel_scalar(-1e300, torch.bfloat16) == -math.inf
    assert kernel_scalar(1e300, torch.float64) == 1e300
    assert kernel_scalar(3e38, torch.float32) == 3e38
    w = torch.tensor([0.0, 1e-30, 2.0])
    torch.testing.assert_close(w * kernel_scalar(1e300, w.dtype), w * 1e300, equal_nan=True)


def test_huge_hyper_parameters_step_on_the_device_as_on_the_cpu():
    """Scalars beyond float32 (allowed: only lr's bound is open) once made CUDA kernels raise."""
    options = dict(lr=1e300, max_step=1e300, prune_threshold=1e300, cost=1e300, decay=1e30)
    results = []
    for device in (torch.device("cpu"), DEVICE):
        model = bp.dalify(_net(), seed=2).to(device)
        opt = bp.BioRule(model.parameters(), **options)
        x = torch.randn(8, 5, 6, 6, generator=torch.Generator().manual_seed(0)).to(device)
        nn.functional.cross_entropy(
            model(x), torch.zeros(8, dtype=torch.long, device=device)
        ).backward()
        opt.step()
        results.append([p.detach().cpu() for p in model.parameters()])
        for p in model.parameters():
            assert torch.isfinite(p).all()
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
