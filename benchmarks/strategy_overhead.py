"""Strategy overhead: BioPlastic against Avalanche's Naive (Adam), with and without the probes.

Measures, in one run, on two task-incremental streams of 5 experiences,

- split digits with :func:`strategies.avalanche.make_model`'s MLP 64-256 (multi-head),
- split MNIST-1D with an MLP 40-512-512-512 (multi-head),

mini-batches of 32 and the epochs per experience our stream results use
(:data:`strategies.avalanche.config.COMMON`), the wall time of

- ``naive``: Avalanche ``Naive`` with ``torch.optim.Adam(lr=1e-3)``, the evaluator without
  the probes and without loggers,
- ``bio``: ``BioPlastic`` with its default settings, the same evaluator,
- ``bio+probes``: ``BioPlastic`` with :func:`make_evaluator`'s default probes (their default
  cadence :data:`strategies.avalanche.config.PROBES`: scalars every ``every`` training
  iterations, everything at experience ends and evaluations), no loggers,
- ``bio+probes+tb``: the same plus TensorBoard (:class:`BioTensorboardLogger` into a temporary
  folder: event files, histograms, labelled heatmaps, the run configuration).

Every configuration trains each experience and then evaluates the test stream (as
:mod:`bioplastic.experiments.stream` does). Reported, as medians over the repeats (interleaved,
in turns forward and backward, so machine load affects all configurations alike; garbage
collected before each run): seconds per training epoch (timed by a plugin), the part of it
spent in the optimizer step (``before_update`` to ``after_update``) and the rest (data,
forward, backward, plugins: the strategy's per-iteration overhead), seconds of ``train()`` per
epoch, and seconds per experience for ``train()`` + ``eval()``. The probe
overhead is ``bio+probes`` against ``bio`` per experience (train + eval), as a ratio of
medians (the target's measure) and paired by repeat; and, since on a busy machine runs minutes
apart differ by more than the probes cost, the seconds spent inside the probe metrics'
callbacks against bio's train + eval. The load average of
the machine (``os.getloadavg``) is recorded before and after. Prints a table and writes
``benchmarks/results/strategy_overhead.{json,md}``.

    python benchmarks/strategy_overhead.py [--epochs 10] [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import avalanche
import torch
from avalanche.core import SupervisedPlugin
from avalanche.training import Naive
from torch import nn

from bioplastic.data import split_digits, split_mnist1d
from strategies.avalanche import (
    COMMON,
    BioPlastic,
    avalanche_benchmark,
    make_evaluator,
    make_model,
)
from strategies.avalanche.config import PROBES
from strategies.avalanche.metrics import (
    ActivityProbeMetric,
    TaskEncodingMetric,
    WeightProbeMetric,
)

RESULTS = Path(__file__).resolve().parent / "results"
CONFIGS = ["naive", "bio", "bio+probes", "bio+probes+tb"]
STREAMS = {
    "split-digits": (
        lambda seed: split_digits(n_experiences=5, scenario="task", seed=seed),
        (256,),
    ),
    "split-mnist1d": (
        lambda seed: split_mnist1d(n_experiences=5, scenario="task", seed=seed),
        (512, 512, 512),
    ),
}
KEYS = ["epoch_s", "step_s_per_epoch", "rest_s_per_epoch", "train_s_per_epoch", "cycle_s_per_exp"]
TARGETS = {"bio_vs_naive_epoch": 1.1, "probe_overhead_cycle": 0.10}


class EpochTimer(SupervisedPlugin):
    """Wall time of each training epoch and of the optimizer steps within it."""

    def __init__(self):
        super().__init__()
        self.times: list[float] = []
        self.step_times: list[float] = []
        self._t0 = self._s0 = 0.0
        self._steps = 0.0

    def before_training_epoch(self, strategy, **kwargs) -> None:
        self._steps = 0.0
        self._t0 = time.perf_counter()

    def before_update(self, strategy, **kwargs) -> None:
        self._s0 = time.perf_counter()

    def after_update(self, strategy, **kwargs) -> None:
        self._steps += time.perf_counter() - self._s0

    def after_training_epoch(self, strategy, **kwargs) -> None:
        self.times.append(time.perf_counter() - self._t0)
        self.step_times.append(self._steps)


def build(config: str, stream, hidden, epochs: int, seed: int, timer: EpochTimer, tb_dir: str):
    torch.manual_seed(seed)
    model = make_model(stream, hidden=hidden)
    probes = config.startswith("bio+probes")
    evaluator = make_evaluator(
        probes=probes,
        tensorboard_dir=tb_dir if config == "bio+probes+tb" else None,
        metadata={"benchmark": "strategy_overhead", "config": config},
    )
    common = dict(
        train_mb_size=COMMON["train_mb_size"],
        train_epochs=epochs,
        eval_mb_size=COMMON["eval_mb_size"],
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


def time_probes(strategy) -> list[float]:
    """Wrap the callbacks of the strategy's probe metrics so that the seconds spent in them add
    up in the returned one-element list (the probes' own work, whatever the machine does
    around it)."""
    spent = [0.0]
    probe_types = (ActivityProbeMetric, TaskEncodingMetric, WeightProbeMetric)
    for metric in strategy.evaluator.metrics:
        if not isinstance(metric, probe_types):
            continue
        names = {n for cls in type(metric).__mro__[:-1] if cls.__module__.startswith("strategies")
                 for n in vars(cls) if n.startswith(("before_", "after_"))}  # fmt: skip
        for name in names:
            method = getattr(metric, name)

            def timed(*args, _method=method, **kwargs):
                t0 = time.perf_counter()
                try:
                    return _method(*args, **kwargs)
                finally:
                    spent[0] += time.perf_counter() - t0

            setattr(metric, name, timed)
    return spent


def run_once(config: str, stream, hidden, benchmark, epochs: int, seed: int) -> dict:
    timer = EpochTimer()
    with tempfile.TemporaryDirectory() as tb_dir:
        strategy = build(config, stream, hidden, epochs, seed, timer, tb_dir)
        probe_s = time_probes(strategy)
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
        for logger in strategy.evaluator.loggers:
            if hasattr(logger, "writer"):
                logger.writer.close()  # before the temporary folder goes
    n_epochs = len(timer.times)
    epoch_s = sum(timer.times) / n_epochs
    step_s = sum(timer.step_times) / n_epochs
    return {
        "epoch_s": epoch_s,
        "step_s_per_epoch": step_s,
        "rest_s_per_epoch": epoch_s - step_s,
        "train_s_per_epoch": train_s / n_epochs,
        "cycle_s_per_exp": (train_s + eval_s) / n_exp,
        "total_s": train_s + eval_s,
        "probe_s_per_exp": probe_s[0] / n_exp,
        "n_epochs": n_epochs,
    }


def ratios_of(med: dict[str, dict[str, float]]) -> dict[str, float]:
    naive, bio = med["naive"], med["bio"]
    return {
        "bio_vs_naive_epoch": bio["epoch_s"] / naive["epoch_s"],
        "bio_vs_naive_step": bio["step_s_per_epoch"] / naive["step_s_per_epoch"],
        "bio_vs_naive_rest": bio["rest_s_per_epoch"] / naive["rest_s_per_epoch"],
        "bio_vs_naive_train": bio["train_s_per_epoch"] / naive["train_s_per_epoch"],
        "probe_overhead_epoch": med["bio+probes"]["epoch_s"] / bio["epoch_s"] - 1,
        "probe_overhead_train": med["bio+probes"]["train_s_per_epoch"] / bio["train_s_per_epoch"]
        - 1,
        "probe_overhead_cycle": med["bio+probes"]["cycle_s_per_exp"] / bio["cycle_s_per_exp"] - 1,
        "probe_tb_overhead_cycle": med["bio+probes+tb"]["cycle_s_per_exp"] / bio["cycle_s_per_exp"]
        - 1,
    }


def measure(name: str, args) -> dict:
    make_stream, hidden = STREAMS[name]
    stream = make_stream(args.seed)
    benchmark = avalanche_benchmark(stream)
    run_once("bio+probes+tb", stream, hidden, benchmark, 1, args.seed)  # warm-up
    raw: dict[str, list[dict]] = {c: [] for c in CONFIGS}
    start = time.perf_counter()
    for repeat in range(args.repeats):
        # interleaved, so load drifts hit every configuration alike, in turns forward and
        # backward, so no configuration always follows the same one
        for config in CONFIGS if repeat % 2 == 0 else CONFIGS[::-1]:
            gc.collect()  # the previous run's garbage is not collected during this one
            raw[config].append(run_once(config, stream, hidden, benchmark, args.epochs, args.seed))
    med = {c: {k: statistics.median(r[k] for r in raw[c]) for k in KEYS} for c in CONFIGS}
    ratios = ratios_of(med)
    bio_cycle = med["bio"]["cycle_s_per_exp"]
    # the probes' own seconds per experience against bio's cycle, and the cycle overhead paired
    # by repeat (the runs of one repeat are minutes apart at most; a median over repeats)
    ratios["probe_own_cycle"] = (
        statistics.median(r["probe_s_per_exp"] for r in raw["bio+probes"]) / bio_cycle
    )
    ratios["probe_overhead_cycle_paired"] = statistics.median(
        b["cycle_s_per_exp"] / a["cycle_s_per_exp"] - 1
        for a, b in zip(raw["bio"], raw["bio+probes"], strict=True)
    )
    return {
        "stream": benchmark.bioplastic_stream,
        "model": f"make_model(stream, hidden={hidden}): multi-head MLP",
        "wall_s": time.perf_counter() - start,
        "median": med,
        "ratios": ratios,
        "raw": raw,
    }


def markdown(results: dict) -> str:
    lines = [
        f"Strategy overhead, CPU, {results['threads']} thread(s), torch {results['torch']}, "
        f"{results['epochs_per_experience']} epochs/experience, mini-batch "
        f"{results['train_mb_size']}, median of {results['repeats']} interleaved repeats; probe "
        f"cadence {results['probes']}; load average (1 min) before {results['load_before'][0]:.2f}"
        f", after {results['load_after'][0]:.2f} on {results['cpu_count']} cores",
    ]
    for name, res in results["streams"].items():
        med, r = res["median"], res["ratios"]
        naive, bio = med["naive"], med["bio"]
        lines += [
            "",
            f"### {name} ({res['model']})",
            "",
            "| strategy | epoch s | step s/epoch | rest s/epoch | train() s/epoch "
            "| train+eval s/exp | epoch vs naive | cycle vs bio |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for config in CONFIGS:
            row = med[config]
            lines.append(
                f"| {config} | {row['epoch_s']:.4f} | {row['step_s_per_epoch']:.4f} "
                f"| {row['rest_s_per_epoch']:.4f} | {row['train_s_per_epoch']:.4f} "
                f"| {row['cycle_s_per_exp']:.4f} | {row['epoch_s'] / naive['epoch_s']:.2f} "
                f"| {row['cycle_s_per_exp'] / bio['cycle_s_per_exp']:.2f} |"
            )
        hit = "hit" if r["bio_vs_naive_epoch"] <= TARGETS["bio_vs_naive_epoch"] else "miss"
        p_hit = "hit" if r["probe_overhead_cycle"] <= TARGETS["probe_overhead_cycle"] else "miss"
        lines += [
            "",
            f"- bio/naive per epoch: {r['bio_vs_naive_epoch']:.2f} (target <= 1.1: {hit}); "
            f"optimizer step {r['bio_vs_naive_step']:.2f}, everything else "
            f"{r['bio_vs_naive_rest']:.2f}; train() per epoch {r['bio_vs_naive_train']:.2f}",
            f"- probes (bio+probes vs bio): train+eval per experience "
            f"{100 * r['probe_overhead_cycle']:+.1f}% (target <= 10%: {p_hit}); "
            f"epochs {100 * r['probe_overhead_epoch']:+.1f}%, "
            f"train() {100 * r['probe_overhead_train']:+.1f}%; with TensorBoard "
            f"{100 * r['probe_tb_overhead_cycle']:+.1f}%",
            f"- the same overhead paired by repeat (median of the repeats' bio+probes / bio - 1): "
            f"{100 * r['probe_overhead_cycle_paired']:+.1f}%; time inside the probes' callbacks "
            f"(their own work, not the machine's drift between runs): "
            f"{100 * r['probe_own_cycle']:.1f}% of bio's train+eval per experience",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--epochs", type=int, default=COMMON["train_epochs"], help="epochs per experience"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--streams", default=",".join(STREAMS), help="comma-separated")
    parser.add_argument("--out", default=str(RESULTS / "strategy_overhead"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    names = [s for s in args.streams.split(",") if s]
    unknown = set(names) - set(STREAMS)
    if unknown:
        parser.error(f"unknown streams {sorted(unknown)}; choose from {', '.join(STREAMS)}")
    load_before = os.getloadavg()
    streams = {name: measure(name, args) for name in names}
    results = {
        "device": "cpu",
        "device_name": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "threads": args.threads,
        "torch": torch.__version__,
        "avalanche": getattr(avalanche, "__version__", "unknown"),
        "repeats": args.repeats,
        "epochs_per_experience": args.epochs,
        "train_mb_size": COMMON["train_mb_size"],
        "eval_mb_size": COMMON["eval_mb_size"],
        "probes": dict(PROBES),
        "load_before": list(load_before),
        "load_after": list(os.getloadavg()),
        "targets": TARGETS,
        "streams": streams,
    }
    table = markdown(results)
    print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    out.with_suffix(".md").write_text(table + "\n")
    return results


if __name__ == "__main__":
    main()
