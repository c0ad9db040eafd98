"""Feedforward inhibition through interneurons on the rule benchmark's MLPs and conv nets.

A Dale-typed layer whose inputs are all positive (ReLU units) gives every postsynaptic unit the
same sample-dependent shift (``benchmarks/init_structure.py`` measured 74% of the last hidden
layer's pre-activation variance on MNIST-1D 3x512, mean of 3 seeds). In
:class:`bioplastic.InhibitedLinear` every hidden unit is excitatory and a few linear
interneurons (10% of the layer's inputs), each a weighted mean of those inputs, inhibit the
layer's units: the shared drive is subtracted (Cornford et al. 2021). The bio rule's
homeostasis holds each interneuron's weight total near 1 and each unit's E and I totals near
their budgets while it learns (the budgets follow the totals at ``budget_rate``). With one
hidden layer (digits 1x256) only the readout has interneurons.

Runs the rule benchmark's MLP tasks (digits 1x256, MNIST-1D 2x256 and 3x512, glyphs 500-class
784-512-256; same data, schedule and evaluation as ``benchmarks/rulebench.py``), 3 seeds, with

- ``plain``: ``BioMLP(interneurons=0)``, the plain Dale MLP (bio; and adam/sgd with
  PyTorch's init, the rule benchmark's dense baselines),
- ``inhibited``: ``BioMLP(interneurons=0.1)`` (bio; adam/sgd with the Dale init and with
  PyTorch's init on the same architecture),

and its conv nets (glyphs, 100 classes, 2 and 4 conv layers; :class:`bioplastic.InhibitedConv2d`
with 1x1 interneurons in every conv layer after the first, bio only on that architecture), and
the common-mode share of the last hidden layer's pre-activations at initialisation
(``Var_x(mean_i z_i(x)) / mean_i Var_x(z_i(x))`` on the test set). Writes
``benchmarks/results/interneurons.{json,md}``.

    python benchmarks/interneurons.py [--seeds 3] [--workers 2]
    python benchmarks/interneurons.py --depth-sweep [--seeds 3] [--workers 2]

``--depth-sweep`` instead trains bio on plain and inhibited MNIST-1D MLPs of depths 1-4 and
widths 256 and 512 (SGD with PyTorch's init as the reference) and writes
``benchmarks/results/interneurons_depth.{json,md}``. Figures:
``benchmarks/results/figures/interneurons.png`` and ``interneurons_depth.png``; ``--replot``
redraws tables and figures from the saved results without running anything.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
from pathlib import Path

import torch
from torch import nn

from bioplastic._io import json_text, write_atomic
from bioplastic.baselines import interneurons_on_purpose
from bioplastic.cli._args import positive_int
from bioplastic.dale import INTERNEURONS
from bioplastic.experiments._common import mean_std
from bioplastic.experiments._figures import new_figure, save_figure
from bioplastic.experiments.rulebench import TASKS, Task, build_model, load_task, run_jobs

RESULTS = Path(__file__).resolve().parent / "results"
TASK_NAMES = ("digits-mlp1x256", "mnist1d-mlp2x256", "mnist1d-mlp3x512", "glyphs500-mlp",
              "glyphs100-conv2", "glyphs100-conv4")  # fmt: skip
RULES = {
    "plain": ("bio", "adam", "sgd"),
    "inhibited": ("bio", "adam-dale", "sgd-dale", "adam", "sgd"),
}
#: The conv nets (InhibitedConv2d, 1x1 interneurons) run bio only on the inhibited one.
CONV_RULES = {"plain": ("bio", "adam", "sgd"), "inhibited": ("bio",)}


def rules_of(name: str) -> dict[str, tuple[str, ...]]:
    return CONV_RULES if "conv" in name else RULES


def variant(name: str, arch: str):
    task = TASKS[name]
    if arch == "plain":
        return dataclasses.replace(task, interneurons=0.0)
    return dataclasses.replace(task, name=f"{name}+inh", interneurons=INTERNEURONS)


def common_mode_share(task, seed: int) -> float:
    """Share of the last hidden layer's pre-activation variance that all its units share."""
    _, _, xte, _ = load_task(task)
    model = build_model(task, xte.shape[1:], "dale", seed)
    last_relu = [m for m in model.modules() if isinstance(m, nn.ReLU)][-1]  # its input: z
    captured = {}
    hook = last_relu.register_forward_pre_hook(lambda m, args: captured.setdefault("z", args[0]))
    with torch.no_grad():
        model(xte)
    hook.remove()
    z = captured["z"].flatten(1)  # units: (channel, position) for the conv nets
    return float(z.mean(1).var() / z.var(0).mean())


