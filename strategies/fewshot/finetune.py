"""Few-step fine-tuning of a fresh linear readout on frozen features.

The second few-shot protocol next to prototypes: for every episode a new linear readout
(``features -> ways``) is trained for a few full-batch steps on the support set with one of the
named rules, then scored on the query set. For the sign-preserving rules (``bio``, ``eg``) the
readout is Dale-typed (:class:`bioplastic.DaleLinear`; by default each feature keeps the type it
had in the backbone's own readout), for ``sgd``/``adam`` it is an ordinary ``nn.Linear``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from bioplastic import DaleLinear, make_optimizer
from strategies.fewshot.proto import embed

__all__ = ["FINETUNE_DEFAULT_LR", "finetune_readout", "finetune_readout_features"]

#: Default learning rate per rule; features are scaled to unit mean norm first, so one value
#: serves every backbone. ``bio`` is BioRule's normalised rate (relative change per step),
#: ``eg`` the plain exponentiated-gradient rate. Chosen on toy problems and on episodes of
#: meta-*train* classes, never on meta-test classes.
FINETUNE_DEFAULT_LR: dict[str, float] = {"bio": 0.1, "eg": 2.0, "sgd": 1.0, "adam": 0.1}
_RULES = ("bio", "eg", "sgd", "adam")


def finetune_readout_features(
    support: Tensor,
    support_y: Tensor,
    query: Tensor,
    query_y: Tensor,
    rule: str = "bio",
    steps: int = 50,
    lr: float | None = None,
    seed: int = 0,
    dale_sign: Tensor | None = None,
    optimizer_kwargs: Mapping[str, object] | None = None,
) -> float:
    """Query accuracy (in [0, 1]) of a readout trained on support *features*.

    Features are divided by the mean L2 norm of the support features (known at test time), so
    that learning rates do not depend on the backbone's feature scale.

    Args:
        support, query: features ``[n, D]``; labels ``0..ways-1``.
        rule: ``"bio"``, ``"eg"``, ``"sgd"`` or ``"adam"`` (:func:`bioplastic.make_optimizer`).
        steps: full-batch steps on the support set (>= 0).
        lr: learning rate (default :data:`FINETUNE_DEFAULT_LR`); for bio/eg the readout's biases
            take Adam steps with the ``adam`` rate (``other_lr``) unless ``optimizer_kwargs``
            sets it: the rule's default bias rate (1e-3) barely moves them in a few steps.
        seed: seed of the readout's initialisation (and of the bio rule's noise).
        dale_sign: presynaptic types (``[D]``, +-1) of a Dale readout; default 20 % inhibitory
            at random.
        optimizer_kwargs: extra options for ``make_optimizer``.
    """
    if rule not in _RULES:
        raise ValueError(f"rule must be one of {_RULES}, got {rule!r}")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
        raise ValueError(f"steps must be an int >= 0, got {steps!r}")
    lr = FINETUNE_DEFAULT_LR[rule] if lr is None else lr
    ways = int(support_y.max()) + 1
    scale = support.norm(dim=1).mean().clamp(min=1e-12)
    support, query = support / scale, query / scale
    gen = torch.Generator().manual_seed(seed)
    dim = support.shape[1]
    options = dict(optimizer_kwargs or {})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if rule in ("bio", "eg"):
            readout: nn.Module = DaleLinear(dim, ways, dale_sign=dale_sign, generator=gen)
            options.setdefault("other_lr", FINETUNE_DEFAULT_LR["adam"])
            if rule == "bio":
                options.setdefault("seed", seed)
        else:
            readout = nn.Linear(dim, ways)
    readout = readout.to(device=support.device, dtype=support.dtype)
    optimizer = make_optimizer(rule, readout.parameters(), lr=lr, **options)
    loss_fn = nn.functional.cross_entropy
    with torch.enable_grad():
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            loss_fn(readout(support), support_y).backward()
            optimizer.step()
    with torch.no_grad():
        return float((readout(query).argmax(1) == query_y).double().mean())


def finetune_readout(
    backbone: nn.Module,
    support: tuple[Tensor, Tensor],
    query: tuple[Tensor, Tensor],
    rule: str = "bio",
    steps: int = 50,
    lr: float | None = None,
    seed: int = 0,
    dale_sign: Tensor | None = None,
    optimizer_kwargs: Mapping[str, object] | None = None,
) -> float:
    """Few-step fine-tuning of a fresh readout on a frozen ``backbone``; returns query accuracy.

    Args:
        backbone: feature extractor, run in eval mode without gradients (it is not changed).
        support, query: ``(inputs, labels)`` with labels ``0..ways-1``.
        rule, steps, lr, seed, dale_sign, optimizer_kwargs: see
            :func:`finetune_readout_features`.

    Example::

        acc = finetune_readout(model.features, (sx, sy), (qx, qy), rule="bio", steps=50)
    """
    (sx, sy), (qx, qy) = support, query
    feats = embed(backbone, torch.cat([sx, qx]))
    n = len(sx)
    return finetune_readout_features(
        feats[:n], sy.to(feats.device), feats[n:], qy.to(feats.device), rule=rule, steps=steps,
        lr=lr, seed=seed, dale_sign=dale_sign, optimizer_kwargs=optimizer_kwargs,
    )  # fmt: skip
