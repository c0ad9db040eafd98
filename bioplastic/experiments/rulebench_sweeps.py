"""The rule benchmark's sweeps: bio and Adam (Dale init) over MNIST-1D MLP widths x depths, and
the learning-rate basin (:mod:`bioplastic.experiments.rulebench` runs each case).

bio runs with its annealed schedule over each run (``total_steps``, as in the benchmark); Adam at
its constant default rate. ``benchmarks/rulebench.py --part sweep|basin`` writes the results.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bioplastic.experiments.rulebench import TASKS, Task, run_jobs, summarise

__all__ = ["LR_FACTORS", "SWEEP_DEPTHS", "SWEEP_WIDTHS", "run_lr_basin", "run_width_depth_sweep"]

SWEEP_WIDTHS = (64, 128, 256, 512, 1024)
SWEEP_DEPTHS = (1, 2, 3, 4)
LR_FACTORS = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def _default_lr(rule: str) -> float:
    if rule == "bio":
        import inspect

        from bioplastic.optim import BioRule

        return float(inspect.signature(BioRule.__init__).parameters["lr"].default)
    return 1e-3


def run_width_depth_sweep(
    seeds: Sequence[int] = (0,),
    workers: int = 1,
    progress: Callable[[str], None] | None = None,
    journal: Path | None = None,
) -> dict[str, Any]:
    """bio and adam (Dale init) on MNIST-1D MLPs of every width x depth in the sweep."""
    jobs = [
        (Task(f"mnist1d-{d}x{w}", "mnist1d", "mlp", (w,) * d), rule, s, None, None)
        for w in SWEEP_WIDTHS for d in SWEEP_DEPTHS for rule in ("bio", "adam-dale") for s in seeds
    ]  # fmt: skip
    runs = run_jobs(jobs, workers, progress, journal)
    return {"widths": list(SWEEP_WIDTHS), "depths": list(SWEEP_DEPTHS), "seeds": list(seeds),
            "runs": runs, "summary": summarise(runs)}  # fmt: skip


def run_lr_basin(
    task: str = "mnist1d-mlp2x256",
    seeds: Sequence[int] = (0,),
    workers: int = 1,
    progress: Callable[[str], None] | None = None,
    journal: Path | None = None,
) -> dict[str, Any]:
    """bio and adam (Dale init) with lr = default x 1/8 ... x 8; the basin width of each rule is
    the range of factors whose accuracy is within 0.02 of that rule's best."""
    jobs = [
        (TASKS[task], rule, s, None, {"lr": _default_lr(rule.removesuffix("-dale")) * f})
        for rule in ("bio", "adam-dale") for f in LR_FACTORS for s in seeds
    ]  # fmt: skip
    runs = run_jobs(jobs, workers, progress, journal)
    curves: dict[str, dict[str, float]] = {}
    for rule in ("bio", "adam-dale"):
        base = _default_lr(rule.removesuffix("-dale"))
        for f in LR_FACTORS:
            mine = [r for r in runs if r["rule"] == rule]
            accs = [r["test"] or 0.0 for r in mine if math.isclose(r["options"]["lr"], base * f)]
            curves.setdefault(rule, {})[str(f)] = statistics.fmean(accs)
    basin = {}
    for rule, curve in curves.items():
        best = max(curve.values())
        inside = [float(f) for f, acc in curve.items() if acc >= best - 0.02]
        basin[rule] = {"best": best, "low": min(inside), "high": max(inside),
                       "octaves": math.log2(max(inside) / min(inside))}  # fmt: skip
    return {"task": task, "factors": list(LR_FACTORS), "seeds": list(seeds), "runs": runs,
            "curves": curves, "basin": basin}  # fmt: skip
