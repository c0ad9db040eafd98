"""Matplotlib helpers shared by the experiment drivers: one colour per rule, headless figures.

Figures are drawn on an Agg canvas (no display, no global pyplot state), so drivers can run in
threads, CIs and tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["COLORS", "new_figure", "save_figure"]

#: One colour per learning rule and per robustness intervention, the same in every figure.
COLORS: dict[str, str] = {
    "bio": "tab:green",
    "adam": "tab:blue",
    "eg": "tab:orange",
    "enforced": "tab:red",
    "sgd": "tab:purple",
    "adam_pruned_to_bio": "tab:cyan",
    "adam_pruned_finetuned": "tab:gray",
    "bio_rescaled_to_adam": "olive",
}


def new_figure(width: float, height: float) -> Any:
    """A ``width`` x ``height`` inch figure (dpi 110, constrained layout) on an Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Any, path: str | Path) -> Path:
    """Save ``fig`` to ``path`` (creating its folder) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
