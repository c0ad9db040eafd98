"""Plain additive updates for parameters that are not synapses (biases, norm layers), used by
:class:`~bioplastic.BioRule` (``other="sgd"`` or ``"adam"``); exported by
:mod:`bioplastic.functional`."""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["adam_step", "sgd_step"]


def sgd_step(params: list[Tensor], grads: list[Tensor], *, lr: float, weight_decay: float) -> None:
    """Plain SGD: ``p <- p - lr * (g + weight_decay * p)``."""
    for p, g in zip(params, grads, strict=True):
        if weight_decay:
            g = g.add(p, alpha=weight_decay)
        p.add_(g, alpha=-lr)


def adam_step(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    steps: list[int],
    *,
    lr: float,
    betas: tuple[float, float],
    eps: float,
    weight_decay: float,
) -> None:
    """Adam (Kingma & Ba 2015) with L2 weight decay, as ``torch.optim.Adam`` defines it
    (``torch._foreach_*`` kernels: one call per operation, the same arithmetic per element)."""
    if not params:
        return
    beta1, beta2 = betas
    if weight_decay:
        grads = torch._foreach_add(grads, params, alpha=weight_decay)
    torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)
    denom = torch._foreach_sqrt(exp_avg_sqs)
    torch._foreach_div_(denom, [math.sqrt(1 - beta2**t) for t in steps])
    torch._foreach_add_(denom, eps)
    torch._foreach_addcdiv_(params, exp_avgs, denom, [-lr / (1 - beta1**t) for t in steps])
