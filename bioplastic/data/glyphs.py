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

import functools
import hashlib
import json
import logging
import math
import os
import re
import time
import unicodedata
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from bioplastic._checks import check_int, check_optional_int
from bioplastic.data.sources import _atomic_save_npz
from bioplastic.data.sources import cache_dir as _cache_root

__all__ = [
    "EXCLUDED_FONTS",
    "GLYPH_SIZE",
    "SPLIT_FRACTIONS",
    "GlyphClass",
    "GlyphDataset",
    "glyph_classes",
    "glyph_fonts",
    "load_glyphs",
    "script_of",
]

logger = logging.getLogger(__name__)

#: Side of the square output images, in pixels.
GLYPH_SIZE = 28
#: Target shares of classes in meta-train, meta-val and meta-test.
SPLIT_FRACTIONS: dict[str, float] = {"train": 0.64, "val": 0.16, "test": 0.20}
#: Font files left out (regular expressions on the file name), with the reason.
EXCLUDED_FONTS: dict[str, str] = {
    r"LastResort": "placeholder boxes for every code point",
    r"cm\w+10\.ttf": "BaKoMa TeX fonts: TeX encodings behind a Latin-1 character map",
    r"STIXNonUni": "glyphs without Unicode code points (private use)",
    r"STIXSiz": "larger size variants of STIXGeneral's delimiters and operators",
}

_SPLITS = ("train", "val", "test")
_SUPERSAMPLE = 2
_CANVAS = GLYPH_SIZE * _SUPERSAMPLE  # rendering canvas, px
_EM_PX = 44  # font size on the canvas: em = 22 px at 28x28
_MAX_EXTENT = 44  # glyphs larger than this (canvas px, 22 px at 28) are shrunk to fit
_ROTATION_DEG = 10.0
_SHEAR = 0.15
_SCALE = (0.85, 1.05)
_ASPECT = 0.08
_SHIFT_PX = 1.5  # at 28x28
_BATCH = 2048
_SPLIT_SALT = b"bioplastic-glyphs-split-v1"
#: Bump when rendering or the cached layout changes, so that stale caches are never read.
_CACHE_FORMAT = 1

# Name prefixes that identify a writing system; everything else is grouped by Unicode block.
_SCRIPT_PREFIXES = (
    "LATIN",
    "GREEK",
    "COPTIC",
    "CYRILLIC",
    "GLAGOLITIC",
    "ARMENIAN",
    "GEORGIAN",
    "HEBREW",
    "ARABIC",
    "SYRIAC",
    "THAANA",
    "NKO",
    "DEVANAGARI",
    "BENGALI",
    "THAI",
    "LAO",
    "TIBETAN",
    "ETHIOPIC",
    "CHEROKEE",
    "CANADIAN SYLLABICS",
    "OGHAM",
    "RUNIC",
    "MONGOLIAN",
    "TIFINAGH",
    "HANGUL",
    "BRAILLE",
)
# (first, last, name) of the Unicode blocks (merged where they belong together) that hold the
# symbols and numbers; letters are caught by _SCRIPT_PREFIXES first.
_BLOCKS = (
    (0x0000, 0x00FF, "ASCII and Latin-1 symbols"),
    (0x02B0, 0x02FF, "Spacing modifier letters"),
    (0x1D00, 0x1DBF, "Phonetic extensions"),
    (0x2000, 0x206F, "General punctuation"),
    (0x2070, 0x209F, "Superscripts and subscripts"),
    (0x20A0, 0x20CF, "Currency symbols"),
    (0x2100, 0x214F, "Letterlike symbols"),
    (0x2150, 0x218F, "Number forms"),
    (0x2190, 0x21FF, "Arrows"),
    (0x2200, 0x22FF, "Mathematical operators"),
    (0x2300, 0x23FF, "Miscellaneous technical"),
    (0x2400, 0x245F, "Control pictures"),
    (0x2460, 0x24FF, "Enclosed alphanumerics"),
    (0x2500, 0x257F, "Box drawing"),
    (0x2580, 0x259F, "Block elements"),
    (0x25A0, 0x25FF, "Geometric shapes"),
    (0x2600, 0x26FF, "Miscellaneous symbols"),
    (0x2700, 0x27BF, "Dingbats"),
    (0x27C0, 0x27EF, "Mathematical operators"),
    (0x27F0, 0x27FF, "Arrows"),
    (0x2900, 0x297F, "Arrows"),
    (0x2980, 0x2AFF, "Mathematical operators"),
    (0x2B00, 0x2BFF, "Miscellaneous symbols and arrows"),
    (0xA700, 0xA7FF, "Modifier tone letters"),
)


