"""``bioplastic report`` and ``bioplastic robustness``: subcommands for the main CLI.

:func:`add_parser` registers both on the ``bioplastic`` command's subparsers (see
:mod:`bioplastic.cli`); :func:`main` runs them standalone with the same error handling (one
line on stderr, exit status 2 for bad input).

    bioplastic robustness [--datasets digits,mnist1d] [--seeds 3] [--out benchmarks/results]
    bioplastic report [--quick] [--results benchmarks/results] [--out benchmarks/results/REPORT.md]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from bioplastic.cli._args import (
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

_DATASETS = ("digits", "mnist1d")
QUICK_OUT = Path("runs/report-quick/REPORT.md")
#: Largest attack budget: inputs are standardised, so a budget beyond this is no attack
#: budget at all (and its derived step sizes overflow to inf).
_MAX_EPSILON = 1e3


def _floats(text: str) -> list[float]:
    try:
        values = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {clip(text)}"
        ) from None
    if not values or any(not 0 <= v <= _MAX_EPSILON for v in values):
        raise argparse.ArgumentTypeError(
            f"expected numbers in [0, {_MAX_EPSILON:g}], got {clip(text)}"
        )
    return values


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {clip(text)}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {clip(text)}")
    return value


def _widths(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected widths like 256 or 128,64, got {clip(text)}"
        ) from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive widths, got {clip(text)}")
    return values


def _listed(value: object) -> list[str]:
    return value if isinstance(value, list) else str(value).split(",")


# ------------------------------------------------------------------------------ robustness
def _add_robustness(sub) -> None:
    from bioplastic.baselines import OPTIMIZER_NAMES

    p = sub.add_parser(
        "robustness",
        help="adversarial robustness of learning rules at matched clean accuracy",
        description="Train the same Dale-initialised BioMLP with each rule until validation "
        "accuracy first reaches a common target, attack it (FGSM, PGD, PGD-L2, APGD-DLR), probe "
        "it, and test whether differences come from connectivity or weight scale. Writes "
        "robustness_<dataset>.json/.md and figures.",
    )
    p.add_argument(
        "--datasets",
        type=csv_choices(_DATASETS),
        default="digits,mnist1d",
        help=f"comma-separated, from {','.join(_DATASETS)}",
    )
    p.add_argument(
        "--rules",
        type=csv_choices(OPTIMIZER_NAMES),
        default="bio,adam,eg,enforced",
        help=f"comma-separated rules, from {','.join(OPTIMIZER_NAMES)}",
    )
    p.add_argument("--seeds", type=positive_int, default=3, help="number of seeds")
    p.add_argument(
        "--target",
        type=_fraction,
        default=None,
        help="validation accuracy target (default: per dataset)",
    )
    p.add_argument(
        "--epsilons",
        type=_floats,
        default=None,
        help="L-inf budgets, e.g. 0,0.05,0.1 (default: per dataset)",
    )
    p.add_argument(
        "--l2-epsilons", type=_floats, default=None, help="L2 budgets (default: per dataset)"
    )
    p.add_argument("--hidden", type=_widths, default=(256,), help="comma-separated hidden widths")
    p.add_argument("--pgd-steps", type=positive_int, default=10, help="PGD iterations per attack")
    p.add_argument("--restarts", type=positive_int, default=1, help="PGD random restarts")
    p.add_argument(
        "--no-interventions", action="store_true", help="skip the pruning / rescaling interventions"
    )
    p.add_argument("--threads", type=threads, default=1, help="torch threads")
    add_device_argument(p)
    p.add_argument("--out", type=out_path, default=Path("benchmarks/results"), help="output folder")
    add_progress_argument(p)
    p.set_defaults(run=_run_robustness)


def _run_robustness(args: argparse.Namespace) -> int:
    from bioplastic.experiments.robustness import format_markdown, run_robustness, write_results

    set_threads(args.threads)
    device = resolve_cli_device(args.device)
    for dataset in _listed(args.datasets):
        command = (
            f"bioplastic robustness --datasets {dataset} --rules {','.join(_listed(args.rules))} "
            f"--seeds {args.seeds} --pgd-steps {args.pgd_steps} --restarts {args.restarts}"
            + (f" --target {args.target}" if args.target is not None else "")
            + (f" --epsilons {','.join(map(str, args.epsilons))}" if args.epsilons else "")
            + (f" --l2-epsilons {','.join(map(str, args.l2_epsilons))}" if args.l2_epsilons else "")
            + f" --hidden {','.join(map(str, args.hidden))}"
            + (" --no-interventions" if args.no_interventions else "")
        )
        start = time.perf_counter()
        results = run_robustness(
            dataset,
            rules=_listed(args.rules),
            seeds=args.seeds,
            target_accuracy=args.target,
            epsilons=args.epsilons,
            l2_epsilons=args.l2_epsilons,
            hidden=tuple(args.hidden),
            pgd_steps=args.pgd_steps,
            restarts=args.restarts,
            interventions=not args.no_interventions,
            progress=lambda line: print(line, flush=True),
            device=device,
        )
        results["command"] = command
        results["seconds"] = time.perf_counter() - start
        paths = write_results(results, args.out)
        print(format_markdown(results))
        print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


# ------------------------------------------------------------------------------ report
def _add_report(sub) -> None:
    p = sub.add_parser(
        "report",
        help="one page (REPORT.md + figures) testing the paper's claims against our results",
        description="Read the committed benchmark results (or, with --quick, run small versions "
        "first) and write one markdown page with PNG figures that opens with the paper's claims "
        "and our measured verdicts.",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="first rerun, in a few minutes, only the digits rule comparison (biomlp, 2 seeds, "
        "10 epochs) and the digits robustness experiment (2 seeds, reduced epsilon grid); every "
        "other section reads --results",
    )
    p.add_argument(
        "--results",
        type=out_path,
        default=None,
        help="folder with the results files (default: benchmarks/results of the bioplastic "
        "source checkout, else of the working directory)",
    )
    p.add_argument(
        "--out",
        type=out_path,
        default=None,
        help=f"report file (default: <results>/REPORT.md; with --quick {QUICK_OUT})",
    )
    p.add_argument("--threads", type=threads, default=1, help="torch threads (with --quick)")
    add_progress_argument(p)
    p.set_defaults(run=_run_report)


def _run_report(args: argparse.Namespace) -> int:
    from bioplastic.experiments.report import build_report, default_results_dir

    set_threads(args.threads)
    results = default_results_dir() if args.results is None else args.results
    out = args.out
    if out is None:
        out = QUICK_OUT if args.quick else results / "REPORT.md"
    path = build_report(
        results, out, quick=args.quick, progress=lambda line: print(line, flush=True)
    )
    print(f"wrote {path}")
    return 0


# ------------------------------------------------------------------------------ wiring
def add_parser(subparsers) -> None:
    """Register the ``report`` and ``robustness`` subcommands on ``subparsers`` ."""
    _add_report(subparsers)
    _add_robustness(subparsers)
