"""``bioplastic fewshot``: few-shot generalisation of bio-, Adam- and EG-trained backbones.

The learn2learn integration lives in :mod:`strategies.fewshot`; it is imported inside the
command, so ``bioplastic`` itself never needs learn2learn.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bioplastic._io import write_atomic
from bioplastic.cli._args import (
    CLIError,
    add_device_argument,
    add_progress_argument,
    clip,
    csv_choices,
    out_path,
    positive_int,
    resolve_cli_device,
    set_threads,
    threads,
)

__all__ = ["add_parser"]

# Kept in step with bioplastic.experiments.fewshot (a test checks it), so that --help and
# argument errors work without importing learn2learn.
DATASETS = ("digits", "mnist1d", "glyphs", "omniglot")
RULES = ("bio", "eg", "adam", "sgd")
METHODS = ("proto", "finetune", "maml")


def _shots(text: str) -> list[int]:
    try:
        values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {clip(text)}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive shots, got {clip(text)}")
    return values


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON ({err.msg}): {clip(text)}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {clip(text)}")
    return value


def add_parser(sub) -> None:
    """Register ``bioplastic fewshot`` on an ``argparse`` sub-parser collection."""
    p = sub.add_parser(
        "fewshot",
        help="few-shot accuracy of backbones trained by each rule (learn2learn)",
        description="Pre-train a backbone per rule on meta-train classes, then evaluate "
        "N-way K-shot episodes of held-out classes (the same seeded episodes for every rule) "
        "and report mean accuracy with 95% confidence intervals and paired differences.",
    )
    p.add_argument("--dataset", choices=DATASETS, default="glyphs", help="episode source")
    p.add_argument(
        "--root",
        type=out_path,
        default=None,
        help="Omniglot root, holding omniglot-py/ (default: none; needed with --dataset omniglot)",
    )
    p.add_argument("--ways", type=positive_int, default=5, help="classes per episode (N)")
    p.add_argument(
        "--shots", type=_shots, default=[1, 5], help="comma-separated support shots per class (K)"
    )
    p.add_argument(
        "--episodes", type=positive_int, default=600, help="test episodes per shot and seed"
    )
    p.add_argument(
        "--rules",
        type=csv_choices(RULES),
        default=["bio", "adam", "eg"],
        help=f"comma-separated pre-training rules, from {','.join(RULES)}",
    )
    p.add_argument(
        "--methods",
        type=csv_choices(METHODS),
        default=["proto", "finetune"],
        help=f"comma-separated few-shot methods, from {','.join(METHODS)}",
    )
    p.add_argument("--seeds", type=positive_int, default=3, help="number of seeds")
    p.add_argument(
        "--epochs",
        type=positive_int,
        default=None,
        help="pre-training epochs (default: the dataset's, from the tuned defaults)",
    )
    p.add_argument(
        "--bio",
        type=_json_object,
        default={},
        help="JSON options of the bio rule, e.g. '{\"noise\": 0.1}' (default: its defaults)",
    )
    p.add_argument("--threads", type=threads, default=1, help="torch threads")
    add_device_argument(p)
    p.add_argument("--out", type=out_path, default=Path("runs/fewshot"), help="output folder")
    add_progress_argument(p)
    p.set_defaults(run=_run)


def _check(args: argparse.Namespace) -> None:
    """Refuse what would fail after pre-training, before any work."""
    if args.dataset == "omniglot" and args.root is None:
        raise CLIError("--dataset omniglot needs --root (a folder holding omniglot-py/)")
    if args.root is not None and args.dataset != "omniglot":
        raise CLIError(f"--root only applies to --dataset omniglot, not {args.dataset}")
    if args.root is not None and not (args.root / "omniglot-py").is_dir():
        raise CLIError(f"--root {clip(str(args.root))} holds no omniglot-py/ folder")
    if "bio" in args.rules:
        from bioplastic import BioRule

        try:
            BioRule.validate_options(**args.bio)
        except (TypeError, ValueError) as err:
            raise CLIError(f"--bio: {err}") from None


def _run(args: argparse.Namespace) -> int:
    _check(args)
    device = resolve_cli_device(args.device)
    from bioplastic._progress import format_stages, say
    from bioplastic.experiments.fewshot import format_markdown, run_fewshot_benchmark

    set_threads(args.threads)
    start = time.perf_counter()

    def progress(done: int, total: int, message: str) -> None:
        say(f"[{done}/{total}] {message}")

    results = run_fewshot_benchmark(
        args.dataset,
        ways=args.ways,
        shots=tuple(args.shots),
        episodes=args.episodes,
        rules=tuple(args.rules),
        methods=tuple(args.methods),
        seeds=args.seeds,
        pretrain_epochs=args.epochs,
        root=None if args.root is None else str(args.root),
        progress=progress,
        optimizer_kwargs={"bio": args.bio},
        device=device,
    )
    results["timing"]["total_s"] = time.perf_counter() - start
    table = format_markdown(results)
    print()
    print(table)
    stem = f"fewshot_{args.dataset}"
    write_atomic(args.out / f"{stem}.json", json.dumps(results, indent=1) + "\n")
    write_atomic(args.out / f"{stem}.md", table)
    stages = format_stages(results["timing"]["stages_s"])
    print(
        f"wrote {args.out / (stem + '.json')} and {args.out / (stem + '.md')} "
        f"({results['timing']['total_s']:.1f} s: {stages})"
    )
    return 0