@dataclass(frozen=True)
class GlyphClass:
    """One class of the glyphs dataset.

    Attributes:
        codepoint: the Unicode code point.
        script: its writing system or symbol block (:func:`script_of`).
        fonts: file names of the fonts that draw it, sorted.
        split: its meta-split under ``split_by="class"`` ("train", "val" or "test").
        script_split: its meta-split under ``split_by="script"``.
    """

    codepoint: int
    script: str
    fonts: tuple[str, ...]
    split: str
    script_split: str

    @property
    def char(self) -> str:
        return chr(self.codepoint)

    @property
    def name(self) -> str:
        return unicodedata.name(self.char, f"U+{self.codepoint:04X}")


def script_of(codepoint: int) -> str:
    """The "alphabet" of a code point: its script, else its (merged) Unicode symbol block.

    Scripts come from the first word(s) of the Unicode name (``"LATIN SMALL LETTER A"`` ->
    ``"Latin"``); symbols and numbers outside a script go by block (``"Arrows"``,
    ``"Box drawing"``, ...), and anything else by general category (``"Other So"``).
    """
    name = unicodedata.name(chr(codepoint), "")
    for prefix in _SCRIPT_PREFIXES:
        if name.startswith(prefix + " "):
            return prefix.title()
    for first, last, block in _BLOCKS:
        if first <= codepoint <= last:
            return block
    return "Other " + unicodedata.category(chr(codepoint))


def glyph_fonts() -> tuple[Path, ...]:
    """The matplotlib font files the glyphs are drawn from, sorted by file name."""
    import matplotlib

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    return tuple(
        path
        for path in sorted(folder.glob("*.ttf"))
        if not any(re.match(pattern, path.name) for pattern in EXCLUDED_FONTS)
    )


def _is_candidate(codepoint: int) -> bool:
    return unicodedata.category(chr(codepoint))[0] in "LNS" and codepoint != 0xFFFD


def _has_accent(codepoint: int) -> bool:
    return any(unicodedata.combining(c) for c in unicodedata.normalize("NFD", chr(codepoint)))


def _outline_key(font) -> bytes:
    """Bytes equal exactly when two glyphs of one font have the same outline (the last loaded)."""
    vertices, codes = font.get_path()
    # Relative to the first point: homoglyphs are copies of one outline with other side bearings.
    return codes.tobytes() + (vertices - vertices[:1]).tobytes()


def _split_of(codepoint: int) -> str:
    digest = hashlib.blake2b(_SPLIT_SALT + str(codepoint).encode(), digest_size=8).digest()
    u = int.from_bytes(digest, "big") / 2.0**64
    if u < SPLIT_FRACTIONS["train"]:
        return "train"
    if u < SPLIT_FRACTIONS["train"] + SPLIT_FRACTIONS["val"]:
        return "val"
    return "test"


def _script_splits(scripts: list[str]) -> dict[str, str]:
    """Deal whole scripts, largest first, to the split furthest below its share of classes."""
    sizes = Counter(scripts)
    total = len(scripts)
    filled = dict.fromkeys(_SPLITS, 0)
    assignment = {}
    for script, size in sorted(sizes.items(), key=lambda item: (-item[1], item[0])):
        split = max(_SPLITS, key=lambda s: SPLIT_FRACTIONS[s] * total - filled[s])
        assignment[script] = split
        filled[split] += size
    return assignment


