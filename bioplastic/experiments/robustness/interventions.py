"""Interventions on trained models: magnitude pruning to a connectivity, decision-preserving
layer rescaling, and the per-seed intervention runs of :func:`run_robustness`."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from bioplastic.baselines import interneurons_on_purpose, make_optimizer
from bioplastic.experiments.robustness.data import _Batches
from bioplastic.experiments.robustness.measure import _connectivity, _measure
from bioplastic.inhibition import is_interneuron_layer
from bioplastic.probes import synaptic_layers
from bioplastic.representation import weight_scale_stats
from bioplastic.robustness import train_to_accuracy

# --------------------------------------------------------------------------- interventions


def magnitude_prune_(model: nn.Module, connectivity: Mapping[str, float]) -> dict[str, Tensor]:
    """Keep, in each named synaptic layer, the ``round(c * numel)`` largest-magnitude weights.

    Args:
        model: modified in place.
        connectivity: ``{layer name: target fraction in [0, 1]}`` (names as in
            :func:`bioplastic.probes.synaptic_layers`); other layers are left alone.

    Returns:
        ``{layer name: bool mask of kept weights}``.
    """
    layers = dict(synaptic_layers(model))
    unknown = set(connectivity) - set(layers)
    if unknown:
        raise ValueError(f"connectivity names unknown layers: {sorted(unknown)}")
    masks = {}
    with torch.no_grad():
        for name, c in connectivity.items():
            if not 0 <= c <= 1:
                raise ValueError(f"connectivity[{name!r}] must be in [0, 1], got {c}")
            w = layers[name].weight
            k = round(c * w.numel())
            mask = torch.zeros(w.numel(), dtype=torch.bool, device=w.device)
            if k > 0:
                mask[torch.topk(w.detach().abs().reshape(-1), k).indices] = True
            mask = mask.reshape(w.shape) & (w != 0)
            w.mul_(mask)
            masks[name] = mask
    return masks


def rescale_layers_(model: nn.Module, factors: Mapping[str, float]) -> float:
    """Multiply each synaptic layer's weight by ``factors[name]`` and compensate the biases.

    For a feed-forward chain of synaptic layers with positively homogeneous activations (ReLU),
    in :func:`~bioplastic.probes.synaptic_layers` order, the bias of layer ``l`` is multiplied
    by the product of the factors of layers ``1..l``; the logits are then the original logits
    times ``prod(factors)`` and every decision is unchanged. Layers not named keep factor 1.
    Interneurons (:mod:`bioplastic.inhibition`) average their inputs, so they pass the scale
    of their inputs on unchanged; naming one is an error (the layer that reads them would see
    its excitatory and inhibitory inputs at different scales). Returns the overall factor.
    """
    layers = synaptic_layers(model)
    unknown = set(factors) - {n for n, _ in layers}
    if unknown:
        raise ValueError(f"factors names unknown layers: {sorted(unknown)}")
    averaging = sorted(n for n, m in layers if is_interneuron_layer(m))
    if set(averaging) & set(factors):
        raise ValueError(
            f"interneuron layers cannot be rescaled: {sorted(set(averaging) & set(factors))}"
        )
    layers = [(n, m) for n, m in layers if n not in averaging]
    total = 1.0
    with torch.no_grad():
        for name, m in layers:
            f = float(factors.get(name, 1.0))
            if not (math.isfinite(f) and f > 0):
                raise ValueError(f"factors[{name!r}] must be a finite number > 0, got {f}")
            total *= f
            m.weight.mul_(f)
            if m.bias is not None:
                m.bias.mul_(total)
    return total


def _masked_finetune(
    model: nn.Module,
    masks: Mapping[str, Tensor],
    loader: _Batches,
    val: tuple[Tensor, Tensor],
    target: float,
    max_epochs: int,
    eval_every_steps: int,
) -> dict[str, Any]:
    from torch.nn.utils import prune

    layers = dict(synaptic_layers(model))
    for name, mask in masks.items():
        prune.custom_from_mask(layers[name], "weight", mask)
    with interneurons_on_purpose():  # adam trains bio's network here
        optimizer = make_optimizer("adam", model.parameters())
    try:
        result = train_to_accuracy(
            model,
            optimizer,
            loader,
            val,
            target,
            max_epochs,
            eval_every_steps=eval_every_steps,
        )
    finally:
        for name in masks:
            prune.remove(layers[name], "weight")
    return result.as_dict()


def _interventions(
    trained: Mapping[str, nn.Module],
    data: Mapping[str, Any],
    cfg: Mapping[str, Any],
    seed: int,
    target: float,
    batch_size: int,
    finetune_epochs: int,
    eval_every_steps: int,
    progress: Callable[[str], None] | None,
    dataset: str,
) -> list[dict[str, Any]]:
    bio, adam = trained["bio"], trained["adam"]
    _, bio_conn = _connectivity(bio)
    out = []

    pruned = copy.deepcopy(adam)
    masks = magnitude_prune_(pruned, bio_conn)
    out.append(
        {
            "kind": "adam_pruned_to_bio",
            "seed": seed,
            **_measure(pruned, data, cfg, None, probes=False),
        }
    )

    tuned = copy.deepcopy(pruned)
    torch.manual_seed(seed)
    loader = _Batches(*data["train"], batch_size, seed + 10_000)
    training = _masked_finetune(
        tuned, masks, loader, data["val"], target, finetune_epochs, eval_every_steps
    )
    training.pop("history", None)
    out.append(
        {
            "kind": "adam_pruned_finetuned",
            "seed": seed,
            "training": training,
            **_measure(tuned, data, cfg, None, probes=False),
        }
    )

    scaled = copy.deepcopy(bio)
    adam_scale = weight_scale_stats(adam)
    bio_scale = weight_scale_stats(bio)
    factors = {
        name: adam_scale[name]["frobenius"] / bio_scale[name]["frobenius"]
        for name, layer in synaptic_layers(bio)
        if bio_scale[name]["frobenius"] > 0 and not is_interneuron_layer(layer)
    }
    overall = rescale_layers_(scaled, factors)
    row = {
        "kind": "bio_rescaled_to_adam",
        "seed": seed,
        "factors": factors,
        "logit_factor": overall,
        **_measure(scaled, data, cfg, None, probes=False),
    }
    with torch.no_grad():
        same = torch.equal(scaled(data["test"][0]).argmax(1), bio(data["test"][0]).argmax(1))
    row["decisions_unchanged"] = bool(same)
    out.append(row)
    if progress is not None:
        for r in out:
            progress(
                f"{dataset} {r['kind']:22s} seed {seed}: test {r['clean_accuracy']:.3f} "
                f"pgd-mean {r['robust_mean'].get('pgd', math.nan):.3f} "
                f"conn {r['connectivity']:.3f}"
            )
    return out
