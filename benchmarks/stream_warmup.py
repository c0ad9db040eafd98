"""Does the bio strategy need BioRule's warm-up in a stream? (``config.BIO_RULE`` sets 0.)

BioRule counts its warm-up from the optimizer's step, so a task head added later no longer
restarts it; this measures the ``bio`` strategy on split MNIST-1D (task-incremental, 3 seeds, 10
epochs per experience) with ``warmup=0`` (``config.BIO_RULE``) and with BioRule's default
warm-up, and writes ``benchmarks/results/stream_warmup.{json,md}``.

    python benchmarks/stream_warmup.py [--out benchmarks/results/stream_warmup]
"""

from __future__ import annotations

import argparse
import inspect
import json
import tempfile
from pathlib import Path

import torch

from bioplastic import BioRule
from bioplastic._io import write_atomic
from bioplastic.experiments.stream import forgetting_max, run_stream_comparison

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_WARMUP = inspect.signature(BioRule.__init__).parameters["warmup"].default


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS / "stream_warmup",
                        help="results path without suffix (.json and .md are written)")  # fmt: skip
    out = parser.parse_args(argv).out
    torch.set_num_threads(1)
    rows = {}
    for warmup in (0, DEFAULT_WARMUP):
        overrides = {"bio": {"optimizer_kwargs": {"warmup": warmup}}}
        with tempfile.TemporaryDirectory() as logdir:
            results = run_stream_comparison("split-mnist1d", "task", strategies=("bio",), seeds=3,
                                            logdir=logdir, overrides=overrides)  # fmt: skip
        s = results["summary"]["bio"]
        rows[warmup] = {"acc": s["final_average_accuracy"], "forgetting_max": forgetting_max(s),
                        "connectivity": s["connectivity"]}  # fmt: skip
    lines = ["# bio strategy: warm-up in a stream (split MNIST-1D, task-incremental, 3 seeds)", "",
             "| warmup | ACC | F (max) | connectivity |", "|---|---|---|---|"]  # fmt: skip
    for warmup, r in rows.items():
        cells = [f"{r[k]['mean']:.3f} ± {r[k]['std']:.3f}" for k in ("acc", "forgetting_max",
                                                                    "connectivity")]  # fmt: skip
        lines.append(f"| {warmup} | " + " | ".join(cells) + " |")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out.with_suffix(".json"), json.dumps(rows, indent=1) + "\n")
    write_atomic(out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
