"""Glyphs: an offline, Omniglot-sized few-shot dataset rendered from matplotlib's own fonts.

Every class is a Unicode code point (a letter, number or symbol); every instance is that code
point drawn by one of the TrueType fonts that ship with matplotlib under a small random affine
distortion, as a 28x28 grey image in [0, 1] (white glyph on black, like MNIST). Nothing is
downloaded: the fonts are part of the matplotlib installation.

Which fonts. All ``*.ttf`` files in ``matplotlib.get_data_path()/fonts/ttf`` except those whose
character map does not mean what it says (:data:`EXCLUDED_FONTS`): LastResortHE (maps every code
point to a placeholder box), the BaKoMa Computer Modern fonts ``cm*10`` (TeX encodings behind a
Latin-1 cmap: ``'¡'`` is drawn as Gamma, every ``cmex10`` code is a delimiter), ``STIXNonUni*``
(glyphs without code points) and ``STIXSiz*`` (larger copies of STIXGeneral's delimiters). With
matplotlib 3.11 that leaves 18 fonts: the DejaVu Sans/Serif/Mono families and STIXGeneral.

Which classes. A code point is a class when its general category is a letter, number or symbol
(``L*``, ``N*``, ``S*``; punctuation, marks and spaces are out), and at least ``min_fonts`` fonts
map it to a non-empty outline. Two options remove near-duplicate classes, both on by default
because a 5-way episode that contains two classes drawn identically cannot be solved:

- ``fold_accents``: drop code points whose canonical decomposition (NFD) contains a combining
  mark (``é``, ``ș``, ``ё``, ``ά``, ...). At 28x28 an accent is a few pixels on top of its base
  letter; Omniglot has no such pairs. The base letters stay.
- ``dedupe``: drop a code point whose compatibility form (NFKC) is another single class (the
  Ohm sign is the Greek Omega, ``²`` is ``2``, mathematical bold ``𝐀`` is ``A``), and homoglyphs:
  a code point whose outline is identical to that of a smaller code point already kept, in at
  least half of the fonts that draw both (Greek ``Α`` and Cyrillic ``А`` are Latin ``A``).

With matplotlib 3.11 and ``min_fonts=8`` this gives about 1,900 classes in 26 scripts and symbol
blocks (Latin ~400, Braille ~250, mathematical operators, arrows, box drawing, Cyrillic, Georgian,
...); without the two options, about 3,100.

Instances. Instance ``i`` of a class is drawn in font ``order[i % n]`` of a random order of the
``n`` fonts that draw the class, at a fixed size (em = 22 px of 28, so ``o`` stays smaller than
``O``), centred by its bounding box (glyphs wider or taller than 22 px are shrunk to fit), then
distorted by a random affine map: rotation within +-10 degrees, horizontal shear within +-0.15,
scale 0.85-1.05, aspect ratio within +-8 %, translation within +-1.5 px. Rendering is done at
2x (56x56) with FreeType, the distortion with ``torch.nn.functional.grid_sample``, then 2x2
average pooling. The random stream of a class depends only on ``seed`` and its code point, so a
class looks the same whichever other classes are loaded (``max_classes``).

Splits. ``split_by="class"``: a class goes to meta-train, meta-val or meta-test by a hash of its
code point (u < 0.64, < 0.80, else; about 64/16/20 %), so a class's split never depends on the
other classes, the seed or the options. ``split_by="script"``: whole scripts and symbol blocks
(:func:`script_of`) are the "alphabets", as in Omniglot's background/evaluation split; they are
dealt, largest first (ties by name), to the split furthest below its 64/16/20 % share of classes.

Rendered arrays are cached as ``<cache_dir>/glyphs/glyphs-<hash>.npz`` keyed by every argument
that changes them and by the versions of matplotlib, torch and Unicode data (written atomically).

Example:
    >>> train = load_glyphs("train", instances_per_class=20)   # doctest: +SKIP
    >>> x, y = train[0]                      # x: float tensor [1, 28, 28], y: int label
    >>> train.classes[y], train.class_scripts[y]
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import unicodedata

import numpy as np
import torch
from torch.utils.data import Dataset

from bioplastic._checks import check_int, check_optional_int
from bioplastic.data.glyph_catalogue import (
    _SPLITS,
    EXCLUDED_FONTS,
    GLYPH_SIZE,
    SPLIT_FRACTIONS,
    GlyphClass,
    _catalogue,
    glyph_classes,
    glyph_fonts,
    script_of,
)
from bioplastic.data.glyph_render import _render_instances
from bioplastic.data.sources import _atomic_save_npz
from bioplastic.data.sources import cache_dir as _cache_root

__all__ = [
    "EXCLUDED_FONTS",
    "GLYPH_SIZE",
    "SPLIT_FRACTIONS",
    "GlyphClass",
    "GlyphDataset",
    "glyph_classes",
    "glyph_environment",
    "glyph_fonts",
    "load_glyphs",
    "script_of",
]

logger = logging.getLogger(__name__)

#: Bump when rendering or the cached layout changes, so that stale caches are never read.
_CACHE_FORMAT = 1


def glyph_environment() -> dict[str, object]:
    """What the rendered glyphs depend on besides the loader's arguments: matplotlib's version
    (3.10.9 and 3.11.2 render different images), the fonts it ships (name and size), Python's
    Unicode database and the cache format. Results on glyphs record it, so that a rerun can tell
    whether it sees the same images."""
    import matplotlib

    return {
        "format": _CACHE_FORMAT,
        "matplotlib": matplotlib.__version__,
        "unicode": unicodedata.unidata_version,
        "fonts": [(path.name, path.stat().st_size) for path in glyph_fonts()],
    }


def _cache_key(**args) -> str:
    key = {**glyph_environment(), "torch": torch.__version__.split("+")[0], **args}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def _select(classes: tuple[GlyphClass, ...], max_classes: int | None) -> tuple[GlyphClass, ...]:
    """At most ``max_classes`` classes, chosen by code-point hash (independent of ``seed``)."""
    if max_classes is None or max_classes >= len(classes):
        return classes

    def rank(glyph_class: GlyphClass) -> bytes:
        return hashlib.blake2b(
            b"select" + str(glyph_class.codepoint).encode(), digest_size=8
        ).digest()

    chosen = set(sorted(classes, key=rank)[:max_classes])
    return tuple(c for c in classes if c in chosen)


def _load_or_render(
    instances_per_class: int,
    min_fonts: int,
    seed: int,
    fold_accents: bool,
    dedupe: bool,
    max_classes: int | None,
    cache: str | os.PathLike[str] | None,
) -> dict[str, np.ndarray]:
    digest = _cache_key(
        instances_per_class=instances_per_class,
        min_fonts=min_fonts,
        seed=seed,
        fold_accents=fold_accents,
        dedupe=dedupe,
        max_classes=max_classes,
    )
    path = _cache_root(cache) / "glyphs" / f"glyphs-{digest}.npz"
    names = ("images", "instance_class", "instance_font", "codepoints", "scripts")
    names += ("split", "script_split", "fonts")
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as stored:
                arrays = {name: stored[name] for name in names}
            logger.debug("glyphs read from cache %s", path)
            return arrays
        except (OSError, ValueError, KeyError) as err:
            logger.warning("ignoring unreadable glyph cache file %s (%s)", path, err)

    classes = _select(_catalogue(min_fonts, fold_accents, dedupe), max_classes)
    images, instance_font = _render_instances(classes, instances_per_class, seed)
    arrays = {
        "images": images,
        "instance_class": np.repeat(np.arange(len(classes), dtype=np.int32), instances_per_class),
        "instance_font": instance_font,
        "codepoints": np.array([c.codepoint for c in classes], dtype=np.int32),
        "scripts": np.array([c.script for c in classes], dtype=np.str_),
        "split": np.array([c.split for c in classes], dtype=np.str_),
        "script_split": np.array([c.script_split for c in classes], dtype=np.str_),
        "fonts": np.array([p.name for p in glyph_fonts()], dtype=np.str_),
    }
    try:
        _atomic_save_npz(path, **arrays)
    except OSError as err:
        logger.warning("could not cache glyphs at %s (%s); continuing uncached", path, err)
    return arrays


class GlyphDataset(Dataset):
    """Rendered glyphs of one meta-split: items are ``(image float [1, 28, 28] in [0, 1], label)``.

    Labels are ``0..len(classes)-1`` in ascending code-point order within the dataset.

    Attributes:
        data: ``uint8`` tensor ``[N, 28, 28]`` (the images times 255).
        targets: ``int64`` tensor ``[N]`` of labels.
        classes: the characters, indexed by label.
        class_codepoints, class_scripts, class_names: metadata, indexed by label.
        instance_fonts: the font file name of each instance.
        split: the meta-split this dataset holds ("train", "val", "test" or "all").
    """

    def __init__(
        self,
        data: torch.Tensor,
        targets: torch.Tensor,
        codepoints: tuple[int, ...],
        scripts: tuple[str, ...],
        instance_fonts: tuple[str, ...],
        split: str,
    ) -> None:
        self.data = data
        self.targets = targets
        self.class_codepoints = codepoints
        self.class_scripts = scripts
        self.instance_fonts = instance_fonts
        self.split = split

    @property
    def classes(self) -> list[str]:
        return [chr(cp) for cp in self.class_codepoints]

    @property
    def class_names(self) -> list[str]:
        return [unicodedata.name(chr(cp), f"U+{cp:04X}") for cp in self.class_codepoints]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.data[index][None].float() / 255.0, int(self.targets[index])

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All images as float ``[N, 1, 28, 28]`` in [0, 1], and the labels ``[N]``."""
        return self.data[:, None].float() / 255.0, self.targets.clone()

    def __repr__(self) -> str:
        return (
            f"GlyphDataset(split={self.split!r}, classes={len(self.class_codepoints)}, "
            f"instances={len(self)})"
        )


