"""The issue-3 stream comparisons: the bio strategy against the continual-learning baselines.

Four comparisons, each with :func:`bioplastic.experiments.stream.run_stream_comparison` (the
code behind ``bioplastic stream``), 5 experiences, seeds 0-4, hyper-parameters from
``strategies/avalanche/config.py``:

* split digits, task-incremental: bio, naive, ewc, si, mas, lwf, replay, packnet, eg, enforced;
* split digits, class-incremental: bio, bio+replay, replay;
* the same two on split MNIST-1D.

Each writes ``benchmarks/results/stream_<stream>_<scenario>.json`` (the aggregated results:
config, every run with its accuracy matrix, mean ± std summaries, target checks) and ``.md``
(the tables, the command and the wall time). TensorBoard logs and checkpoints go to
``--logdir`` (``runs/benchmark-stream``); ``--resume`` continues an interrupted benchmark.

Usage::

    .venv/bin/python benchmarks/stream.py [--only split-digits/task,...] [--resume]
        [--mnist1d-seeds 5] [--mnist1d-epochs 10]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from bioplastic._io import write_atomic
from bioplastic._progress import say
from bioplastic.experiments.stream import DEFAULT_STRATEGIES, format_markdown, run_stream_comparison
from strategies.avalanche.config import COMMON

RESULTS = Path(__file__).resolve().parent / "results"
SEEDS = 5
CLASS_STRATEGIES = ("bio", "bio+replay", "replay")

#: (stream, scenario, strategies) in the order they run.
COMPARISONS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("split-digits", "task", DEFAULT_STRATEGIES),
    ("split-digits", "class", CLASS_STRATEGIES),
    ("split-mnist1d", "task", DEFAULT_STRATEGIES),
    ("split-mnist1d", "class", CLASS_STRATEGIES),
)


def run(
    stream: str,
    scenario: str,
    strategies: tuple[str, ...],
    seeds: int,
    epochs: int,
    logdir: Path,
    resume: bool,
    overwrite: bool,
    command: str,
) -> dict[str, Any]:
    """One comparison; its results copied to ``benchmarks/results/``."""
    t0 = time.perf_counter()
    results = run_stream_comparison(
        stream=stream,
        scenario=scenario,
        strategies=strategies,
        seeds=seeds,
        epochs=epochs,
        logdir=logdir,
        resume=resume,
        overwrite=overwrite,
        device="cpu",
        progress=lambda line: say(f"  {line}"),
    )
    seconds = time.perf_counter() - t0
    notes = []
    if seeds != SEEDS or epochs != COMMON["train_epochs"]:
        notes.append(
            f"Reduced to keep the whole benchmark within about 25 minutes on 2 CPU cores: "
            f"{seeds} seeds and {epochs} epochs (full: {SEEDS} seeds, "
            f"{COMMON['train_epochs']} epochs)."
        )
    results["benchmark"] = {"command": command, "wall_seconds": seconds, "notes": notes}
    stem = RESULTS / f"stream_{stream}_{scenario}"
    write_atomic(stem.with_suffix(".json"), json.dumps(results, indent=1) + "\n")
    text = format_markdown(results)
    footer = [
        "",
        f"Produced by `{command}` in {seconds / 60:.1f} min (CPU, 1 thread; "
        f"{results['summary'][strategies[0]]['wall_seconds']['mean']:.1f} s per {strategies[0]} "
        "run). Hyper-parameters: `strategies/avalanche/config.py`.",
        *(["", *notes] if notes else []),
    ]
    write_atomic(stem.with_suffix(".md"), text + "\n".join(footer) + "\n")
    print(text, flush=True)
    print(f"wrote {stem}.json and .md ({seconds / 60:.1f} min)", flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    names = [f"{s}/{c}" for s, c, _ in COMPARISONS]
    parser.add_argument("--only", default=",".join(names), help="comma-separated stream/scenario")
    parser.add_argument("--logdir", type=Path, default=Path("runs/benchmark-stream"))
    parser.add_argument("--resume", action="store_true", help="continue an interrupted benchmark")
    parser.add_argument("--overwrite", action="store_true", help="replace a previous benchmark")
    parser.add_argument("--mnist1d-seeds", type=int, default=SEEDS)
    parser.add_argument("--mnist1d-epochs", type=int, default=COMMON["train_epochs"])
    args = parser.parse_args(argv)
    chosen = args.only.split(",")
    unknown = [c for c in chosen if c not in names]
    if unknown:
        parser.error(f"unknown comparisons {unknown}; choose from {', '.join(names)}")
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", module="avalanche")
    logging.basicConfig(level=logging.WARNING)
    command = "python benchmarks/stream.py " + " ".join(argv if argv is not None else sys.argv[1:])
    t0 = time.perf_counter()
    for stream, scenario, strategies in COMPARISONS:
        if f"{stream}/{scenario}" not in chosen:
            continue
        mnist1d = stream == "split-mnist1d"
        print(f"== {stream}, {scenario}-incremental", flush=True)
        run(
            stream,
            scenario,
            strategies,
            seeds=args.mnist1d_seeds if mnist1d else SEEDS,
            epochs=args.mnist1d_epochs if mnist1d else COMMON["train_epochs"],
            logdir=args.logdir,
            resume=args.resume,
            overwrite=args.overwrite,
            command=command.strip(),
        )
    print(f"total {(time.perf_counter() - t0) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
