"""BioRule's hyper-parameters changed one at a time around the defaults, on the rule benchmark.

Rule v2 asks for one set of defaults that serves every task. Each variant here changes one
hyper-parameter of :class:`bioplastic.BioRule` (or BioMLP's interneuron fraction) from its
default (options under ``readout`` apply to the readout weight alone, see
:func:`bioplastic.experiments.rulebench.readout_groups`); bio trains every task with the rule
benchmark's data, schedule and models (:mod:`bioplastic.experiments.rulebench`, MLPs with
feedforward inhibition, the default; the rate annealed over each run, ``total_steps``, which
the variant ``constant rate`` switches off). Sweeps committed before ``total_steps`` existed
ran at a constant rate (the README says which). The table gives, per task, the test accuracy and the
change against the defaults on the same seeds, and the rows are ordered by the mean change over
tasks. A variant that gains is a candidate default, to be measured by the rule benchmark (3
seeds) before it becomes one; this sweep alone changes nothing (``saturation 30`` became the
default though it loses on MNIST-1D, a trade the README sets out).

Writes ``benchmarks/results/defaults_sweep.{json,md}``; every finished run is appended to
``--journal`` at once, and a rerun reads finished runs back (so a cut-off run continues).

    python benchmarks/defaults_sweep.py [--seeds 2] [--workers N] [--tasks a,b]
        [--variants "defaults,budget_rate 0.1"] [--out FOLDER]

Variant names are the keys of :data:`VARIANTS` (``--help`` lists them); ``defaults``, the
baseline every change is compared with, is always run.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import shlex
import statistics
import sys
from pathlib import Path

import torch

from bioplastic._io import json_text, write_atomic
from bioplastic.cli._args import positive_int
from bioplastic.data.glyphs import glyph_environment
from bioplastic.experiments.rulebench import TASKS, run_jobs

RESULTS = Path(__file__).resolve().parent / "results"
#: The rule benchmark's tasks that the sweep trains (conv4 left out: the slowest, by far).
SWEEP_TASKS = ("digits-mlp1x256", "mnist1d-mlp2x256", "mnist1d-mlp3x512", "glyphs500-mlp",
               "glyphs100-conv2")  # fmt: skip
#: name -> BioRule options (``interneurons`` is BioMLP's; it leaves conv nets unchanged).
VARIANTS: dict[str, dict] = {
    "defaults": {},
    "lr 0.04": {"lr": 0.04},
    "lr 0.16": {"lr": 0.16},
    "fan_in_exponent 0.25": {"fan_in_exponent": 0.25},
    "fan_in_exponent 0.75": {"fan_in_exponent": 0.75},
    "cost 0.2": {"cost": 0.2},
    "cost 0.8": {"cost": 0.8},
    "prune_threshold 0.05": {"prune_threshold": 0.05},
    "prune_threshold 0.2": {"prune_threshold": 0.2},
    "max_step 0.1": {"max_step": 0.1},
    "max_step 0.4": {"max_step": 0.4},
    "momentum 0.8": {"momentum": 0.8},
    "momentum 0.95": {"momentum": 0.95},
    "grad_beta 0.9": {"grad_beta": 0.9},
    "grad_beta 0.999": {"grad_beta": 0.999},
    "budget_rate 0.001": {"budget_rate": 0.001},
    "budget_rate 0.03": {"budget_rate": 0.03},
    "budget_rate 0.1": {"budget_rate": 0.1},
    "budget_rate 0.3": {"budget_rate": 0.3},
    "budget_rate 0.1 + cost 0.2": {"budget_rate": 0.1, "cost": 0.2},
    "normalize_by tensor": {"normalize_by": "tensor"},
    "warmup 0": {"warmup": 0},
    "warmup 1000": {"warmup": 1000},
    "noise 0.05": {"noise": 0.05},
    "growth (1% every 100 steps)": {"grow_every": 100, "grow_fraction": 0.01},
    "weight_dependence 0.25": {"weight_dependence": 0.25},
    "weight_dependence 0.5": {"weight_dependence": 0.5},
    "weight_dependence 0.75": {"weight_dependence": 0.75},
    "weight_dependence 0.5 (potentiation)": {
        "weight_dependence": 0.5,
        "weight_dependence_on": "potentiation",
    },
    "weight_dependence 0.5 + budget_rate 0.1": {"weight_dependence": 0.5, "budget_rate": 0.1},
    "weight_dependence 0.75 + budget_rate 0.1": {"weight_dependence": 0.75, "budget_rate": 0.1},
    "weight_dependence 0.5 + prune_threshold 0.2": {
        "weight_dependence": 0.5,
        "prune_threshold": 0.2,
    },
    "weight_dependence 0.5 + budget_rate 0.1 + prune_threshold 0.2": {
        "weight_dependence": 0.5,
        "budget_rate": 0.1,
        "prune_threshold": 0.2,
    },
    "dense (cost 0 + prune_threshold 0)": {"cost": 0.0, "prune_threshold": 0.0},
    "constant rate": {"total_steps": None},
    # one layer role at a time: the readout (the last synaptic layer) or every other layer
    "weight_dependence 0.5 readout only": {"readout": {"weight_dependence": 0.5}},
    "weight_dependence 0.5 hidden only": {
        "weight_dependence": 0.5,
        "readout": {"weight_dependence": 1.0},
    },
    "weight_dependence 0.5 (potentiation) readout only": {
        "readout": {"weight_dependence": 0.5, "weight_dependence_on": "potentiation"},
    },
    "weight_dependence 0.5 (potentiation) hidden only": {
        "weight_dependence": 0.5,
        "weight_dependence_on": "potentiation",
        "readout": {"weight_dependence": 1.0, "weight_dependence_on": "both"},
    },
    # the same with a higher metabolic cost (everywhere), against the connectivity it raises
    **{
        f"weight_dependence 0.5 (potentiation) hidden only + cost {cost}": {
            "weight_dependence": 0.5,
            "weight_dependence_on": "potentiation",
            "cost": cost,
            "readout": {"weight_dependence": 1.0, "weight_dependence_on": "both"},
        }
        for cost in (0.8, 1.6)
    },
    **{f"saturation {k}": {"saturation": float(k)} for k in (8, 15, 30, 60, 120)},
    "no saturation": {"saturation": 0.0},  # the default before (30 now)
    "interneurons 0.05": {"interneurons": 0.05},
    "interneurons 0.2": {"interneurons": 0.2},
}


def jobs_of(tasks, variants, seeds) -> list:
    """Rule benchmark jobs ``(task, "bio", seed, None, options)`` of every case."""
    jobs = []
    for name in tasks:
        for variant in variants:
            options = dict(VARIANTS[variant])
            task = TASKS[name]
            if "interneurons" in options:
                inh = options.pop("interneurons")
                if task.arch != "mlp":
                    continue  # conv nets have no interneurons by default
                task = dataclasses.replace(task, name=f"{name}+inh{inh}", interneurons=inh)
            jobs += [(task, "bio", s, None, options or None) for s in seeds]
    return jobs


def variant_of(row: dict) -> str:
    options = dict(row.get("options") or {})
    if "+inh" in row["task"]:
        options["interneurons"] = float(row["task"].split("+inh")[1])
    return next(name for name, o in VARIANTS.items() if o == options)


def summarise(runs: list[dict], tasks) -> dict:
    """Per variant and task: mean test accuracy and connectivity, and the paired change of the
    test accuracy against the defaults (the mean over seeds both have)."""
    by: dict = {}
    for row in runs:
        task = row["task"].split("+inh")[0]
        by.setdefault(variant_of(row), {}).setdefault(task, {})[row["seed"]] = row
    table: dict = {}
    for variant, per_task in by.items():
        entry = {}
        for task in tasks:
            rows = per_task.get(task, {})
            base = by["defaults"].get(task, {})
            seeds = sorted(s for s in rows if s in base and rows[s]["test"] is not None)
            if not seeds:
                continue
            entry[task] = {
                "test": statistics.fmean(rows[s]["test"] for s in seeds),
                "change": statistics.fmean(
                    rows[s]["test"] - (base[s]["test"] or 0.0) for s in seeds
                ),  # fmt: skip
                "connectivity": statistics.fmean(rows[s]["connectivity"] for s in seeds),
                "seeds": seeds,
            }
            shapes = [(rows[s].get("worst_abs_skew"), rows[s].get("worst_abs_kurtosis"))
                      for s in seeds]  # fmt: skip
            if all(a is not None and b is not None for a, b in shapes):
                entry[task]["shape"] = [statistics.fmean(x) for x in zip(*shapes, strict=True)]
        changes = [e["change"] for e in entry.values()]
        shapes = [e["shape"] for e in entry.values() if "shape" in e]
        worst_shape = [max(x) for x in zip(*shapes, strict=True)] or None
        table[variant] = {"tasks": entry, "mean_change": statistics.fmean(changes),
                          "worst_change": min(changes), "worst_shape": worst_shape}  # fmt: skip
    return table


def markdown(result: dict) -> str:
    tasks, table = result["tasks"], result["table"]
    lines = [
        f"# BioRule's defaults, one change at a time ({len(result['seeds'])} seed(s))",
        "",
        "bio on the rule benchmark's tasks (its data, schedule and models; MLPs with feedforward "
        f"inhibition); `{result.get('command', 'python benchmarks/defaults_sweep.py')}`. Cells: "
        "test accuracy (change against the defaults on the same seeds), connectivity. Ordered by "
        "the mean change. Shape: the largest over tasks of each run's worst layer "
        "abs(skewness), abs(excess kurtosis) of ln|w| (rule benchmark bounds: 0.5, 1).",
        "",
        "| variant | " + " | ".join(tasks) + " | mean change | worst change | shape |",
        "|---" * (len(tasks) + 4) + "|",
    ]
    order = sorted(table, key=lambda v: (v != "defaults", -table[v]["mean_change"]))
    for variant in order:
        cells = []
        for task in tasks:
            e = table[variant]["tasks"].get(task)
            cell = "-" if e is None else f"{e['test']:.3f} ({e['change']:+.3f})"
            cells.append(cell if e is None else f"{cell}, {e['connectivity']:.2f}")
        shape = table[variant].get("worst_shape")
        shape = "-" if not shape else f"{shape[0]:.2f}, {shape[1]:.2f}"
        lines.append(f"| {variant} | " + " | ".join(cells) +
                     f" | {table[variant]['mean_change']:+.3f} "
                     f"| {table[variant]['worst_change']:+.3f} | {shape} |")  # fmt: skip
    env = result["environment"]
    lines += ["", f"Environment: torch {env['torch']}, {env['cpus']} CPUs, {env['workers']} "
              "workers, 1 thread per run."]  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=positive_int, default=2, help="seeds per case (2)")
    parser.add_argument("--workers", type=positive_int, default=os.cpu_count() or 1,
                        help="processes (default: the CPU count, %(default)s)")  # fmt: skip
    parser.add_argument("--tasks", default=",".join(SWEEP_TASKS), help="comma-separated tasks")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="comma-separated names, from: "
                        + "; ".join(VARIANTS).replace("%", "%%"))  # fmt: skip
    parser.add_argument("--journal", type=Path, default=Path("runs/defaults_sweep.jsonl"))
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    args = parser.parse_args(argv)
    tasks, variants = args.tasks.split(","), [v.strip() for v in args.variants.split(",")]
    if unknown := [t for t in tasks if t not in TASKS]:
        parser.error(f"unknown task {unknown}; tasks: {', '.join(TASKS)}")
    if unknown := [v for v in variants if v not in VARIANTS]:
        parser.error(f"unknown variant {unknown}; variants: {'; '.join(VARIANTS)}")
    variants = ["defaults", *[v for v in variants if v != "defaults"]]  # the baseline
    seeds = list(range(args.seeds))
    runs = run_jobs(jobs_of(tasks, variants, seeds), args.workers,
                    lambda line: print(line, flush=True), args.journal)  # fmt: skip
    command = "python benchmarks/defaults_sweep.py " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)
    )
    result = {"command": command.strip(), "tasks": tasks, "variants": variants, "seeds": seeds,
              "runs": runs,
              "table": summarise(runs, tasks),
              "environment": {"python": platform.python_version(), "torch": torch.__version__,
                              "cpus": os.cpu_count(), "workers": args.workers,
                              "glyphs": glyph_environment()}}  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out / "defaults_sweep.json", json_text(result))
    text = markdown(result)
    write_atomic(args.out / "defaults_sweep.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
