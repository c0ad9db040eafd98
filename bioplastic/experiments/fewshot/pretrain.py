"""Backbones of the few-shot benchmark: built, pre-trained by classification or meta-trained
with MAML under one learning rule, and probed."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from bioplastic import BioConvNet, BioMLP, make_optimizer
from bioplastic._progress import bar
from bioplastic.baselines import interneurons_for
from bioplastic.experiments.metatrain import evaluate_maml, make_maml, meta_train, split_inner
from bioplastic.probes import weight_report
from bioplastic.train import accuracy, train_epochs


def _make_model(
    arch: str,
    input_shape: tuple[int, ...],
    hidden: tuple[int, ...],
    n_out: int,
    seed: int,
    rule: str = "bio",
) -> tuple[nn.Module, nn.Module, nn.Module]:
    """``(model, features, readout)`` for ``rule`` to train; the same seed gives the same
    initial weights (an MLP's interneurons: :func:`~bioplastic.baselines.interneurons_for`)."""
    if arch == "mlp":
        model = BioMLP(int(np.prod(input_shape)), hidden, n_out, seed=seed,
                       interneurons=interneurons_for(rule))  # fmt: skip
        return model, model.net[:-1], model.net[-1]
    if arch == "conv":
        if len(input_shape) != 3:
            raise ValueError(f"arch='conv' needs [C, H, W] inputs, got shape {input_shape}")
        channels = hidden if len(hidden) == 2 else (32, 64)
        model = BioConvNet(input_shape[0], n_out, channels=channels, seed=seed)
        return model, model.features, model.readout
    raise ValueError(f"arch must be 'mlp' or 'conv', got {arch!r}")


def _holdout(y: Tensor, fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Per class, hold out ``round(fraction * n)`` (at least 1) instances: (train, held-out)."""
    gen = torch.Generator().manual_seed(seed)
    train, held = [], []
    for c in torch.unique(y):
        idx = torch.nonzero(y == c).reshape(-1)
        idx = idx[torch.randperm(len(idx), generator=gen)]
        k = max(1, round(fraction * len(idx)))
        held.append(idx[:k])
        train.append(idx[k:])
    return torch.cat(train).sort().values, torch.cat(held).sort().values


def _probe_summary(model: nn.Module, reference: Mapping[str, Tensor]) -> dict[str, Any]:
    report = weight_report(model, reference_state=reference)
    n_syn = sum(row["n_synapses"] for row in report.values())
    n_present = sum(row["n_present"] for row in report.values())
    return {
        "connectivity": n_present / n_syn,
        "connectivity_per_layer": {k: row["connectivity"] for k, row in report.items()},
        "dale_violations": int(sum(row["dale_violations"] for row in report.values())),
        "sign_flips": int(sum(row.get("sign_flips", 0) for row in report.values())),
        "log_mag_skewness": {k: row["log_mag_skewness"] for k, row in report.items()},
    }


def _pretrain(model, rule, data, train_idx, held_idx, epochs, batch_size, seed, options, device):
    """Train ``model`` (already on ``device``) by classification with ``make_optimizer(rule)``;
    return its record."""
    reference = {k: v.clone() for k, v in model.state_dict().items()}
    options = dict(options)
    if rule in ("bio", "eg"):
        options.setdefault("seed", seed)
    optimizer = make_optimizer(rule, model.parameters(), **options)
    x, y = data.train_x[train_idx].to(device), data.train_y[train_idx].to(device)
    held_x, held_y = data.train_x[held_idx].to(device), data.train_y[held_idx].to(device)
    t0 = time.perf_counter()
    with bar(total=epochs, desc=f"pre-train {rule} seed {seed}", unit="epoch") as epoch_bar:
        train_epochs(model, optimizer, x, y, epochs, batch_size=batch_size, seed=seed,
                     on_epoch=lambda _epoch: epoch_bar.update(1))  # fmt: skip
    return {
        "seed": seed,
        "clean_accuracy": accuracy(model, held_x, held_y),
        "train_accuracy": accuracy(model, x, y),
        "train_s": time.perf_counter() - t0,
        **_probe_summary(model, reference),
    }


def _maml_rule(
    model, rule, seed, data, train_idx, ways, shots, queries, test_x, episode_sets, device_sets,
    record, *, device, first_order, outer_kwargs, iterations, meta_batch, inner_steps, tick,
    inner=None,
) -> dict[str, Any]:  # fmt: skip
    """Meta-train ``model`` with MAML under ``rule``, evaluate it on every shot count and
    return the run's record."""
    reference = {k: v.clone() for k, v in model.state_dict().items()}
    lr, inner = split_inner(inner or {})
    learner, outer = make_maml(
        model, rule, first_order, lr, outer_kwargs=outer_kwargs, seed=seed, inner_options=inner
    )
    x_train, y_train = data.train_x[train_idx], data.train_y[train_idx]
    # one meta-trained model per rule and seed, trained at the largest shot count
    min_count = int(torch.bincount(y_train).min())
    train_queries = max(1, min(queries, min_count - max(shots)))
    t0 = time.perf_counter()
    losses = meta_train(learner, outer, x_train.to(device), y_train, ways, max(shots),
                        train_queries, iterations, meta_batch, inner_steps, seed)  # fmt: skip
    run = {
        "seed": seed,
        "train_s": time.perf_counter() - t0,
        "first_meta_loss": float(np.mean(losses[:20])) if losses else None,
        "final_meta_loss": float(np.mean(losses[-20:])) if losses else None,
        **_probe_summary(model, reference),
    }
    tick(f"seed {seed}: meta-trained {rule} MAML")
    for k in shots:
        accs = evaluate_maml(learner, test_x, device_sets[k], inner_steps)
        record("maml", k, rule, seed, accs, episode_sets[k])
    return run


def _summarise_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {"runs": runs}
    for key in ("clean_accuracy", "connectivity", "dale_violations", "sign_flips", "train_s"):
        values = [r[key] for r in runs if key in r]
        if values:
            summary[key] = {
                "mean": float(np.mean(values)),
                "sd": float(np.std(values, ddof=1)) if len(values) > 1 else None,
            }
    return summary
