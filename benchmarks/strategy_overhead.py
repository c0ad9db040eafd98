"""Strategy overhead: BioPlastic against Avalanche's Naive (Adam), with and without the probes.

Measures, in one run, on split digits (task-incremental, 5 experiences), the same model
(:func:`strategies.avalanche.make_model`, a multi-head MLP 64-256-heads), mini-batches of 32 and
the same number of epochs per experience, the wall time of

- ``naive``: Avalanche ``Naive`` with ``torch.optim.Adam(lr=1e-3)``, quiet evaluator without
  the probes,
- ``bio``: ``BioPlastic`` with its default settings, the same quiet evaluator,
- ``bio+probes``: ``BioPlastic`` with the evaluator the project uses (:func:`make_evaluator`
  with :func:`probe_metrics`, no loggers), so the probes are computed once per experience.

Every configuration trains each experience and then evaluates the test stream (as
:mod:`bioplastic.experiments.stream` does). Reported, as medians over the repeats (interleaved, so
machine load affects all configurations alike): seconds per training epoch (the epochs alone,
timed by a plugin), seconds of ``train()`` per epoch (epochs plus experience-level work:
consolidation, weight and task-encoding probes), and seconds per experience for
``train()`` + ``eval()`` (the activity probe runs during evaluation). Prints a table and writes
``benchmarks/results/strategy_overhead.{json,md}``.

    python benchmarks/strategy_overhead.py [--epochs 3] [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
import warnings
from pathlib import Path

import avalanche
import torch
from avalanche.core import SupervisedPlugin
from avalanche.training import Naive
from torch import nn

from bioplastic.data import split_digits
from strategies.avalanche import BioPlastic, avalanche_benchmark, make_evaluator, make_model

RESULTS = Path(__file__).resolve().parent / "results"
CONFIGS = ["naive", "bio", "bio+probes"]
MB_SIZE = 32
EVAL_MB_SIZE = 256


class EpochTimer(SupervisedPlugin):
    """Wall time of each training epoch (``before_training_epoch`` to ``after_training_epoch``)."""

    def __init__(self):
        super().__init__()
        self.times: list[float] = []
        self._t0 = 0.0

    def before_training_epoch(self, strategy, **kwargs) -> None:
        self._t0 = time.perf_counter()

    def after_training_epoch(self, strategy, **kwargs) -> None:
        self.times.append(time.perf_counter() - self._t0)


def build(config: str, stream, epochs: int, seed: int, timer: EpochTimer):
    torch.manual_seed(seed)
    model = make_model(stream)
    evaluator = make_evaluator(probes=config == "bio+probes")  # no loggers: quiet
    common = dict(
        train_mb_size=MB_SIZE,
        train_epochs=epochs,
        eval_mb_size=EVAL_MB_SIZE,
        device="cpu",
        evaluator=evaluator,
    )
    if config == "naive":
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        return Naive(
            model=model,
            optimizer=optimizer,
            criterion=nn.CrossEntropyLoss(),
            plugins=[timer],
            **common,
        )
    return BioPlastic(model=model, plugins=[timer], **common)


def run_once(config: str, stream, benchmark, epochs: int, seed: int) -> dict:
    timer = EpochTimer()
    strategy = build(config, stream, epochs, seed, timer)
    train_s, eval_s = 0.0, 0.0
    n_exp = len(benchmark.train_stream)
    for k in range(n_exp):
        t0 = time.perf_counter()
        strategy.train(benchmark.train_stream[k])
        t1 = time.perf_counter()
        strategy.eval(benchmark.test_stream)
        t2 = time.perf_counter()
        train_s += t1 - t0
        eval_s += t2 - t1
    n_epochs = len(timer.times)
    return {
        "epoch_s": sum(timer.times) / n_epochs,
        "train_s_per_epoch": train_s / n_epochs,
        "cycle_s_per_exp": (train_s + eval_s) / n_exp,
        "total_s": train_s + eval_s,
        "n_epochs": n_epochs,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="epochs per experience")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS / "strategy_overhead"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    stream = split_digits(n_experiences=5, scenario="task", seed=args.seed)
    benchmark = avalanche_benchmark(stream)

    run_once("bio+probes", stream, benchmark, 1, args.seed)  # warm-up (imports, first calls)
    raw: dict[str, list[dict]] = {name: [] for name in CONFIGS}
    start = time.perf_counter()
    for _ in range(args.repeats):
        for name in CONFIGS:  # interleaved: load drifts hit every configuration alike
            raw[name].append(run_once(name, stream, benchmark, args.epochs, args.seed))
    wall = time.perf_counter() - start

    keys = ["epoch_s", "train_s_per_epoch", "cycle_s_per_exp"]
    med = {name: {k: statistics.median(r[k] for r in raw[name]) for k in keys} for name in CONFIGS}
    ratios = {
        "bio_vs_naive_epoch": med["bio"]["epoch_s"] / med["naive"]["epoch_s"],
        "bio_vs_naive_train": med["bio"]["train_s_per_epoch"] / med["naive"]["train_s_per_epoch"],
        "probe_overhead_epoch": med["bio+probes"]["epoch_s"] / med["bio"]["epoch_s"] - 1,
        "probe_overhead_train": med["bio+probes"]["train_s_per_epoch"]
        / med["bio"]["train_s_per_epoch"]
        - 1,
        "probe_overhead_cycle": med["bio+probes"]["cycle_s_per_exp"] / med["bio"]["cycle_s_per_exp"]
        - 1,
    }
    results = {
        "stream": benchmark.bioplastic_stream,
        "model": "make_model(stream): MultiHeadMLP 64-256, one 2-way head per task",
        "device": "cpu",
        "device_name": platform.processor() or platform.machine(),
        "threads": args.threads,
        "torch": torch.__version__,
        "avalanche": getattr(avalanche, "__version__", "unknown"),
        "repeats": args.repeats,
        "epochs_per_experience": args.epochs,
        "train_mb_size": MB_SIZE,
        "eval_mb_size": EVAL_MB_SIZE,
        "wall_s": wall,
        "targets": {"bio_vs_naive": 1.3, "probe_overhead": 0.10},
        "median": med,
        "ratios": ratios,
        "raw": raw,
    }
    naive, bio = med["naive"], med["bio"]
    lines = [
        f"Strategy overhead on split digits (task, 5 experiences), CPU, {args.threads} thread(s), "
        f"torch {torch.__version__}, {args.epochs} epochs/experience, mini-batch {MB_SIZE}, "
        f"median of {args.repeats} interleaved repeats",
        "",
        "| strategy | epoch s | train() s/epoch | train+eval s/exp | epoch vs naive "
        "| train vs naive | cycle vs bio |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in CONFIGS:
        row = med[name]
        lines.append(
            f"| {name} | {row['epoch_s']:.4f} | {row['train_s_per_epoch']:.4f} "
            f"| {row['cycle_s_per_exp']:.4f} | {row['epoch_s'] / naive['epoch_s']:.2f} "
            f"| {row['train_s_per_epoch'] / naive['train_s_per_epoch']:.2f} "
            f"| {row['cycle_s_per_exp'] / bio['cycle_s_per_exp']:.2f} |"
        )
    lines += [
        "",
        f"- bio/naive per epoch: {ratios['bio_vs_naive_epoch']:.2f} "
        f"(train() per epoch {ratios['bio_vs_naive_train']:.2f}; target <= 1.3)",
        "- probe overhead (bio+probes vs bio): "
        f"epochs {100 * ratios['probe_overhead_epoch']:+.1f}%, "
        f"train() {100 * ratios['probe_overhead_train']:+.1f}%, "
        f"train+eval {100 * ratios['probe_overhead_cycle']:+.1f}% (target <= 10%)",
    ]
    table = "\n".join(lines)
    print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    out.with_suffix(".md").write_text(table + "\n")
    return results


if __name__ == "__main__":
    main()
