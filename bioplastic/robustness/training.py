"""The matched-accuracy protocol: train any model until it first reaches a target accuracy."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from bioplastic._checks import check_fraction, check_int
from bioplastic.robustness._common import (
    Data,
    _model_device,
)
from bioplastic.robustness.attacks import accuracy

logger = logging.getLogger(__name__)


@dataclass
class TrainToAccuracyResult:
    """Outcome of :func:`train_to_accuracy`.

    Attributes:
        reached: whether validation accuracy reached the target.
        accuracy: validation accuracy at the stop (in ``[0, 1]``).
        epoch: epochs completed at the stop (0 if the untrained model already met the target;
            a partial epoch counts as started, i.e. ``epoch`` is 1-based when stopping mid-epoch).
        steps: optimizer steps taken.
        history: ``(step, accuracy)`` for every validation.
    """

    reached: bool
    accuracy: float
    epoch: int
    steps: int
    history: list[tuple[int, float]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy."""
        d = asdict(self)
        d["history"] = [list(h) for h in self.history]
        return d


def train_to_accuracy(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    train_loader: Iterable,
    val_data: Data,
    target_acc: float,
    max_epochs: int,
    *,
    eval_every_steps: int | None = None,
    loss_fn: nn.Module | None = None,
    batch_size: int = 256,
    device: torch.device | str | None = None,
) -> TrainToAccuracyResult:
    """Train with cross-entropy until validation accuracy first reaches ``target_acc``.

    The matched-accuracy protocol: bring models trained by different learning rules to the same
    clean accuracy before comparing their robustness. Validation runs before training, after
    every epoch and, if ``eval_every_steps`` is set, every that many optimizer steps (finer
    checks overshoot the target less). Training stops at the first validation at or above the
    target, or after ``max_epochs``. Works with any ``torch.optim.Optimizer`` (including
    ``BioRule``); the model's train/eval modes are restored at the end.

    Args:
        model: the classifier to train, already on its device.
        optimizer: any optimizer over the model's parameters.
        train_loader: iterable of ``(inputs, labels, ...)`` batches, re-iterated every epoch.
        val_data: validation data, in any form :func:`accuracy` accepts.
        target_acc: target validation accuracy in ``(0, 1]``.
        max_epochs: maximum number of epochs (>= 1).
        eval_every_steps: also validate every this many steps (>= 1), or ``None``.
        loss_fn: the loss; default ``nn.CrossEntropyLoss()``.
        batch_size, device: as in :func:`accuracy`.

    Example::

        >>> result = train_to_accuracy(model, torch.optim.Adam(model.parameters()), loader,
        ...                            (x_val, y_val), target_acc=0.95, max_epochs=50)
        >>> result.reached, result.epoch, result.accuracy
    """
    target_acc = check_fraction("target_acc", target_acc, lo_open=True, hi_open=False)
    max_epochs = check_int("max_epochs", max_epochs)
    if eval_every_steps is not None:
        eval_every_steps = check_int("eval_every_steps", eval_every_steps)
    loss_fn = nn.CrossEntropyLoss() if loss_fn is None else loss_fn
    device = _model_device(model, device)
    modes = [(module, module.training) for module in model.modules()]
    history: list[tuple[int, float]] = []
    steps = 0

    def validate() -> float:
        acc = accuracy(model, val_data, batch_size=batch_size, device=device)
        history.append((steps, acc))
        return acc

    try:
        acc = validate()
        if acc >= target_acc:
            return TrainToAccuracyResult(True, acc, 0, steps, history)
        for epoch in range(1, max_epochs + 1):
            model.train()
            for batch in train_loader:
                x, y = batch[0].to(device), batch[1].to(device)
                optimizer.zero_grad()
                loss_fn(model(x), y).backward()
                optimizer.step()
                steps += 1
                if eval_every_steps is not None and steps % eval_every_steps == 0:
                    acc = validate()
                    model.train()
                    if acc >= target_acc:
                        return TrainToAccuracyResult(True, acc, epoch, steps, history)
            if history[-1][0] != steps:  # not validated at this very step already
                acc = validate()
            logger.debug("epoch %d: validation accuracy %.4f", epoch, acc)
            if acc >= target_acc:
                return TrainToAccuracyResult(True, acc, epoch, steps, history)
        return TrainToAccuracyResult(False, acc, max_epochs, steps, history)
    finally:
        for module, training in modes:
            module.training = training
