"""Few-shot data: meta-train and meta-test examples of one dataset, with disjoint class sets."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = ["DATASETS", "FewShotData", "load_fewshot_data"]

DATASETS = ("digits", "mnist1d", "glyphs", "omniglot")


class FewShotData:
    """Meta-train and meta-test examples of one dataset, with disjoint class sets.

    Attributes:
        train_x, train_y: meta-train inputs and labels ``0..n_train_classes-1``.
        test_x, test_y: meta-test inputs and labels (any integers).
        train_classes, test_classes: class names (strings) of each side.
        input_shape: shape of one input.
    """

    def __init__(
        self,
        name: str,
        train_x: Tensor,
        train_y: Tensor,
        test_x: Tensor,
        test_y: Tensor,
        train_classes: Sequence[str],
        test_classes: Sequence[str],
    ) -> None:
        overlap = set(train_classes) & set(test_classes)
        if overlap:
            raise ValueError(f"meta-train and meta-test share classes: {sorted(overlap)[:5]}")
        self.name = name
        self.train_x, self.train_y = train_x.float(), _dense_labels(train_y)
        self.test_x, self.test_y = test_x.float(), test_y.long()
        self.train_classes = list(train_classes)
        self.test_classes = list(test_classes)
        self.input_shape = tuple(train_x.shape[1:])

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "input_shape": list(self.input_shape),
            "meta_train_classes": len(self.train_classes),
            "meta_train_instances": len(self.train_y),
            "meta_test_classes": len(self.test_classes),
            "meta_test_instances": len(self.test_y),
        }


def _dense_labels(y: Tensor) -> Tensor:
    _, dense = torch.unique(y.long(), return_inverse=True)
    return dense


def load_fewshot_data(
    dataset: str,
    root: str | None = None,
    cache_dir: str | None = None,
    max_classes: int | None = None,
    eval_split: str = "test",
) -> FewShotData:
    """Meta-train / meta-test (or meta-val) data of ``dataset`` (see :data:`DATASETS`).

    ``digits`` and ``mnist1d``: digits 0-4 / 5-9 (:mod:`bioplastic.data.episodes`; no
    meta-val); ``glyphs``: the fixed class split of :func:`bioplastic.data.glyphs.load_glyphs`
    (20 instances per class; ``max_classes`` keeps a fixed subset for quick runs);
    ``omniglot``: the 1100/100/423 class split of
    :func:`strategies.fewshot.omniglot.load_omniglot` from ``root``. ``eval_split="val"``
    returns the meta-val classes in place of meta-test (for choosing hyper-parameters).
    """
    if eval_split not in ("test", "val"):
        raise ValueError(f"eval_split must be 'test' or 'val', got {eval_split!r}")
    if eval_split == "val" and dataset in ("digits", "mnist1d"):
        raise ValueError(f"{dataset} has no meta-val classes; use eval_split='test'")
    if dataset in ("digits", "mnist1d"):
        from bioplastic.data.episodes import digits_fewshot_splits, mnist1d_fewshot_splits

        if dataset == "digits":
            tr, te = digits_fewshot_splits()
        else:
            tr, te = mnist1d_fewshot_splits(cache_dir=cache_dir)
        names = [str(c) for c in tr.classes], [str(c) for c in te.classes]
        return FewShotData(dataset, tr.x, tr.y, te.x, te.y, *names)
    if dataset == "glyphs":
        from bioplastic.data.glyphs import load_glyphs

        tr = load_glyphs("train", cache_dir=cache_dir, max_classes=max_classes)
        te = load_glyphs(eval_split, cache_dir=cache_dir, max_classes=max_classes)
        (trx, try_), (tex, tey) = tr.tensors(), te.tensors()
        return FewShotData(
            dataset,
            trx,
            try_,
            tex,
            tey,
            [f"U+{c:04X}" for c in tr.class_codepoints],
            [f"U+{c:04X}" for c in te.class_codepoints],
        )
    if dataset == "omniglot":
        if root is None:
            raise ValueError("dataset='omniglot' needs root (the folder holding omniglot-py/)")
        from strategies.fewshot.omniglot import load_omniglot

        tr, te = load_omniglot(root, "train"), load_omniglot(root, eval_split)
        (trx, try_), (tex, tey) = tr.tensors(), te.tensors()
        return FewShotData(
            dataset, trx, try_, tex, tey, [c.name for c in tr.classes], [c.name for c in te.classes]
        )
    raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
