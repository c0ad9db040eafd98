"""bio vs eg vs adam vs enforced on scikit-learn's digits: accuracy and emergent weight statistics.

Trains a BioMLP (ON/OFF input split) and a plain ``nn.Sequential`` MLP passed through
``dalify`` with each rule from the same initialisation (the BioMLP's readout has interneurons
for bio only), for several seeds, and writes
``benchmarks/results/digits_rules.{json,md}`` with test accuracy, connectivity, Dale
violations, sign flips and log-magnitude skewness/kurtosis per layer, plus the foundation's
target checks for ``bio`` with its default settings.

    python benchmarks/digits_rules.py [--seeds 5] [--epochs 30] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from bioplastic.experiments.compare import compare_rules, format_markdown

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--rules", default="bio,eg,adam,enforced")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--bio", default="{}", help="JSON overrides of bio's defaults")
    parser.add_argument("--out", default=str(RESULTS / "digits_rules"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = compare_rules(
        rules=args.rules.split(","),
        seeds=range(args.seeds),
        epochs=args.epochs,
        rule_kwargs={"bio": json.loads(args.bio)},
        progress=lambda line: print(line, flush=True),
    )
    table = format_markdown(results)
    print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    out.with_suffix(".md").write_text(table)
    return results


if __name__ == "__main__":
    main()