def load_glyphs(
    split: str = "train",
    instances_per_class: int = 20,
    min_fonts: int = 8,
    seed: int = 0,
    split_by: str = "class",
    cache_dir: str | os.PathLike[str] | None = None,
    max_classes: int | None = None,
    fold_accents: bool = True,
    dedupe: bool = True,
) -> GlyphDataset:
    """Load (rendering and caching on first use) one meta-split of the glyphs dataset.

    At the defaults, about 1,900 classes x 20 instances; rendering them all takes 15-20 s on one
    CPU core and is done once per cache folder (every split comes from the same cached file).

    Args:
        split: "train", "val", "test" or "all".
        instances_per_class: images per class (fonts are reused, with new distortions, when a
            class is drawn by fewer fonts than this).
        min_fonts: a code point is a class when at least this many fonts draw it.
        seed: seed of the font order and distortions; the classes and splits do not depend on it.
        split_by: "class" (a fixed hash of each code point) or "script" (whole scripts and
            symbol blocks, like Omniglot's alphabets).
        cache_dir: cache folder; default ``$BIOPLASTIC_CACHE`` or ``~/.cache/bioplastic``.
        max_classes: keep only this many classes (a fixed subset, chosen by code-point hash and
            independent of ``seed``) for quick runs; each keeps the split it has in the full set.
        fold_accents: drop accented variants (see the module docstring).
        dedupe: drop compatibility variants and homoglyphs (see the module docstring).

    Raises:
        ValueError: naming the argument, for an unknown split or split_by, a non-positive count,
            a negative seed, or a ``min_fonts`` above the number of usable fonts.
    """
    if split not in (*_SPLITS, "all"):
        raise ValueError(f"split must be one of 'train', 'val', 'test', 'all'; got {split!r}")
    if split_by not in ("class", "script"):
        raise ValueError(f"split_by must be 'class' or 'script'; got {split_by!r}")
    instances_per_class = check_int("instances_per_class", instances_per_class, 1)
    min_fonts = check_int("min_fonts", min_fonts, 1)
    seed = check_int("seed", seed, 0)
    max_classes = check_optional_int("max_classes", max_classes, 1)

    arrays = _load_or_render(
        instances_per_class,
        min_fonts,
        seed,
        bool(fold_accents),
        bool(dedupe),
        max_classes,
        cache_dir,
    )
    assigned = arrays["split"] if split_by == "class" else arrays["script_split"]
    keep_class = np.ones(len(assigned), dtype=bool) if split == "all" else assigned == split
    new_label = np.cumsum(keep_class) - 1
    keep = keep_class[arrays["instance_class"]]
    fonts = arrays["fonts"]
    return GlyphDataset(
        data=torch.from_numpy(np.ascontiguousarray(arrays["images"][keep])),
        targets=torch.from_numpy(new_label[arrays["instance_class"][keep]].astype(np.int64)),
        codepoints=tuple(int(cp) for cp in arrays["codepoints"][keep_class]),
        scripts=tuple(str(s) for s in arrays["scripts"][keep_class]),
        instance_fonts=tuple(str(fonts[f]) for f in arrays["instance_font"][keep]),
        split=split,
    )
