"""Datasets, defaults and the seeded batch order of the robustness experiment."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor

SCHEMA = "bioplastic.experiments.robustness/1"
DATASETS = ("digits", "mnist1d")
INTERVENTIONS = ("adam_pruned_to_bio", "adam_pruned_finetuned", "bio_rescaled_to_adam")

#: Per-dataset defaults. Targets sit a little below the validation plateau of the weakest rule
#: with default settings (digits: every rule passes 0.93 within ~10 epochs; MNIST-1D: bio
#: plateaus near 0.35-0.40 with a BioMLP(40, (256,), 10), the other rules near 0.50-0.55).
#: L-inf budgets are fractions of the input range; L2 budgets are norms in the input rescaled
#: to [0, 1] (see :mod:`bioplastic.robustness`).
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "digits": {
        "target_accuracy": 0.93,
        "epsilons": (0.0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3),
        "l2_epsilons": (0.0, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0),
        "masking_eps": (0.05, 0.1),
        "image_shape": (8, 8),
        "max_epochs": 60,
    },
    "mnist1d": {
        "target_accuracy": 0.33,
        "epsilons": (0.0, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1),
        "l2_epsilons": (0.0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3),
        "masking_eps": (0.01, 0.02),
        "image_shape": (40,),
        "max_epochs": 60,
    },
}


# --------------------------------------------------------------------------- data


def load_robustness_data(dataset: str, seed: int, val_fraction: float = 0.2) -> dict[str, Any]:
    """Train / validation / test tensors, the input range and the input shape of ``dataset``.

    ``digits``: scikit-learn's digits in [0, 1], test split stratified by ``seed`` (as in
    :func:`bioplastic.experiments.compare.compare_rules`); ``mnist1d``: 4,000 locally generated
    MNIST-1D signals (standardised; fixed split), input range = min/max over train and test. The
    validation set is a ``val_fraction`` of the training set, stratified, drawn with ``seed``.
    """
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if dataset == "digits":
        from bioplastic.data.sources import load_digits_arrays

        arrays = load_digits_arrays(seed=seed)
        input_range = (0.0, 1.0)
    else:
        from bioplastic.data.sources import load_mnist1d_arrays

        arrays = load_mnist1d_arrays()
    x_train, y_train, x_test, y_test = (torch.as_tensor(a) for a in arrays)
    if dataset == "mnist1d":
        both = torch.cat([x_train, x_test])
        input_range = (float(both.min()), float(both.max()))
    gen = torch.Generator().manual_seed(seed)
    val_idx = []
    for c in torch.unique(y_train):
        idx = (y_train == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        val_idx.append(idx[: max(1, round(val_fraction * len(idx)))])
    val = torch.cat(val_idx)
    keep = torch.ones(len(y_train), dtype=torch.bool)
    keep[val] = False
    return {
        "train": (x_train[keep], y_train[keep]),
        "val": (x_train[val], y_train[val]),
        "test": (x_test, y_test),
        "input_range": input_range,
        "image_shape": DATASET_DEFAULTS[dataset]["image_shape"],
        "n_features": int(x_train.shape[1]),
    }


class _Batches:
    """Shuffled mini-batches; every pass draws its order from one seeded generator, so every
    rule trained with the same seed sees the same batches in the same order."""

    def __init__(self, x: Tensor, y: Tensor, batch_size: int, seed: int):
        self.x, self.y, self.batch_size = x, y, batch_size
        self.gen = torch.Generator().manual_seed(seed)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        order = torch.randperm(len(self.x), generator=self.gen)
        for i in range(0, len(order), self.batch_size):
            idx = order[i : i + self.batch_size].to(self.x.device)  # CPU generator's order
            yield self.x[idx], self.y[idx]
