"""Mechanism ablations of the bio rule, one claim per column (issue "claims by mechanism", 2).

Rows switch one mechanism of the bio rule or of the Dale-typed model off, or scale it; columns
are the claims (robustness at matched clean accuracy, few-shot on glyphs, task allocation and
forgetting on split digits and split MNIST-1D, plausibility); cells are the paired difference
``variant - adam`` over seeds with a 95% t-CI (see ``bioplastic.experiments.ablation``). Writes
``benchmarks/results/ablation.{json,md}`` and ``benchmarks/results/figures/ablation.png``.

    python benchmarks/ablation.py [--seeds 5] [--workers 2] [--quick]
    python benchmarks/ablation.py --reformat   # table, md and figure again from the saved rows

Every finished job is appended to ``--journal`` (JSON lines): an interrupted run continues where
it stopped. About 15 CPU-minutes at the default settings and 5 seeds; ``--quick`` runs tiny
settings (1 seed, 3 variants, 32 hidden units) in about a minute and writes
``runs/ablation_quick.*`` instead.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from bioplastic._io import write_atomic
from bioplastic.experiments import ablation as ab
from bioplastic.experiments._common import jsonable, write_json

RESULTS = Path(__file__).resolve().parent / "results"
QUICK_VARIANTS = ("defaults", "noise 0.1", "Dale typing off")


def plot_heatmap(results: Mapping[str, Any], path: str | Path) -> Path:
    """Rows variants, columns claims; colour = the difference in the claim's favour (blue)
    or against it (red), scaled per column; each cell prints the difference and its CI."""
    from bioplastic.experiments._figures import new_figure, save_figure

    table = results["table"]
    metrics = [m for m in ab.METRICS if m.job in set(results["config"]["jobs"])]
    variants = list(table)
    colour = torch.full((len(variants), len(metrics)), math.nan)
    for j, m in enumerate(metrics):
        cells = [table[v].get(f"{m.job}/{m.key}") for v in variants]
        scale = max((abs(c["mean_diff"]) for c in cells if c), default=0.0) or 1.0
        for i, c in enumerate(cells):
            if c is not None:
                colour[i, j] = m.better * c["mean_diff"] / scale
    fig = new_figure(1.9 * len(metrics) + 2.5, 0.5 * len(variants) + 1.8)
    ax = fig.add_subplot()
    ax.imshow(colour.numpy(), cmap="RdBu", vmin=-1, vmax=1, aspect="auto")
    for i, v in enumerate(variants):
        for j, m in enumerate(metrics):
            text = ab.cell_text(table[v].get(f"{m.job}/{m.key}"), m.better, sep="\n")
            dark = abs(float(colour[i, j])) > 0.6  # NaN (no cell) compares False
            ax.text(j, i, text, ha="center", va="center", fontsize=6.5,
                    color="white" if dark else "black")  # fmt: skip
    ax.set_xticks(range(len(metrics)), [m.label.replace(": ", ":\n") for m in metrics], fontsize=7)
    ax.set_yticks(range(len(variants)), variants, fontsize=8)
    ax.set_title(
        f"bio variant - adam ({len(results['config']['seeds'])} seeds, mean [95% CI]); blue: in "
        "the claim's favour, red: against it, * CI excludes 0 in its favour",
        fontsize=9,
    )
    return save_figure(fig, path)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (5)")
    parser.add_argument("--workers", type=int, default=1, help="processes, one thread each (1)")
    parser.add_argument("--quick", action="store_true", help="tiny settings, a smoke run")
    parser.add_argument("--variants", default=None, help="comma-separated rows (default: all)")
    parser.add_argument("--jobs", default=",".join(ab.JOBS), help="comma-separated columns' jobs")
    parser.add_argument("--journal", type=Path, default=None,
                        help="JSON-lines journal (default runs/<stem>.jsonl)")  # fmt: skip
    parser.add_argument("--reformat", action="store_true",
                        help="table and candidates again from the saved json's rows")  # fmt: skip
    parser.add_argument("--out", type=Path, default=None,
                        help="results folder (benchmarks/results; --quick: runs)")  # fmt: skip
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    stem = "ablation_quick" if args.quick else "ablation"
    variants = args.variants.split(",") if args.variants else None
    if variants is None:
        variants = list(QUICK_VARIANTS if args.quick else ab.VARIANTS)
    seeds = 1 if args.quick else args.seeds
    journal = args.journal or Path("runs") / f"{stem}.jsonl"
    out = args.out or (Path("runs") if args.quick else RESULTS)
    if args.reformat:
        results = json.loads((out / f"{stem}.json").read_text())
        results["table"] = ab.summarise(results["rows"], list(results["config"]["variants"]))
        results["candidates"] = ab.candidates(results["table"])
        results["reformatted"] = "python benchmarks/ablation.py --reformat"
    else:
        start = time.perf_counter()
        results = ab.run_ablation(
            variants, seeds, jobs=args.jobs.split(","), settings=ab.QUICK if args.quick else None,
            workers=args.workers, journal=journal, progress=lambda line: print(line, flush=True),
        )  # fmt: skip
        command = f"python benchmarks/ablation.py --seeds {seeds} --workers {args.workers}"
        results["command"] = command + (" --quick" if args.quick else "")
        results["wall_seconds"] = time.perf_counter() - start
    write_json(out / f"{stem}.json", jsonable(results))
    table = ab.format_markdown(results) + f"\nCommand: `{results['command']}`"
    if results.get("reformatted"):
        table += f"; table recomputed from its rows by `{results['reformatted']}`"
    table += "\n"
    write_atomic(out / f"{stem}.md", table)
    plot_heatmap(results, out / "figures" / f"{stem}.png")
    print(table, flush=True)
    return results


if __name__ == "__main__":
    main()
