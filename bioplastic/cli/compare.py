"""``bioplastic compare``: learning rules side by side on the bundled digits."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bioplastic._io import write_atomic
from bioplastic.cli._args import (
    add_device_argument,
    add_progress_argument,
    csv_choices,
    out_path,
    positive_int,
    resolve_cli_device,
    set_threads,
    threads,
)


def add_parser(sub) -> None:
    from bioplastic.baselines import OPTIMIZER_NAMES
    from bioplastic.experiments.compare import MODEL_KINDS

    p = sub.add_parser(
        "compare",
        help="learning rules side by side on the bundled digits (accuracy, sparsity, Dale)",
        description="Train the same Dale-initialised MLPs on scikit-learn's digits with each "
        "rule (the BioMLP's readout has interneurons for bio only) and report test accuracy, "
        "connectivity, Dale violations and log-weight shape.",
    )
    p.add_argument(
        "--rules",
        type=csv_choices(OPTIMIZER_NAMES),
        default="bio,eg,adam,enforced",
        help=f"comma-separated rules, from {','.join(OPTIMIZER_NAMES)}",
    )
    p.add_argument(
        "--models",
        type=csv_choices(MODEL_KINDS),
        default=",".join(MODEL_KINDS),
        help=f"comma-separated models, from {','.join(MODEL_KINDS)}",
    )
    p.add_argument("--seeds", type=positive_int, default=3, help="number of seeds")
    p.add_argument("--epochs", type=positive_int, default=30, help="training epochs")
    p.add_argument("--batch-size", type=positive_int, default=32, help="minibatch size")
    p.add_argument("--threads", type=threads, default=1, help="torch threads")
    add_device_argument(p)
    p.add_argument("--out", type=out_path, default=Path("runs/compare"), help="output folder")
    add_progress_argument(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from bioplastic._progress import Stages, say
    from bioplastic.experiments.compare import compare_rules, format_markdown

    set_threads(args.threads)
    rules = args.rules if isinstance(args.rules, list) else args.rules.split(",")
    models = args.models if isinstance(args.models, list) else args.models.split(",")
    n = len(rules) * len(models) * args.seeds
    done = [0]

    def progress(line: str) -> None:
        done[0] += 1
        say(f"[{done[0]}/{n}] {line}")

    stages = Stages()
    device = resolve_cli_device(args.device)
    with stages("runs"):
        results = compare_rules(
            device=device,
            rules=rules,
            models=models,
            seeds=range(args.seeds),
            epochs=args.epochs,
            batch_size=args.batch_size,
            progress=progress,
        )
    table = format_markdown(results)
    print()
    print(table)
    with stages("write"):
        write_atomic(args.out / "compare.json", json.dumps(results, indent=1) + "\n")
        write_atomic(args.out / "compare.md", table)
    training = sum(r["train_seconds"] for r in results["runs"])
    print(
        f"wrote {args.out / 'compare.json'} and {args.out / 'compare.md'} "
        f"({stages}; training {training:.1f} s of the runs)"
    )
    return 0