@functools.lru_cache(maxsize=8)
def _catalogue(min_fonts: int, fold_accents: bool, dedupe: bool) -> tuple[GlyphClass, ...]:
    from matplotlib.ft2font import FT2Font, LoadFlags

    started = time.perf_counter()
    fonts = glyph_fonts()
    if min_fonts > len(fonts):
        raise ValueError(
            f"min_fonts must be an integer in [1, {len(fonts)}] (the number of usable fonts), "
            f"got {min_fonts}"
        )
    handles = [FT2Font(str(path)) for path in fonts]
    charmaps = [handle.get_charmap() for handle in handles]
    # The character maps bound the coverage; only code points that can reach min_fonts are loaded.
    mapped = Counter(cp for charmap in charmaps for cp, glyph in charmap.items() if glyph)
    wanted = {
        cp
        for cp, count in mapped.items()
        if count >= min_fonts and _is_candidate(cp) and not (fold_accents and _has_accent(cp))
    }
    flags = LoadFlags.NO_SCALE | LoadFlags.NO_HINTING
    coverage: dict[int, list[int]] = {}  # code point -> indices of the fonts that draw it
    outlines: dict[tuple[int, int], bytes] = {}  # (font index, code point) -> outline key
    for index, (font, charmap) in enumerate(zip(handles, charmaps, strict=True)):
        for codepoint in sorted(wanted & charmap.keys()):
            glyph = font.load_glyph(charmap[codepoint], flags)
            if glyph.width == 0 or glyph.height == 0:  # an empty outline draws nothing
                continue
            coverage.setdefault(codepoint, []).append(index)
            if dedupe:
                outlines[index, codepoint] = _outline_key(font)

    kept = sorted(cp for cp, idx in coverage.items() if len(idx) >= min_fonts)
    if dedupe:
        present = set(kept)
        kept = [cp for cp in kept if _compat_target(cp) not in present]
        kept = _drop_homoglyphs(kept, coverage, outlines)

    scripts = [script_of(cp) for cp in kept]
    by_script = _script_splits(scripts)
    classes = tuple(
        GlyphClass(
            codepoint=cp,
            script=script,
            fonts=tuple(fonts[i].name for i in coverage[cp]),
            split=_split_of(cp),
            script_split=by_script[script],
        )
        for cp, script in zip(kept, scripts, strict=True)
    )
    logger.info(
        "glyph catalogue: %d classes in %d scripts from %d fonts (min_fonts=%d) in %.1f s",
        len(classes),
        len(by_script),
        len(fonts),
        min_fonts,
        time.perf_counter() - started,
    )
    return classes


def _compat_target(codepoint: int) -> int | None:
    """The single code point this one is a compatibility variant of, if any."""
    folded = unicodedata.normalize("NFKC", chr(codepoint))
    if len(folded) == 1 and ord(folded) != codepoint:
        return ord(folded)
    return None


def _drop_homoglyphs(
    codepoints: list[int], coverage: dict[int, list[int]], outlines: dict[tuple[int, int], bytes]
) -> list[int]:
    """Drop each code point drawn like a smaller kept one in at least half their shared fonts."""
    first_with: dict[tuple[int, bytes], int] = {}  # (font, outline) -> first kept code point
    kept = []
    for cp in codepoints:  # ascending: the smaller code point is the one kept
        twins = {first_with.get((f, outlines[f, cp])) for f in coverage[cp]} - {None}
        duplicate_of = None
        for twin in sorted(twins):
            shared = set(coverage[cp]) & set(coverage[twin])
            same = sum(outlines[f, cp] == outlines[f, twin] for f in shared)
            if 2 * same >= len(shared):
                duplicate_of = twin
                break
        if duplicate_of is not None:
            logger.debug("dropping U+%04X: homoglyph of U+%04X", cp, duplicate_of)
            continue
        kept.append(cp)
        for f in coverage[cp]:
            first_with.setdefault((f, outlines[f, cp]), cp)
    return kept


def glyph_classes(
    min_fonts: int = 8, fold_accents: bool = True, dedupe: bool = True
) -> tuple[GlyphClass, ...]:
    """All classes of the glyphs dataset, by ascending code point (see the module docstring).

    Takes about 2 s the first time in a process (every font's character map is read), then is
    memoised.

    Args:
        min_fonts: a code point is a class when at least this many fonts draw it.
        fold_accents: drop code points with a combining mark in their NFD decomposition.
        dedupe: drop compatibility variants and homoglyphs of smaller code points.
    """
    min_fonts = check_int("min_fonts", min_fonts, 1)
    return _catalogue(min_fonts, bool(fold_accents), bool(dedupe))


