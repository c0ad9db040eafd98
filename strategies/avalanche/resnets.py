"""ResNets for 32x32 images (CIFAR), with Dale's-law types that respect shared inputs.

* :func:`resnet18_32x32`: torchvision's ``resnet18`` with the CIFAR stem (a 3x3 stride-1
  convolution instead of the 7x7 stride-2 one, no max-pool), 11.2 M parameters.
* :func:`slim_resnet18`: Avalanche's ``SlimResNet18`` (``nf=20`` filters in the first stage).
* :func:`dalify_resnet`: :func:`bioplastic.dalify` with a forward pass on an example batch, so
  that layers reading the same tensor (a block's ``conv1`` and its 1x1 shortcut convolution)
  give each input channel one type. Then train with ``BioPlastic(..., dalify_model=False)``.

What the rule treats as synapses in these models: every convolution and the final linear layer.
BatchNorm's scale and shift and the linear bias are not synapses (``dim < 2``): ``BioRule``
updates them with its ``other`` optimiser (Adam by default). Two things follow for Dale's law
(see :func:`bioplastic.probes.weights.norm_scale_signs`):

* the identity shortcut of a residual block carries activity, not synapses: a channel's
  outgoing synapses are those of the convolutions that read it, and they keep its one type;
* a BatchNorm channel with a negative scale multiplies its unit's summed input by a negative
  number, so every synapse onto that unit acts with the opposite sign: Dale's law holds for
  the weights, but the effective sign of those synapses flips. Count such channels with the
  probe; BatchNorm scales start at 1 and only a negative step pushes them below 0.

Example::

    model = dalify_resnet(resnet18_32x32(num_classes=100))
    strategy = BioPlastic(model=model, dalify_model=False, train_mb_size=128, device="cuda")
"""

from __future__ import annotations

from typing import Any

import torch
from avalanche.models import SlimResNet18
from torch import nn
from torchvision.models import resnet18

from bioplastic import dalify
from bioplastic._checks import check_int

__all__ = ["dalify_resnet", "resnet18_32x32", "slim_resnet18"]


def resnet18_32x32(num_classes: int = 10) -> nn.Module:
    """torchvision's ResNet-18 for 32x32 inputs: 3x3 stride-1 stem, no max-pool.

    The stem change is the usual one for CIFAR (He et al. 2016, section 4.2): with the
    ImageNet stem a 32x32 image is 8x8 after two layers and 1x1 in the last stage.
    """
    check_int("num_classes", num_classes, 1)
    model = resnet18(num_classes=num_classes)
    model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


def slim_resnet18(num_classes: int = 10, nf: int = 20) -> nn.Module:
    """Avalanche's ``SlimResNet18(num_classes, nf)`` (inputs must be 3x32x32)."""
    check_int("num_classes", num_classes, 1)
    check_int("nf", nf, 1)
    return SlimResNet18(num_classes, nf=nf)


def dalify_resnet(
    model: nn.Module, input_shape: tuple[int, ...] = (3, 32, 32), **dalify_kwargs: Any
) -> nn.Module:
    """:func:`bioplastic.dalify` with types tied across layers that read the same tensor.

    Runs one forward pass on a zero batch of ``input_shape`` (two samples, so BatchNorm in
    eval mode is not involved in anything but shapes) to find the shared inputs; other
    arguments go to ``dalify``. Returns ``model`` (modified in place).
    """
    device = next(model.parameters()).device
    example = torch.zeros((2, *input_shape), device=device)
    return dalify(model, example_input=example, **dalify_kwargs)
