"""Adversarial robustness of bio vs adam vs eg vs enforced at matched clean accuracy.

For digits and MNIST-1D: trains the same Dale-initialised BioMLP (ON/OFF input, 256 hidden
units) with each rule until validation accuracy first reaches a common target, attacks the test
set with FGSM, PGD (L-inf), PGD (L2), APGD-DLR and their per-sample worst case over an epsilon
grid, runs gradient-masking checks, probes activity and receptive fields, and tests whether
robustness differences come from connectivity or weight scale (correlations across runs;
pruning adam to bio's connectivity; rescaling bio's weights). Writes
``benchmarks/results/robustness_{digits,mnist1d}.{json,md}`` and figures under
``benchmarks/results/figures/``.

    python benchmarks/robustness.py [--seeds 5] [--datasets digits,mnist1d] [--threads 1]
    python benchmarks/robustness.py --reanalyse   # recompute summary/analysis of saved runs
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

import torch

from bioplastic._progress import say
from bioplastic.cli._args import rule_option
from bioplastic.experiments.robustness import (
    analyse,
    format_markdown,
    run_robustness,
    summarise,
    write_results,
)

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = RESULTS.parent.parent


def _provenance() -> dict:
    """The commit the code came from and which library files differed from it (rule defaults
    change between commits; ``config.rule_settings`` records the values actually used)."""

    def git(*args: str) -> str:
        try:
            done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        except OSError:
            return ""
        return done.stdout.strip() if done.returncode == 0 else ""

    changed = git("status", "--porcelain", "--", "bioplastic").splitlines()
    return {"git_commit": git("rev-parse", "HEAD"), "uncommitted": [c[3:] for c in changed]}


def _check_args(parser: argparse.ArgumentParser, args) -> None:
    """Every dataset, rule and bio option checked before any work (one line, exit 2)."""
    from bioplastic.baselines import OPTIMIZER_NAMES
    from bioplastic.experiments.robustness import DATASETS
    from bioplastic.optim import BioRule

    bad = [d for d in args.datasets.split(",") if d not in DATASETS]
    bad += [r for r in args.rules.split(",") if r not in OPTIMIZER_NAMES]
    if bad:
        parser.error(f"unknown dataset or rule {bad}: datasets {DATASETS}, rules {OPTIMIZER_NAMES}")
    try:
        BioRule.validate_options(**dict(args.bio_options))
    except (TypeError, ValueError) as err:
        parser.error(f"--bio-option: {err}")


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="digits,mnist1d", help="%(default)s")
    parser.add_argument("--rules", default="bio,adam,eg,enforced", help="%(default)s")
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (%(default)s)")
    parser.add_argument("--pgd-steps", type=int, default=20, help="%(default)s")
    parser.add_argument("--restarts", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument(
        "--bio-option", dest="bio_options", type=rule_option, action="append", default=[],
        metavar="KEY=VALUE", help="a BioRule hyper-parameter for bio (a setting under test; "
        "repeatable; default: the rule's defaults)",
    )  # fmt: skip
    parser.add_argument(
        "--reanalyse",
        action="store_true",
        help="recompute summary and analysis of the saved runs (no training, no attacks)",
    )
    args = parser.parse_args(argv)
    _check_args(parser, args)
    torch.set_num_threads(args.threads)
    all_results = []
    for dataset in args.datasets.split(","):
        if args.reanalyse:
            path = Path(args.out) / f"robustness_{dataset}.json"
            results = json.loads(path.read_text())
            results["summary"] = summarise(results["runs"], results["interventions"])
            results["analysis"] = analyse(results)
            write_results(results, args.out)
            print(format_markdown(results))
            all_results.append(results)
            continue
        start = time.perf_counter()
        results = run_robustness(
            dataset,
            rules=args.rules.split(","),
            seeds=args.seeds,
            pgd_steps=args.pgd_steps,
            restarts=args.restarts,
            progress=say,
            bio_options=dict(args.bio_options),
        )
        options = "".join(f" --bio-option {k}={v!r}" for k, v in args.bio_options)
        results["command"] = (
            f"python benchmarks/robustness.py --datasets {dataset} --rules {args.rules} "
            f"--seeds {args.seeds} --pgd-steps {args.pgd_steps} --restarts {args.restarts}"
            + options
            + ("" if args.out == str(RESULTS) else f" --out {args.out}")
        )
        results["seconds"] = time.perf_counter() - start
        results["provenance"] = _provenance()
        paths = write_results(results, args.out)
        print(format_markdown(results))
        print("wrote " + ", ".join(str(p) for p in paths.values()), flush=True)
        all_results.append(results)
    return all_results


if __name__ == "__main__":
    main()
