"""The glyph catalogue: which Unicode characters become classes, their scripts and splits.

See :mod:`bioplastic.data.glyphs` for the data set these classes make up.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import time
import unicodedata
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bioplastic._checks import check_int

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
_SPLIT_SALT = b"bioplastic-glyphs-split-v1"

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
