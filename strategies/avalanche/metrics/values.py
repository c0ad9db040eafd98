"""Metric values for the probes: histograms and matrices (with heatmap images).

:class:`HistogramValue` becomes a TensorBoard histogram (text loggers print a summary) and
:class:`MatrixValue` a heatmap image (the JSON logger stores the numbers).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from avalanche.evaluation.metric_results import AlternativeValues, TensorImage
from torch import Tensor

__all__ = ["HistogramValue", "MatrixValue"]


class HistogramValue(AlternativeValues):
    """Samples for a TensorBoard histogram; loggers without histograms print a summary."""

    def __init__(self, values: Tensor):
        values = values.detach().reshape(-1).to("cpu", torch.float32)
        super().__init__(values)
        self.values = values

    def summary(self) -> dict[str, float]:
        """``n``, ``mean``, ``std``, ``min``, ``max`` of the samples (NaN when empty)."""
        v = self.values[torch.isfinite(self.values)].double()
        if v.numel() == 0:
            return {"n": 0, "mean": math.nan, "std": math.nan, "min": math.nan, "max": math.nan}
        return {
            "n": int(v.numel()),
            "mean": float(v.mean()),
            "std": float(v.std(unbiased=False)),
            "min": float(v.min()),
            "max": float(v.max()),
        }

    def __str__(self) -> str:
        s = self.summary()
        return f"histogram(n={s['n']}, mean={s['mean']:.4g}, std={s['std']:.4g})"


class MatrixValue(AlternativeValues):
    """A small matrix (task x task overlap, task x unit allocation) and its heatmap image.

    TensorBoard gets the image; :class:`strategies.avalanche.JSONResultsLogger` stores the
    numbers (``matrix.tolist()``); text loggers print the shape. The image is drawn only when
    a logger asks for one (:meth:`best_supported_value` with ``TensorImage``), once: a run
    without TensorBoard never pays for it.

    Args:
        matrix: values in [0, 1] (NaN drawn grey).
        title, xlabel, ylabel: labels of a ``"labeled"`` figure.
        figure: ``"labeled"`` (or True, the default): a matplotlib figure (Agg backend) with
            title, axis labels, row names and a colour bar (about 0.1 s); ``"fast"``: the matrix
            drawn cell by cell with matplotlib's viridis colormap (about a millisecond, no
            labels); ``False``/``None``: no image.
        row_names, col_names: tick labels of a ``"labeled"`` figure (e.g. the tasks), shown
            when there are at most 20 rows / columns; default: the indices.
    """

    def __init__(
        self,
        matrix: Tensor,
        title: str = "",
        figure: bool | str | None = "labeled",
        xlabel: str = "",
        ylabel: str = "",
        row_names: Sequence[str] | None = None,
        col_names: Sequence[str] | None = None,
    ):
        matrix = matrix.detach().to("cpu", torch.float64)
        if figure is True:
            figure = "labeled"
        if figure not in ("fast", "labeled", False, None):
            raise ValueError(
                f"figure must be 'fast', 'labeled', True, False or None, got {figure!r}"
            )
        super().__init__()
        self.matrix = matrix
        self.title = title
        self.figure = figure or None
        self.labels = (xlabel, ylabel, _names(row_names), _names(col_names))
        self._image: TensorImage | None = None

    def image(self) -> TensorImage | None:
        """The heatmap (drawn at the first call), or None when ``figure`` is off."""
        if self._image is None and self.figure is not None:
            if self.figure == "fast":
                self._image = _fast_heatmap(self.matrix)
            else:
                self._image = _labeled_heatmap(self.matrix, self.title, *self.labels)
            self.alternatives = (self._image,)
        return self._image

    def best_supported_value(self, *supported_types: type) -> Any:
        if self.figure is not None and any(
            isinstance(t, type) and issubclass(TensorImage, t) for t in supported_types
        ):
            self.image()
        return super().best_supported_value(*supported_types)

    def tolist(self) -> list[list[float | None]]:
        """The matrix as nested lists, NaN as ``None`` (JSON-safe)."""
        return [[v if math.isfinite(v) else None for v in row] for row in self.matrix.tolist()]

    def __str__(self) -> str:
        return f"matrix{tuple(self.matrix.shape)}"


def _names(names: Sequence[str] | None) -> list[str] | None:
    return None if names is None else [str(n) for n in names]


def _fast_heatmap(matrix: Tensor) -> TensorImage:
    """Each cell a block of pixels coloured by viridis on [0, 1]; ``[3, H, W]`` in [0, 1]."""
    from matplotlib import colormaps

    cmap = colormaps["viridis"].with_extremes(bad="0.5")
    rows, cols = matrix.shape
    rgb = cmap(np.ma.masked_invalid(matrix.clamp(0, 1).numpy()))[..., :3]
    height = max(1, min(32, 256 // max(rows, 1)))
    width = max(1, min(32, 512 // max(cols, 1)))
    rgb = np.repeat(np.repeat(rgb, height, axis=0), width, axis=1)
    return TensorImage(torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float())


def _labeled_heatmap(
    matrix: Tensor,
    title: str,
    xlabel: str,
    ylabel: str,
    row_names: list[str] | None = None,
    col_names: list[str] | None = None,
) -> TensorImage:
    """Render ``matrix`` as a heatmap with the Agg backend (no pyplot, no global state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows, cols = matrix.shape
    width = min(10.0, 3.5 + 0.35 * cols) if cols <= 24 else 8.0
    fig = Figure(figsize=(width, min(8.0, 2.0 + 0.35 * rows)), dpi=80)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(matrix.numpy(), vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto",
                   interpolation="nearest")  # fmt: skip
    fig.colorbar(im, ax=ax)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if rows <= 20:
        ax.set_yticks(range(rows), row_names if row_names and len(row_names) == rows else None)
    if cols <= 20:
        ax.set_xticks(range(cols), col_names if col_names and len(col_names) == cols else None)
    fig.tight_layout()
    canvas.draw()
    rgb = np.asarray(canvas.buffer_rgba())[..., :3].copy()
    return TensorImage(torch.from_numpy(rgb).permute(2, 0, 1).contiguous())