def _render_canvas(font, codepoint: int) -> np.ndarray:
    """The glyph on a blank [_CANVAS, _CANVAS] uint8 canvas, centred by its bounding box."""
    from matplotlib.ft2font import LoadFlags

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # matplotlib warns about glyphs it falls back on
        font.set_text(chr(codepoint), 0.0, flags=LoadFlags.NO_HINTING)
        font.draw_glyphs_to_bitmap(antialiased=True)
        bitmap = np.asarray(font.get_image())
    rows, cols = np.nonzero(bitmap)
    canvas = np.zeros((_CANVAS, _CANVAS), dtype=np.uint8)
    if len(rows) == 0:
        return canvas
    bitmap = bitmap[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    height, width = bitmap.shape
    if max(height, width) > _MAX_EXTENT:
        factor = _MAX_EXTENT / max(height, width)
        size = (max(1, round(height * factor)), max(1, round(width * factor)))
        shrunk = F.interpolate(
            torch.from_numpy(bitmap.astype(np.float32))[None, None],
            size=size,
            mode="bilinear",
            antialias=True,
            align_corners=False,
        )
        bitmap = shrunk[0, 0].round().clamp(0, 255).to(torch.uint8).numpy()
        height, width = bitmap.shape
    top, left = (_CANVAS - height) // 2, (_CANVAS - width) // 2
    canvas[top : top + height, left : left + width] = bitmap
    return canvas


def _affine_thetas(rng: np.random.Generator, n: int) -> np.ndarray:
    """[n, 2, 3] ``affine_grid`` matrices (output -> input, normalised coordinates)."""
    angle = np.deg2rad(rng.uniform(-_ROTATION_DEG, _ROTATION_DEG, n))
    shear = rng.uniform(-_SHEAR, _SHEAR, n)
    scale = rng.uniform(*_SCALE, n)
    aspect = 1.0 + rng.uniform(-_ASPECT, _ASPECT, n)
    shift = rng.uniform(-_SHIFT_PX, _SHIFT_PX, (n, 2)) * 2.0 / GLYPH_SIZE
    thetas = np.empty((n, 2, 3))
    for i in range(n):
        c, s = math.cos(angle[i]), math.sin(angle[i])
        forward = (
            np.array([[c, -s], [s, c]])
            @ np.array([[1.0, shear[i]], [0.0, 1.0]])
            @ np.diag([scale[i] * math.sqrt(aspect[i]), scale[i] / math.sqrt(aspect[i])])
        )
        inverse = np.linalg.inv(forward)
        thetas[i, :, :2] = inverse
        thetas[i, :, 2] = -inverse @ shift[i]
    return thetas


def _render_instances(
    classes: tuple[GlyphClass, ...], instances_per_class: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Render every instance: ``(images uint8 [N, 28, 28], font index into glyph_fonts())``."""
    from matplotlib.ft2font import FT2Font

    started = time.perf_counter()
    fonts = glyph_fonts()
    font_index = {path.name: i for i, path in enumerate(fonts)}
    instance_font = np.empty(len(classes) * instances_per_class, dtype=np.int16)
    thetas = np.empty((len(classes) * instances_per_class, 2, 3))
    for c, glyph_class in enumerate(classes):
        rng = np.random.default_rng([seed, glyph_class.codepoint])
        order = rng.permutation(len(glyph_class.fonts))
        rows = slice(c * instances_per_class, (c + 1) * instances_per_class)
        chosen = order[np.arange(instances_per_class) % len(order)]
        instance_font[rows] = [font_index[glyph_class.fonts[j]] for j in chosen]
        thetas[rows] = _affine_thetas(rng, instances_per_class)

    # Each (class, font) pair is drawn once by FreeType, however many instances use it.
    instance_class = np.repeat(np.arange(len(classes)), instances_per_class)
    pairs, base_of_instance = np.unique(
        np.stack([instance_class, instance_font]), axis=1, return_inverse=True
    )
    bases = np.empty((pairs.shape[1], _CANVAS, _CANVAS), dtype=np.uint8)
    handles: dict[int, object] = {}
    for p, (c, f) in enumerate(pairs.T):
        if f not in handles:
            handles[f] = FT2Font(str(fonts[f]))
            handles[f].set_size(_EM_PX, 72)  # 72 dpi: points are pixels
        bases[p] = _render_canvas(handles[f], classes[c].codepoint)
    logger.debug("drew %d (class, font) pairs in %.1f s", len(bases), time.perf_counter() - started)

    images = np.empty((len(instance_font), GLYPH_SIZE, GLYPH_SIZE), dtype=np.uint8)
    base_of_instance = torch.from_numpy(base_of_instance.reshape(-1))
    for start in range(0, len(images), _BATCH):
        stop = min(start + _BATCH, len(images))
        x = torch.from_numpy(bases).index_select(0, base_of_instance[start:stop])
        x = x[:, None].float() / 255.0
        theta = torch.from_numpy(thetas[start:stop]).float()
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        warped = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        small = F.avg_pool2d(warped, _SUPERSAMPLE)[:, 0]
        images[start:stop] = (small * 255.0).round().clamp(0, 255).to(torch.uint8).numpy()
    logger.info(
        "rendered %d glyph images of %d classes in %.1f s",
        len(images),
        len(classes),
        time.perf_counter() - started,
    )
    return images, instance_font


def _cache_key(**args) -> str:
    import matplotlib

    fonts = [(path.name, path.stat().st_size) for path in glyph_fonts()]
    key = {
        "format": _CACHE_FORMAT,
        "matplotlib": matplotlib.__version__,
        "torch": torch.__version__.split("+")[0],
        "unicode": unicodedata.unidata_version,
        "fonts": fonts,
        **args,
    }
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
