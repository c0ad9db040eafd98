"""Few-shot in learn2learn's own loop: MAML, MetaSGD, BioMAML and BioMetaSGD on glyphs.

The canonical learn2learn recipe (``maml_omniglot.py``): a ``TaskDataset`` with ``NWays``,
``KShots``, ``LoadData``, ``RemapLabels`` over the meta-train classes, ``meta_batch`` tasks per
outer step, one inner step, query loss averaged, one outer step. Every method gets the same
meta-iterations, the same meta-train task stream (seeded) and the same 600 meta-test episodes
(drawn by a learn2learn taskset over the held-out classes), so differences are paired per
episode: the table reports each method's mean query accuracy with its 95% CI and each bio
method minus its backprop counterpart with the paired 95% CI (normal, over episodes).

Settings are the library defaults (:data:`bioplastic.experiments.metatrain.MAML_DEFAULTS`):
MAML/MetaSGD inner SGD rate 0.4 with Adam outside, BioMAML/BioMetaSGD inner bio rate 0.3 with
BioRule outside; ``--bio-inner`` and ``--bio-outer`` change the bio methods' settings, to study
them. One seed; episode CIs do not include training variability.

    nice -n 5 python benchmarks/fewshot_l2l.py --iterations 1000 --workers 2
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import time
from pathlib import Path

import torch
from torch import nn

import bioplastic
from bioplastic.cli._args import add_bio_inner_argument, rule_option
from bioplastic.data.glyphs import glyph_environment, load_glyphs
from bioplastic.experiments._common import write_json
from bioplastic.experiments.metatrain import (
    evaluate_maml,
    make_maml,
    meta_train_tasks,
    split_inner,
)
from strategies.fewshot import index_episodes, make_taskset, mean_ci

METHODS = {  # name: (rule, meta_sgd)
    "maml": ("adam", False),
    "metasgd": ("adam", True),
    "biomaml": ("bio", False),
    "biometasgd": ("bio", True),
}
PAIRS = (("biomaml", "maml"), ("biometasgd", "metasgd"), ("biomaml", "metasgd"))
WAYS, QUERIES = 5, 15
OUT = Path(__file__).parent / "results" / "fewshot_l2l"


#: The networks: an MLP 784-128-128-5, and a conv net of four 3x3 blocks of 32 channels (ReLU,
#: 2x2 max-pool after the first three, global average pooling after the last) with a linear
#: readout, whose 1x28x28 input goes through an ON/OFF split (excitatory and inhibitory copies,
#: so a Dale-typed first layer can learn signed filters; the backprop net gets it too).
ARCHS = {"mlp": "MLP 784-128-128-5", "conv": "conv net 4x(3x3, 32), ON/OFF input"}


def _data(split: str, arch: str = "mlp") -> tuple[torch.Tensor, torch.Tensor]:
    x, y = load_glyphs(split).tensors()
    return (x.reshape(len(x), -1) if arch == "mlp" else x.reshape(len(x), 1, 28, 28)), y


def _model(seed: int, bio: bool, arch: str = "mlp") -> nn.Module:
    torch.manual_seed(seed)
    if arch == "mlp":
        net = nn.Sequential(
            nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, WAYS)
        )
        return bioplastic.dalify(net, seed=seed) if bio else net
    first = (bioplastic.DaleConv2d(2, 32, 3, padding=1, dale_sign=bioplastic.on_off_sign(1))
             if bio else nn.Conv2d(2, 32, 3, padding=1))  # fmt: skip
    layers: list[nn.Module] = [bioplastic.OnOffSplit(), first]
    for k in range(4):
        if k:
            layers.append(nn.Conv2d(32, 32, 3, padding=1))
        layers += [nn.ReLU(), nn.MaxPool2d(2) if k < 3 else nn.AdaptiveAvgPool2d(1)]
    net = nn.Sequential(*layers, nn.Flatten(), nn.Linear(32, WAYS))
    return bioplastic.dalify(net, seed=seed) if bio else net  # the ON/OFF types are kept


def run_one(job: tuple[str, int, dict]) -> dict:
    """Meta-train one method for one shot count; query accuracy on the shared test episodes."""
    method, shots, args = job
    torch.set_num_threads(1)
    rule, meta_sgd = METHODS[method]
    x_train, y_train = _data("train", args.get("arch", "mlp"))
    x_test, y_test = _data("test", args.get("arch", "mlp"))
    inner_lr, inner = split_inner(args.get("bio_inner", {}) if rule == "bio" else {})
    learner, outer = make_maml(
        _model(args["seed"], rule == "bio", args.get("arch", "mlp")),
        rule,
        meta_sgd=meta_sgd,
        seed=args["seed"],
        inner_lr=inner_lr,
        inner_options=inner,
        outer_kwargs=args.get("bio_outer") if rule == "bio" else None,
    )
    taskset = make_taskset(x_train, y_train, ways=WAYS, shots=shots, queries=QUERIES)
    start = time.perf_counter()
    losses = meta_train_tasks(learner, outer, taskset, shots, args["iterations"],
                              meta_batch=args["meta_batch"], seed=args["seed"])  # fmt: skip
    episodes = index_episodes(y_test, WAYS, shots, QUERIES, args["episodes"],
                              seed=1000 + args["seed"], sampler="learn2learn")  # fmt: skip
    accuracies = evaluate_maml(learner, x_test, episodes)
    seconds = time.perf_counter() - start
    print(f"{method} {shots}-shot: {sum(accuracies) / len(accuracies):.3f} ({seconds:.0f} s)",
          flush=True)  # fmt: skip
    tail = losses[-50:]
    return {"method": method, "shots": shots, "accuracies": accuracies, "seconds": seconds,
            "final_meta_loss": sum(tail) / max(len(tail), 1)}  # fmt: skip


def summarise(runs: list[dict], args: dict) -> dict:
    table: dict[str, dict] = {}
    for shots in sorted({r["shots"] for r in runs}):
        acc = {r["method"]: r["accuracies"] for r in runs if r["shots"] == shots}
        row = {m: mean_ci(a) for m, a in acc.items()}
        for a, b in PAIRS:
            if a in acc and b in acc:
                diff = mean_ci([p - q for p, q in zip(acc[a], acc[b], strict=True)])
                diff["low"], diff["high"] = diff["mean"] - diff["ci95"], diff["mean"] + diff["ci95"]
                diff["no_loss_beyond_1pt"] = diff["low"] >= -0.01
                row[f"{a} - {b}"] = diff
        table[f"{shots}-shot"] = row
    return {"config": args, "results": table, "runs": runs}


def markdown(summary: dict) -> str:
    c = summary["config"]
    lines = [
        f"# Few-shot in learn2learn's loop (glyphs, {ARCHS[c.get('arch', 'mlp')]})",
        "",
        f"5-way, {c['iterations']} meta-iterations x {c['meta_batch']} tasks, one inner step, "
        f"{c['episodes']} meta-test episodes (held-out classes), seed {c['seed']}. "
        "Mean query accuracy with 95% CI over episodes; differences are paired per episode.",
        "",
        "Command: `" + c["command"] + "`",
        "",
        "| | " + " | ".join(summary["results"]) + " |",
        "|---|" + "---|" * len(summary["results"]),
    ]
    names = list(dict.fromkeys(k for row in summary["results"].values() for k in row))
    for name in names:
        cells = []
        for row in summary["results"].values():
            v = row.get(name)
            if v is None:
                cells.append("")
            elif " - " in name:
                mark = "" if v["no_loss_beyond_1pt"] else " (loss > 1 pt)"
                cells.append(f"{v['mean']:+.3f} [{v['low']:+.3f}, {v['high']:+.3f}]{mark}")
            else:
                cells.append(f"{v['mean']:.3f} ± {v['ci95']:.3f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--meta-batch", type=int, default=16)
    parser.add_argument("--episodes", type=int, default=600)
    parser.add_argument("--shots", default="1,5")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--arch", choices=list(ARCHS), default="mlp")
    parser.add_argument("--out", default=str(OUT))
    add_bio_inner_argument(parser, "the bio methods'")
    parser.add_argument(
        "--bio-outer", action="append", default=[], type=rule_option, metavar="KEY=VALUE",
        help="the bio methods' outer BioRule: an option over make_maml's (repeatable; e.g. "
        "other_lr=0, no outer step of the biases)",
    )  # fmt: skip
    a = parser.parse_args()
    methods = a.methods.split(",")
    unknown = set(methods) - set(METHODS)
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}; choose from {list(METHODS)}")
    bio_inner = dict(a.bio_inner)
    try:
        split_inner(bio_inner)
    except ValueError as error:
        parser.error(f"--bio-inner: {error}")
    bio_outer = dict(a.bio_outer)
    try:  # checked before any work: a BioRule with these options on a stand-in weight
        bioplastic.make_optimizer("bio", [torch.zeros(2, 2, requires_grad=True)], **bio_outer)
    except (TypeError, ValueError) as error:
        parser.error(f"--bio-outer: {error}")
    command = " ".join(
        ["python benchmarks/fewshot_l2l.py", f"--iterations {a.iterations}",
         f"--meta-batch {a.meta_batch}", f"--shots {a.shots}", f"--seed {a.seed}",
         f"--workers {a.workers}"]
        + [f"--episodes {a.episodes}"] * (a.episodes != 600)
        + [f"--methods {a.methods}"] * (a.methods != ",".join(METHODS))
        + [f"--arch {a.arch}"] * (a.arch != "mlp")
        + [f"--bio-inner {k}={v}" for k, v in bio_inner.items()]
        + [f"--bio-outer {k}={v}" for k, v in bio_outer.items()]
        + [f"--out {a.out}"] * (a.out != str(OUT))
    )  # fmt: skip
    args = {"iterations": a.iterations, "meta_batch": a.meta_batch, "episodes": a.episodes,
            "seed": a.seed, "command": command, "bio_inner": bio_inner, "bio_outer": bio_outer,
            "arch": a.arch, "glyphs": glyph_environment()}  # fmt: skip
    jobs = [(m, int(k), args) for k in a.shots.split(",") for m in methods]
    load_glyphs("train")  # render the cache once, before the workers start
    if a.workers > 1:
        with mp.get_context("spawn").Pool(a.workers) as pool:
            runs = pool.map(run_one, jobs, chunksize=1)
    else:
        runs = [run_one(job) for job in jobs]
    summary = summarise(runs, args)
    write_json(a.out + ".json", summary)
    Path(a.out + ".md").write_text(markdown(summary))
    print(markdown(summary))
    if not all(math.isfinite(r["final_meta_loss"]) for r in runs):
        print("warning: a meta-training run ended with a non-finite loss")


if __name__ == "__main__":
    main()
