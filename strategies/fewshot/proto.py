"""Prototype classification of frozen features on few-shot episodes.

:class:`ProtoEvaluator` embeds support and query examples with a frozen backbone, classifies
each query by its nearest class prototype (the mean support embedding; Snell et al. 2017) with
learn2learn's ``PrototypicalClassifier``, and reports mean accuracy with a 95 % confidence
interval over episodes (:func:`mean_ci`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from learn2learn.nn import PrototypicalClassifier
from torch import Tensor, nn

from strategies.fewshot.tasksets import IndexEpisode, split_support_query

__all__ = ["ProtoEvaluator", "embed", "mean_ci", "prototype_accuracy"]

#: Normal quantile of a two-sided 95 % interval.
Z95 = 1.959963984540054


def mean_ci(values: Sequence[float] | Tensor) -> dict[str, float]:
    """Mean and half-width of its normal 95 % confidence interval, ``1.96 * sd / sqrt(n)``.

    Returns ``{"mean", "ci95", "sd", "n"}`` (``sd`` with ddof=1; ``ci95`` is NaN for n < 2).
    This is the interval few-shot papers report over test episodes; it reflects episode
    sampling only, not the variability of training.
    """
    x = torch.as_tensor(values, dtype=torch.float64).reshape(-1)
    n = len(x)
    if n == 0:
        raise ValueError("mean_ci needs at least one value")
    mean = float(x.mean())
    sd = float(x.std()) if n > 1 else math.nan
    return {"mean": mean, "ci95": Z95 * sd / math.sqrt(n) if n > 1 else math.nan, "sd": sd, "n": n}


@torch.no_grad()
def embed(backbone: nn.Module, x: Tensor, batch_size: int = 1024) -> Tensor:
    """Features ``backbone(x)`` in eval mode and without gradients, flattened to ``[N, D]``.

    The backbone's training flag is restored afterwards. Inputs are moved to the device of the
    backbone's first parameter (CPU if it has none).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    first = next(backbone.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    was_training = backbone.training
    backbone.eval()
    try:
        out = [
            backbone(x[i : i + batch_size].to(device)).flatten(1)
            for i in range(0, len(x), batch_size)
        ]
    finally:
        backbone.train(was_training)
    if not out:
        raise ValueError("embed needs at least one example")
    return torch.cat(out)


def prototype_accuracy(
    support: Tensor, support_y: Tensor, query: Tensor, query_y: Tensor, distance: str = "euclidean"
) -> float:
    """Fraction of ``query`` features whose nearest prototype is their class (in [0, 1]).

    Labels must be ``0..ways-1`` and every class must have at least one support example (the
    prototypes are indexed by ``torch.unique`` of the support labels, i.e. by label value).
    """
    classes = torch.unique(support_y)
    if not torch.equal(classes, torch.arange(len(classes), device=classes.device)):
        raise ValueError(f"support labels must be 0..ways-1, got {classes.tolist()}")
    if len(query) == 0:
        raise ValueError("an episode needs at least one query example")
    classifier = PrototypicalClassifier(support, support_y, distance=distance)
    predicted = classifier(query).argmax(dim=1)
    return float((predicted == query_y.to(predicted.device)).double().mean())


class ProtoEvaluator:
    """Few-shot evaluation of a frozen backbone by nearest-prototype classification.

    Args:
        backbone: maps inputs to features (e.g. a network without its readout); it is only
            run in eval mode under ``torch.no_grad``.
        distance: ``"euclidean"`` (squared, as in Prototypical Networks) or ``"cosine"``.
        batch_size: examples per forward pass when embedding.

    Reference: Snell, Swersky & Zemel 2017, "Prototypical Networks for Few-shot Learning".

    Example::

        evaluator = ProtoEvaluator(model.features)
        result = evaluator.evaluate(EpisodeSampler(x, y, ways=5, shots=1).episodes(600))
        result["mean"], result["ci95"]
    """

    def __init__(self, backbone: nn.Module, distance: str = "euclidean", batch_size: int = 1024):
        if not isinstance(backbone, nn.Module):
            raise ValueError(f"backbone must be an nn.Module, got {type(backbone).__name__}")
        if distance not in ("euclidean", "cosine"):
            raise ValueError(f"distance must be 'euclidean' or 'cosine', got {distance!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        self.backbone = backbone
        self.distance = distance
        self.batch_size = batch_size

    def embed(self, x: Tensor) -> Tensor:
        """Features of ``x``, ``[N, D]`` (see :func:`embed`)."""
        return embed(self.backbone, x, self.batch_size)

    def episode_accuracy(
        self, support_x: Tensor, support_y: Tensor, query_x: Tensor, query_y: Tensor
    ) -> float:
        """Accuracy on one episode given as inputs and labels ``0..ways-1``."""
        feats = self.embed(torch.cat([support_x, query_x]))
        n = len(support_x)
        return prototype_accuracy(feats[:n], support_y, feats[n:], query_y, self.distance)

    def evaluate(self, episodes: Iterable[tuple], shots: int | None = None) -> dict:
        """Mean accuracy and 95 % CI over ``episodes``.

        Args:
            episodes: ``(support_x, support_y, query_x, query_y)`` tuples (e.g. from
                :class:`bioplastic.data.episodes.EpisodeSampler`) or learn2learn tasks
                ``(data, labels)`` (e.g. ``taskset.sample()``), which are split with ``shots``.
            shots: support examples per class; required for learn2learn tasks.

        Returns:
            ``{"mean", "ci95", "sd", "n", "accuracies"}`` (per-episode accuracies, for paired
            comparisons).
        """
        accuracies = []
        for episode in episodes:
            if len(episode) == 2:
                if shots is None:
                    raise ValueError("shots is required to split learn2learn (data, labels) tasks")
                episode = split_support_query(episode[0], episode[1], shots)
            elif len(episode) != 4:
                raise ValueError(f"an episode is a 2- or 4-tuple, got {len(episode)} items")
            accuracies.append(self.episode_accuracy(*episode))
        return {**mean_ci(accuracies), "accuracies": accuracies}

    def evaluate_indexed(self, x: Tensor, episodes: Sequence[IndexEpisode]) -> dict:
        """Like :meth:`evaluate` for index episodes into ``x``; ``x`` is embedded only once.

        This is the fast path for many episodes over one dataset: the backbone runs once,
        each episode is a gather and a prototype comparison.
        """
        feats = self.embed(x)
        accuracies = [
            prototype_accuracy(feats[s], sy, feats[q], qy, self.distance)
            for s, sy, q, qy in episodes
        ]
        return {**mean_ci(accuracies), "accuracies": accuracies}
