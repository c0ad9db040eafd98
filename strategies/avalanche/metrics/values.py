"""Metric values for the probes: histograms and matrices (with heatmap images).

:class:`HistogramValue` becomes a TensorBoard histogram (text loggers print a summary) and
:class:`MatrixValue` a heatmap image (the JSON logger stores the numbers).
"""

from __future__ import annotations

import math

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
    numbers (``matrix.tolist()``); text loggers print the shape.

    Args:
        matrix: values in [0, 1] (NaN drawn grey).
        title, xlabel, ylabel: labels of a ``"labeled"`` figure.
        figure: ``"fast"`` (or True): the matrix drawn cell by cell with matplotlib's viridis
            colormap (about a millisecond); ``"labeled"``: a matplotlib figure (Agg backend)
            with title, axes and colour bar (about 0.2 s); ``False``/``None``: no image.
    """

    def __init__(
        self,
        matrix: Tensor,
        title: str = "",
        figure: bool | str | None = "fast",
        xlabel: str = "",
        ylabel: str = "",
    ):
        matrix = matrix.detach().to("cpu", torch.float64)
        if figure is True:
            figure = "fast"
        if figure not in ("fast", "labeled", False, None):
            raise ValueError(
                f"figure must be 'fast', 'labeled', True, False or None, got {figure!r}"
            )
        image = None
        if figure == "fast":
            image = _fast_heatmap(matrix)
        elif figure == "labeled":
            image = _labeled_heatmap(matrix, title, xlabel, ylabel)
        super().__init__(*([image] if image is not None else []))
        self.matrix = matrix
        self.title = title

    def tolist(self) -> list[list[float | None]]:
        """The matrix as nested lists, NaN as ``None`` (JSON-safe)."""
        return [[v if math.isfinite(v) else None for v in row] for row in self.matrix.tolist()]

    def __str__(self) -> str:
        return f"matrix{tuple(self.matrix.shape)}"


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


def _labeled_heatmap(matrix: Tensor, title: str, xlabel: str, ylabel: str) -> TensorImage:
    """Render ``matrix`` as a heatmap with the Agg backend (no pyplot, no global state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows, cols = matrix.shape
    width = min(10.0, 2.5 + 0.35 * cols) if cols <= 24 else 8.0
    fig = Figure(figsize=(width, min(8.0, 1.8 + 0.35 * rows)), dpi=80)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(matrix.numpy(), vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto",
                   interpolation="nearest")  # fmt: skip
    fig.colorbar(im, ax=ax)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if rows <= 20:
        ax.set_yticks(range(rows))
    if cols <= 20:
        ax.set_xticks(range(cols))
    fig.tight_layout()
    canvas.draw()
    rgb = np.asarray(canvas.buffer_rgba())[..., :3].copy()
    return TensorImage(torch.from_numpy(rgb).permute(2, 0, 1).contiguous())
