"""Omniglot from a local folder, through learn2learn, with class splits that cannot leak.

Layout (what ``l2l.vision.datasets.FullOmniglot(root, download=False)`` reads, through
torchvision's ``Omniglot``)::

    <root>/omniglot-py/images_background/<Alphabet>/<character>/*.png   (964 characters)
    <root>/omniglot-py/images_evaluation/<Alphabet>/<character>/*.png   (659 characters)

torchvision accepts that folder only when the original zip files sit next to it with their
published MD5 sums. Many copies of Omniglot are unpacked folders without the zips; for those,
:func:`open_full_omniglot` builds the same learn2learn ``FullOmniglot`` (same items, same
labels: background characters first, evaluation characters offset by their count) without the
zip check. Nothing is ever downloaded.

Splits. learn2learn's ``omniglot_tasksets`` benchmark helper shuffles the classes with the
global ``random`` state each time it is called, so its meta-train and meta-test classes can
differ between calls and overlap across runs. Here a class is identified by its *names*
(``images_background/Latin/character01``), never by the folder listing order (which
``os.listdir`` leaves to the file system), and assigned to a split once:

* ``split_by="class"``: a seeded permutation of the sorted class names is cut into
  1100 / 100 / 423 classes (meta-train / -val / -test; Vinyals et al. 2016, Ravi & Larochelle
  2017), in proportion for a folder with another number of classes;
* ``split_by="alphabet"``: Lake et al.'s split by alphabet: the 30 background alphabets are
  meta-train, the 20 evaluation alphabets meta-test (there is no meta-val split).

Images are returned as float ``[1, image_size, image_size]`` in [0, 1] with the strokes bright
(``1 - pixel``), like MNIST and :mod:`bioplastic.data.glyphs`.

Example::

    train = load_omniglot("~/data", "train")
    x, y = train.tensors()          # [N, 1, 28, 28], labels 0..len(train.classes)-1
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from learn2learn.vision.datasets import FullOmniglot
from PIL import Image
from torch import Tensor
from torch.utils.data import ConcatDataset, Dataset
from torchvision.datasets.omniglot import Omniglot

__all__ = [
    "OMNIGLOT_SPLIT_SIZES",
    "OmniglotClass",
    "OmniglotSplit",
    "load_omniglot",
    "omniglot_class_splits",
    "omniglot_classes",
    "open_full_omniglot",
]

#: Classes per split of the standard class split (of 1,623).
OMNIGLOT_SPLIT_SIZES: dict[str, int] = {"train": 1100, "val": 100, "test": 423}
_SETS = ("images_background", "images_evaluation")


class _ExtractedOmniglot(Omniglot):
    """torchvision's Omniglot that trusts an unpacked folder (no zip MD5 check)."""

    def _check_integrity(self) -> bool:
        return os.path.isdir(os.path.join(self.root, self._get_target_folder()))


class _LocalFullOmniglot(FullOmniglot):
    """learn2learn's ``FullOmniglot`` over unpacked folders; identical items and labels."""

    def __init__(self, root: str, transform=None, target_transform=None) -> None:
        self.root = os.path.expanduser(root)
        self.transform = transform
        self.target_transform = target_transform
        background = _ExtractedOmniglot(self.root, background=True)
        offset = len(background._characters)
        evaluation = _ExtractedOmniglot(
            self.root, background=False, target_transform=lambda label: label + offset
        )
        self.dataset = ConcatDataset((background, evaluation))
        self._bookkeeping_path = os.path.join(self.root, "omniglot-bookkeeping.pkl")


def open_full_omniglot(root: str | os.PathLike[str]) -> FullOmniglot:
    """learn2learn's ``FullOmniglot`` over ``root`` (never downloads).

    Tries ``FullOmniglot(root, download=False)`` first (it needs torchvision's zips next to the
    folders); if that refuses, reads the unpacked folders directly.

    Raises:
        FileNotFoundError: if ``<root>/omniglot-py/images_background`` or
            ``images_evaluation`` is missing.
    """
    root = os.path.expanduser(os.fspath(root))
    missing = [s for s in _SETS if not os.path.isdir(os.path.join(root, "omniglot-py", s))]
    if missing:
        raise FileNotFoundError(
            f"no Omniglot under {root!r}: expected {', '.join(missing)} in "
            f"{os.path.join(root, 'omniglot-py')} (layout <Alphabet>/<character>/*.png)"
        )
    try:
        return FullOmniglot(root, download=False)
    except RuntimeError:
        return _LocalFullOmniglot(root)


class OmniglotClass(NamedTuple):
    """One Omniglot character: its ``FullOmniglot`` label and its names."""

    label: int
    background: bool
    alphabet: str
    character: str

    @property
    def name(self) -> str:
        return f"{_SETS[0 if self.background else 1]}/{self.alphabet}/{self.character}"


def _parts(full: FullOmniglot) -> tuple[Omniglot, Omniglot]:
    background, evaluation = full.dataset.datasets
    return background, evaluation


def omniglot_classes(full: FullOmniglot) -> list[OmniglotClass]:
    """Every character of ``full``, indexed by its ``FullOmniglot`` label."""
    background, evaluation = _parts(full)
    classes = []
    for part, is_background in ((background, True), (evaluation, False)):
        for path in part._characters:
            alphabet, character = os.path.split(path)
            classes.append(OmniglotClass(len(classes), is_background, alphabet, character))
    return classes