def summarise(runs: list[dict], shares: dict, names=TASK_NAMES) -> dict:
    out: dict = {}
    for name in names:
        entry = out[name] = {}
        for arch in RULES:
            task = variant(name, arch).name
            for rule in rules_of(name)[arch]:
                mine = [r for r in runs if r["task"] == task and r["rule"] == rule]
                tests = [r["test"] or 0.0 for r in mine]
                entry[f"{arch}/{rule}"] = {
                    "test": statistics.fmean(tests), "test_std": mean_std(tests)["std"],
                    "train": statistics.fmean(r["train"] or 0.0 for r in mine),
                    "connectivity": statistics.fmean(r["connectivity"] for r in mine),
                    "worst_abs_skew": max(r["worst_abs_skew"] or 0.0 for r in mine),
                    "worst_abs_kurtosis": max(r["worst_abs_kurtosis"] or 0.0 for r in mine),
                    "sign_flips": sum(r["sign_flips"] for r in mine),
                    "dale_violations": sum(r["dale_violations"] for r in mine),
                }  # fmt: skip
        entry["common_mode_share"] = shares[name]
        dense = {k: v["test"] for k, v in entry.items()
                 if isinstance(v, dict) and "test" in v and not k.endswith("/bio")}  # fmt: skip
        best = max(dense, key=dense.get)
        entry["best_dense"] = {"name": best, "test": dense[best]}
        entry["bio_gain"] = entry["inhibited/bio"]["test"] - entry["plain/bio"]["test"]
        entry["gap_to_best_dense"] = {
            arch: entry[f"{arch}/bio"]["test"] - dense[best] for arch in RULES
        }
    return out


