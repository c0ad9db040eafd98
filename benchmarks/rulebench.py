"""The rule benchmark: every rule at its defaults on six tasks, plus the width/depth sweep and the
learning-rate basin (see ``bioplastic.experiments.rulebench`` for tasks, rules and targets).

Writes under ``benchmarks/results/``: ``rulebench.{json,md}`` and
``figures/rulebench_accuracy_connectivity.png``; ``rulebench_sweep.{json,md}`` and
``figures/rulebench_sweep.png``; ``rulebench_lr_basin.{json,md}`` and
``figures/rulebench_lr_basin.png``. Runs are independent processes with one thread each.

    python benchmarks/rulebench.py [--part all|bench|sweep|basin] [--seeds 3] [--workers N]

Needs the ``peers`` extra (deep-rewire, rigl-torch) for the sparse peers. The whole run is about
90 CPU-minutes: with 16 workers a few minutes, with 2 about 45.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

from bioplastic._io import write_atomic
from bioplastic.experiments import rulebench as rb
from bioplastic.experiments import rulebench_sweeps as sweeps

RESULTS = Path(__file__).resolve().parent / "results"


def _write(stem: str, data: dict, table: str) -> None:
    write_atomic(RESULTS / f"{stem}.json", json.dumps(data, indent=1) + "\n")
    write_atomic(RESULTS / f"{stem}.md", table)
    print(table, flush=True)


def _sweep_markdown(sweep: dict) -> str:
    summary = sweep["summary"]
    lines = [
        f"# Width/depth sweep on MNIST-1D ({len(sweep['seeds'])} seed(s), defaults)",
        "",
        "Test accuracy bio / adam (Dale init), and bio - adam; target: bio within 0.02 of adam.",
        "",
        "| depth \\ width | " + " | ".join(map(str, sweep["widths"])) + " |",
        "|---|" + "---|" * len(sweep["widths"]),
    ]
    worst = math.inf
    for d in sweep["depths"]:
        cells = []
        for w in sweep["widths"]:
            entry = summary[f"mnist1d-{d}x{w}"]
            bio, adam = entry["bio"]["test"] or 0.0, entry["adam-dale"]["test"] or 0.0
            worst = min(worst, bio - adam)
            cells.append(f"{bio:.3f} / {adam:.3f} ({bio - adam:+.3f})")
        lines.append(f"| {d} | " + " | ".join(cells) + " |")
    verdict = "pass" if worst >= -0.02 else "MISS"
    lines += ["", f"Worst bio - adam: {worst:+.3f} ({verdict})."]
    return "\n".join(lines) + "\n"


def _basin_markdown(basin: dict) -> str:
    lines = [
        f"# Learning-rate basin on {basin['task']} ({len(basin['seeds'])} seed(s))",
        "",
        "| rule | " + " | ".join(f"x{f:g}" for f in basin["factors"]) + " | basin (octaves) |",
        "|---|" + "---|" * (len(basin["factors"]) + 1),
    ]
    for rule, curve in basin["curves"].items():
        b = basin["basin"][rule]
        cells = " | ".join(f"{curve[str(f)]:.3f}" for f in basin["factors"])
        lines.append(f"| {rule} | {cells} | x{b['low']:g} .. x{b['high']:g} ({b['octaves']:g}) |")
    bio, adam = basin["basin"]["bio"]["octaves"], basin["basin"]["adam-dale"]["octaves"]
    lines += [
        "",
        f"Target: bio's basin at least as wide as adam's: {'pass' if bio >= adam else 'MISS'}.",
    ]
    return "\n".join(lines) + "\n"


def _plot_sweep(sweep: dict, basin: dict | None) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.8), constrained_layout=True)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 2, 1)
    grid = [
        [(sweep["summary"][f"mnist1d-{d}x{w}"]["bio"]["test"] or 0.0)
         - (sweep["summary"][f"mnist1d-{d}x{w}"]["adam-dale"]["test"] or 0.0)
         for w in sweep["widths"]] for d in sweep["depths"]
    ]  # fmt: skip
    image = ax.imshow(grid, cmap="RdBu", vmin=-0.2, vmax=0.2, origin="lower")
    ax.set_xticks(range(len(sweep["widths"])), [str(w) for w in sweep["widths"]])
    ax.set_yticks(range(len(sweep["depths"])), [str(d) for d in sweep["depths"]])
    ax.set_xlabel("width")
    ax.set_ylabel("depth (hidden layers)")
    ax.set_title("bio - adam, MNIST-1D test accuracy")
    for i, row in enumerate(grid):
        for j, value in enumerate(row):
            ax.text(j, i, f"{value:+.2f}", ha="center", va="center", fontsize=8)
    fig.colorbar(image, ax=ax)
    if basin is not None:
        ax = fig.add_subplot(1, 2, 2)
        for rule, curve in basin["curves"].items():
            ax.plot(basin["factors"], [curve[str(f)] for f in basin["factors"]], "o-", label=rule)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("lr / default lr")
        ax.set_ylabel("test accuracy")
        ax.set_title(f"learning-rate basin, {basin['task']}")
        ax.legend()
        ax.grid(alpha=0.3)
    fig.savefig(RESULTS / "figures" / "rulebench_sweep.png", dpi=110)


def _environment(workers: int) -> dict:
    import platform

    import torch

    from bioplastic.data.glyphs import glyph_environment

    return {"python": platform.python_version(), "torch": torch.__version__,
            "machine": platform.machine(), "cpus": os.cpu_count(), "workers": workers,
            "glyphs": glyph_environment()}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("all", "bench", "sweep", "basin"), default="all")
    parser.add_argument("--seeds", type=int, default=3, help="seeds of the benchmark (3)")
    parser.add_argument("--sweep-seeds", type=int, default=1, help="seeds of sweep/basin (1)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--tasks", default=",".join(rb.TASKS), help="comma-separated task names")
    parser.add_argument(
        "--journal", type=Path, default=Path("runs/rulebench.jsonl"),
        help="every finished run is appended here; a rerun skips runs found in it",
    )  # fmt: skip
    args = parser.parse_args(argv)
    (RESULTS / "figures").mkdir(parents=True, exist_ok=True)

    def progress(line: str) -> None:
        print(line, flush=True)

    if args.part in ("all", "bench"):
        results = rb.run_rulebench(
            args.tasks.split(","), seeds=range(args.seeds), workers=args.workers,
            progress=progress, journal=args.journal,
        )  # fmt: skip
        results["targets"] = rb.check_targets(results)
        results["environment"] = _environment(args.workers)
        _write("rulebench", results, rb.format_markdown(results))
        rb.plot_accuracy_vs_connectivity(
            results, RESULTS / "figures" / "rulebench_accuracy_connectivity.png"
        )
    sweep = basin = None
    if args.part in ("all", "basin"):
        basin = sweeps.run_lr_basin(seeds=range(args.sweep_seeds), workers=args.workers,
                                progress=progress, journal=args.journal)  # fmt: skip
        _write("rulebench_lr_basin", basin, _basin_markdown(basin))
    if args.part in ("all", "sweep"):
        sweep = sweeps.run_width_depth_sweep(
            range(args.sweep_seeds), args.workers, progress, args.journal
        )
        _write("rulebench_sweep", sweep, _sweep_markdown(sweep))
    if sweep is not None:
        _plot_sweep(sweep, basin)


if __name__ == "__main__":
    main()
