"""Small, framework-free training and evaluation loops used by the CLI and benchmarks."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from bioplastic.robustness.attacks import accuracy as _accuracy

__all__ = ["accuracy", "train_epochs"]


def accuracy(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 1024) -> float:
    """Fraction of ``x`` classified as ``y`` (model in eval mode, restored afterwards).

    :func:`bioplastic.robustness.accuracy` on the pair ``(x, y)``, with equal, non-zero lengths
    checked first.
    """
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"x and y must be non-empty and of equal length, got {len(x)}, {len(y)}")
    return _accuracy(model, (x, y), batch_size=batch_size)


def train_epochs(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: Tensor,
    y: Tensor,
    epochs: int,
    batch_size: int = 32,
    seed: int = 0,
    loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
    on_epoch: Callable[[int], None] | None = None,
) -> None:
    """Mini-batch training with cross-entropy; batches are shuffled by a seeded generator."""
    if epochs < 0 or batch_size < 1:
        raise ValueError(f"epochs must be >= 0 and batch_size >= 1, got {epochs}, {batch_size}")
    loss_fn = loss_fn or nn.functional.cross_entropy
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch_size):
            idx = order[i : i + batch_size].to(x.device)  # the CPU generator's order
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(x[idx]), y[idx]).backward()
            optimizer.step()
        if on_epoch is not None:
            on_epoch(epoch)