def _instance_labels(full: FullOmniglot) -> np.ndarray:
    """``FullOmniglot`` label of every item, read from the file lists (no image is opened)."""
    background, evaluation = _parts(full)
    offset = len(background._characters)
    labels = [c for _, c in background._flat_character_images]
    labels += [c + offset for _, c in evaluation._flat_character_images]
    return np.asarray(labels, dtype=np.int64)


def omniglot_class_splits(
    classes: Sequence[OmniglotClass], split_by: str = "class", seed: int = 0
) -> dict[str, list[int]]:
    """``FullOmniglot`` labels of the meta-train, -val and -test classes (disjoint).

    Args:
        classes: from :func:`omniglot_classes`.
        split_by: ``"class"`` (seeded 1100/100/423 cut of the sorted names) or ``"alphabet"``
            (background alphabets / evaluation alphabets; ``"val"`` is empty).
        seed: seed of the ``"class"`` permutation (the default 0 is the documented split).
    """
    if split_by not in ("class", "alphabet"):
        raise ValueError(f"split_by must be 'class' or 'alphabet', got {split_by!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    if split_by == "alphabet":
        return {
            "train": sorted(c.label for c in classes if c.background),
            "val": [],
            "test": sorted(c.label for c in classes if not c.background),
        }
    ordered = sorted(classes, key=lambda c: c.name)
    order = np.random.default_rng(seed).permutation(len(ordered))
    total = sum(OMNIGLOT_SPLIT_SIZES.values())
    n_train = round(len(ordered) * OMNIGLOT_SPLIT_SIZES["train"] / total)
    n_val = round(len(ordered) * OMNIGLOT_SPLIT_SIZES["val"] / total)
    picked = [ordered[i].label for i in order]
    return {
        "train": sorted(picked[:n_train]),
        "val": sorted(picked[n_train : n_train + n_val]),
        "test": sorted(picked[n_train + n_val :]),
    }


class OmniglotSplit(Dataset):
    """The items of some Omniglot classes: ``(image [1, s, s] float in [0, 1], label)``.

    Labels are ``0..len(classes)-1`` in ascending ``FullOmniglot`` label order.

    Attributes:
        full: the underlying learn2learn ``FullOmniglot``.
        indices: item indices into ``full``.
        targets: ``int64`` labels of the items.
        classes: the :class:`OmniglotClass` of each label.
        split: "train", "val" or "test".
    """

    def __init__(
        self,
        full: FullOmniglot,
        indices: np.ndarray,
        full_labels: np.ndarray,
        classes: list[OmniglotClass],
        split: str,
        image_size: int,
    ) -> None:
        self.full = full
        self.indices = indices
        remap = {c.label: i for i, c in enumerate(classes)}
        self.targets = torch.as_tensor([remap[int(c)] for c in full_labels], dtype=torch.int64)
        self.classes = classes
        self.split = split
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.indices)

    def _image(self, index: int) -> Tensor:
        image, _ = self.full.dataset[int(self.indices[index])]
        if not isinstance(image, Image.Image):
            raise ValueError("the FullOmniglot must return PIL images (no transform)")
        image = image.convert("L").resize((self.image_size, self.image_size), Image.LANCZOS)
        pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)
        return (1.0 - pixels)[None]

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self._image(index), int(self.targets[index])

    def tensors(self) -> tuple[Tensor, Tensor]:
        """All images ``[N, 1, s, s]`` and labels ``[N]`` (opens every file once)."""
        if len(self) == 0:
            raise ValueError(f"the {self.split!r} split has no items")
        return torch.stack([self._image(i) for i in range(len(self))]), self.targets.clone()

    def __repr__(self) -> str:
        return (
            f"OmniglotSplit(split={self.split!r}, classes={len(self.classes)}, items={len(self)})"
        )


def load_omniglot(
    root: str | os.PathLike[str],
    split: str = "train",
    split_by: str = "class",
    image_size: int = 28,
    seed: int = 0,
) -> OmniglotSplit:
    """One meta-split of Omniglot from a local ``root`` (see the module docstring).

    Args:
        root: folder that contains ``omniglot-py/``.
        split: "train", "val" or "test".
        split_by: "class" (1100/100/423) or "alphabet" (background / evaluation).
        image_size: side of the square output images, pixels (Omniglot's are 105).
        seed: seed of the class split (``split_by="class"``).

    Raises:
        FileNotFoundError: if the folders are missing.
        ValueError: for an unknown split or split_by, ``split="val"`` with
            ``split_by="alphabet"``, or a split without classes.
    """
    if split not in OMNIGLOT_SPLIT_SIZES:
        raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
    if not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be an int >= 1, got {image_size!r}")
    if split == "val" and split_by == "alphabet":
        raise ValueError("split_by='alphabet' has no 'val' split (background/evaluation only)")
    full = open_full_omniglot(root)
    classes = omniglot_classes(full)
    labels = omniglot_class_splits(classes, split_by, seed)[split]
    if not labels:
        raise ValueError(f"the {split!r} split of {root!r} has no classes")
    instance_labels = _instance_labels(full)
    keep = np.isin(instance_labels, labels)
    indices = np.nonzero(keep)[0]
    return OmniglotSplit(
        full, indices, instance_labels[indices], [classes[c] for c in labels], split, image_size
    )
