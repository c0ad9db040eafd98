"""Rendering glyph instances: one supersampled bitmap per (class, font), random affine warps.

See :mod:`bioplastic.data.glyphs` for the data set and its cache.
"""

from __future__ import annotations

import logging
import math
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from bioplastic.data.glyph_catalogue import GLYPH_SIZE, GlyphClass, glyph_fonts

logger = logging.getLogger(__name__)

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