def markdown(result: dict) -> str:
    lines = [
        "# Feedforward inhibition (10% interneurons) against the plain Dale networks",
        "",
        f"Test accuracy, mean of {len(result['seeds'])} seeds (connectivity in brackets); the "
        "rule benchmark's tasks, data and schedule; `python benchmarks/interneurons.py`. "
        "`inhibited`: every hidden unit excitatory, 10% linear interneurons per layer after the "
        "first. Common-mode share: of the last hidden layer's pre-activation variance at "
        "initialisation (seed 0).",
        "",
        "| task | common-mode share plain / inhibited | bio plain | bio inhibited | gain "
        "| best dense (any arch, any init) | bio inhibited - best dense | worst abs(skew), "
        "abs(kurtosis) inhibited | sign flips, Dale violations |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, e in result["summary"].items():
        plain, inh = e["plain/bio"], e["inhibited/bio"]
        share = e["common_mode_share"]
        lines.append(
            f"| {name} | {share['plain']:.2f} / {share['inhibited']:.2f} "
            f"| {plain['test']:.3f} ({plain['connectivity']:.2f}) "
            f"| {inh['test']:.3f} ({inh['connectivity']:.2f}) | {e['bio_gain']:+.3f} "
            f"| {e['best_dense']['test']:.3f} ({e['best_dense']['name']}) "
            f"| {e['gap_to_best_dense']['inhibited']:+.3f} "
            f"| {inh['worst_abs_skew']:.2f}, {inh['worst_abs_kurtosis']:.2f} "
            f"| {inh['sign_flips']}, {inh['dale_violations']} |"
        )
    lines += [
        "",
        "Every rule (mean ± std over seeds):",
        "",
        "| task | arch/rule | test | train | connectivity |",
        "|---|---|---|---|---|",
    ]
    for name, e in result["summary"].items():
        for key, v in e.items():
            if isinstance(v, dict) and "test_std" in v:
                lines.append(f"| {name} | {key} | {v['test']:.3f} ± {v['test_std']:.3f} "
                             f"| {v['train']:.3f} | {v['connectivity']:.2f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


#: ``--depth-sweep``: MNIST-1D MLPs of these depths and widths, bio plain and inhibited, SGD
#: (PyTorch's init) as the dense reference.
DEPTHS, WIDTHS = (1, 2, 3, 4), (256, 512)


def depth_sweep(seeds: list[int], workers: int, say, journal: Path) -> dict:
    def task(d: int, w: int, inh: float) -> Task:
        return Task(f"mnist1d-{d}x{w}" + ("+inh" if inh else ""), "mnist1d", "mlp", (w,) * d,
                    interneurons=inh)  # fmt: skip

    kinds = (("plain", "bio"), ("inhibited", "bio"), ("plain", "sgd"))
    cases = [(d, w, arch, rule) for w in WIDTHS for d in DEPTHS for arch, rule in kinds]
    jobs = [(task(d, w, INTERNEURONS if arch == "inhibited" else 0.0), rule, s, None, None)
            for d, w, arch, rule in cases for s in seeds]  # fmt: skip
    runs = run_jobs(jobs, workers, say, journal)
    table: dict = {}
    for d, w, arch, rule in cases:
        name = task(d, w, INTERNEURONS if arch == "inhibited" else 0.0).name
        tests = [r["test"] or 0.0 for r in runs if r["task"] == name and r["rule"] == rule]
        table.setdefault(f"{d}x{w}", {})[f"{arch}/{rule}"] = statistics.fmean(tests)
    return {"seeds": seeds, "depths": list(DEPTHS), "widths": list(WIDTHS), "runs": runs,
            "table": table}  # fmt: skip


def depth_markdown(result: dict) -> str:
    lines = [
        "# Depth and feedforward inhibition on MNIST-1D (bio rule, defaults)",
        "",
        f"Test accuracy, mean of {len(result['seeds'])} seeds: bio on the plain BioMLP / on "
        "BioMLP(interneurons=0.1) (gain), and SGD with PyTorch's init (the best dense baseline "
        "of the rule benchmark); `python benchmarks/interneurons.py --depth-sweep`.",
        "",
        "| depth \\ width | " + " | ".join(str(w) for w in result["widths"]) + " |",
        "|---|" + "---|" * len(result["widths"]),
    ]
    for d in result["depths"]:
        cells = []
        for w in result["widths"]:
            e = result["table"][f"{d}x{w}"]
            plain, inh = e["plain/bio"], e["inhibited/bio"]
            cells.append(f"{plain:.3f} / {inh:.3f} ({inh - plain:+.3f}); SGD {e['plain/sgd']:.3f}")
        lines.append(f"| {d} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def figure(result: dict, path: Path) -> Path:
    """Bio on the plain and the inhibited network, and the best dense baseline, per task."""
    names = list(result["summary"])
    fig = new_figure(7.5, 3.6)
    ax = fig.add_subplot(1, 1, 1)
    xs = range(len(names))
    for k, (label, get) in enumerate((
        ("bio, plain", lambda e: e["plain/bio"]["test"]),
        ("bio, inhibited", lambda e: e["inhibited/bio"]["test"]),
        ("best dense", lambda e: e["best_dense"]["test"]),
    )):  # fmt: skip
        ax.bar([x + (k - 1) * 0.27 for x in xs], [get(result["summary"][n]) for n in names],
               width=0.27, label=label)  # fmt: skip
    ax.set_xticks(list(xs), names, rotation=15, fontsize=7)
    ax.set_ylabel("test accuracy")
    ax.set_title(f"feedforward inhibition (10% interneurons), {len(result['seeds'])} seeds")
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def depth_figure(result: dict, path: Path) -> Path:
    """Test accuracy against depth per width: bio plain, bio inhibited, SGD."""
    widths = result["widths"]
    fig = new_figure(3.3 * len(widths), 3.2)
    for i, w in enumerate(widths):
        ax = fig.add_subplot(1, len(widths), i + 1)
        for key, label, style in (("plain/bio", "bio, plain", "o-"),
                                  ("inhibited/bio", "bio, inhibited", "s-"),
                                  ("plain/sgd", "SGD (PyTorch init)", "^--")):  # fmt: skip
            ax.plot(result["depths"], [result["table"][f"{d}x{w}"][key] for d in result["depths"]],
                    style, label=label)  # fmt: skip
        ax.set_xticks(result["depths"])
        ax.set_xlabel("hidden layers")
        ax.set_title(f"MNIST-1D, width {w}")
        if i == 0:
            ax.set_ylabel("test accuracy")
            ax.legend(fontsize=7)
    return save_figure(fig, path)


def replot(out: Path, figures: Path, depth: bool) -> dict:
    """The markdown and figure of saved results (``--replot``, and after every run: the tables
    and figures always come from the saved JSON; ``depth``: the sweep's)."""
    if depth:
        out = out.with_name(out.name + "_depth")
    path = out.with_suffix(".json")
    if not path.exists():
        raise SystemExit(f"interneurons.py --replot: no results at {path}; run without --replot")
    result = json.loads(path.read_text())
    text = depth_markdown(result) if depth else markdown(result)
    write_atomic(out.with_suffix(".md"), text)
    (depth_figure if depth else figure)(result, figures / f"{out.name}.png")
    print(text)
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--seeds", type=positive_int, default=3, help="seeds 0..N-1")
    parser.add_argument("--workers", type=positive_int, default=1,
                        help="processes, one thread each")  # fmt: skip
    parser.add_argument("--tasks", default=",".join(TASK_NAMES),
                        help="comma-separated, from: " + ", ".join(TASK_NAMES))  # fmt: skip
    parser.add_argument("--depth-sweep", action="store_true",
                        help="instead: MNIST-1D MLPs, depths 1-4, widths 256, 512")  # fmt: skip
    parser.add_argument("--out", type=Path, default=RESULTS / "interneurons",
                        help="stem of the .json/.md (replaced; sweep: +_depth)")  # fmt: skip
    parser.add_argument("--replot", action="store_true",
                        help="redraw tables and figures from saved results")  # fmt: skip
    parser.add_argument("--figures", type=Path, default=RESULTS / "figures",
                        help="folder of the figure (<out name>.png)")  # fmt: skip
    parser.add_argument("--journal", type=Path, default=Path("runs/interneurons.jsonl"),
                        help="finished runs, reused when the code is unchanged (an "
                        "interrupted run continues from it)")  # fmt: skip
    args = parser.parse_args(argv)
    seeds = list(range(args.seeds))
    names = [t for t in args.tasks.split(",") if t]
    unknown = sorted(set(names) - set(TASK_NAMES))
    if unknown or not names:
        parser.error(f"unknown tasks {unknown or args.tasks!r}; choose from {list(TASK_NAMES)}")
    if args.depth_sweep and args.tasks != ",".join(TASK_NAMES):
        parser.error("--depth-sweep runs its own MNIST-1D MLPs: leave out --tasks")
    jobs = [(variant(name, arch), rule, s, None, None)
            for name in names for arch, rules in rules_of(name).items() for rule in rules
            for s in seeds]  # fmt: skip
    say = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    if args.replot:
        return replot(args.out, args.figures, depth=args.depth_sweep)
    if args.depth_sweep:
        result = depth_sweep(seeds, args.workers, say, args.journal)
        out = args.out.with_name(args.out.name + "_depth")
    else:
        with interneurons_on_purpose():  # the inhibited variant trains adam and sgd on them
            runs = run_jobs(jobs, args.workers, say, args.journal)
        shares = {name: {arch: round(common_mode_share(variant(name, arch), 0), 4)
                         for arch in RULES} for name in names}  # fmt: skip
        result = {"seeds": seeds, "interneurons": INTERNEURONS, "runs": runs,
                  "summary": summarise(runs, shares, names)}  # fmt: skip
        out = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out.with_suffix(".json"), json_text(result, indent=1) + "\n")
    return replot(args.out, args.figures, depth=args.depth_sweep)


if __name__ == "__main__":
    main()
