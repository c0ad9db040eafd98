"""Does the conv net's last layer fall silent early in bio meta-training? A short check.

The 4-block conv net of ``fewshot_l2l.py --arch conv`` with BioMetaSGD at 1-shot once ended at
chance (query accuracy 0.200, meta-loss ln 5): its last ReLU layer had fallen silent. The
outer BioRule steps biases with Adam (rate 1e-3); "outer bias step off" sets it to 0 (for
BioMetaSGD the learned rates keep theirs), "outer bias step SGD" makes it plain SGD (a step
proportional to the meta-gradient). This script
meta-trains each setting for a few iterations (learn2learn's loop, 5-way 1-shot, meta-train
classes ``0..classes-1`` of the glyph train split) and reports the fraction of the last ReLU
layer's outputs above 0 on a fixed batch of 256 training images, per seed (the json file also
holds the mean meta-loss of the last 5 iterations minus ln 5). A short run only shows the early
risk: a layer silent here can still recover over 1,000 iterations (see the README's few-shot
paragraph).

    python benchmarks/fewshot_collapse.py --workers 2
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import shlex
import statistics
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fewshot_l2l as l2l_bench  # noqa: E402  (the conv net and data of the l2l benchmark)

from bioplastic._io import write_atomic  # noqa: E402
from bioplastic.cli._args import positive_int  # noqa: E402
from bioplastic.data.glyphs import glyph_environment  # noqa: E402
from bioplastic.experiments._common import write_json  # noqa: E402
from bioplastic.experiments.metatrain import make_maml, meta_train_tasks  # noqa: E402
from bioplastic.probes import record_activations  # noqa: E402
from strategies.fewshot import make_taskset  # noqa: E402

#: name: (BioMetaSGD?, inner rate, outer options over make_maml's)
SETTINGS: dict[str, tuple[bool, float, dict]] = {
    "BioMAML, inner 0.3 (default)": (False, 0.3, {}),
    "BioMAML, inner 0.1": (False, 0.1, {}),
    "BioMAML, inner 0.3, outer bias step off": (False, 0.3, {"other_lr": 0.0}),
    "BioMAML, inner 0.3, outer homeostasis off": (False, 0.3, {"homeostasis": False}),
    "BioMetaSGD, inner 0.3 (default)": (True, 0.3, {}),
    "BioMetaSGD, inner 0.1": (True, 0.1, {}),
    "BioMetaSGD, inner 0.3, outer bias step off": (True, 0.3, {"other_lr": 0.0}),
    # a bias step proportional to the meta-gradient instead of Adam's ~constant one
    "BioMetaSGD, inner 0.3, outer bias step SGD 0.01": (
        True,
        0.3,
        {"other": "sgd", "other_lr": 0.01},
    ),
    "BioMetaSGD, inner 0.3, outer bias step SGD 0.001": (
        True,
        0.3,
        {"other": "sgd", "other_lr": 0.001},
    ),
}


def last_layer_activity(meta: nn.Module, probe: torch.Tensor) -> float:
    """Fraction of the last ReLU layer's outputs above 0 on ``probe``."""
    name = [n for n, m in meta.module.named_modules() if isinstance(m, nn.ReLU)][-1]
    acts = record_activations(meta.module, probe, layers=[name])[name]
    return float((acts > 0).float().mean())


def run_one(job: tuple[str, int, dict]) -> dict:
    """Meta-train one setting for one seed; the last layer's activity and the meta-loss."""
    name, seed, args = job
    torch.set_num_threads(1)
    meta_sgd, inner_lr, outer = SETTINGS[name]
    x, y = l2l_bench._data("train", "conv")
    keep = y < args["classes"]
    taskset = make_taskset(x[keep], y[keep], ways=l2l_bench.WAYS, shots=1,
                           queries=l2l_bench.QUERIES)  # fmt: skip
    torch.manual_seed(seed)
    net = l2l_bench._model(seed, True, "conv")
    meta, optimizer = make_maml(net, "bio", seed=seed, inner_lr=inner_lr, outer_kwargs=outer,
                                meta_sgd=meta_sgd)  # fmt: skip
    losses = meta_train_tasks(meta, optimizer, taskset, shots=1, iterations=args["iterations"],
                              meta_batch=args["meta_batch"], seed=seed)  # fmt: skip
    tail = losses[-5:]
    return {"setting": name, "seed": seed,
            "activity": last_layer_activity(meta, x[keep][:256]),
            "loss_minus_ln5": sum(tail) / len(tail) - math.log(l2l_bench.WAYS)}  # fmt: skip


def to_markdown(result: dict) -> str:
    cfg = result["config"]
    lines = [
        "# Early silencing of the conv net's last layer in bio meta-training",
        "",
        f"learn2learn's loop, glyphs (meta-train classes 0-{cfg['classes'] - 1}), 5-way 1-shot, "
        f"{cfg['iterations']} meta-iterations x {cfg['meta_batch']} tasks, the 4-block conv net "
        "of `fewshot_l2l.py --arch conv`. Cells: fraction of the last ReLU layer's outputs "
        "above 0 on 256 training images (below 0.02: silent); per seed, then the number of "
        "seeds with a silent layer. A short run shows the early risk only.",
        "",
        f"Command: `{cfg['command']}`",
        "",
        "| setting | " + " | ".join(f"seed {s}" for s in cfg["seeds"]) + " | silent | median |",
        "|---|" + "---:|" * (len(cfg["seeds"]) + 2),
    ]
    for name in cfg["settings"]:
        rows = {r["seed"]: r for r in result["runs"] if r["setting"] == name}
        acts = [rows[s]["activity"] for s in cfg["seeds"]]
        silent = sum(a < 0.02 for a in acts)
        cells = " | ".join(f"{a:.3f}" for a in acts)
        lines.append(f"| {name} | {cells} | {silent}/{len(acts)} | "
                     f"{statistics.median(acts):.3f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2,3,4,5", help="comma-separated seeds")
    parser.add_argument("--iterations", type=positive_int, default=20)
    parser.add_argument("--meta-batch", type=positive_int, default=4)
    parser.add_argument(
        "--classes",
        type=positive_int,
        default=200,
        help="meta-train classes (the first of the glyph train split)",
    )
    parser.add_argument("--workers", type=positive_int, default=1)
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/fewshot_l2l_inner/conv_collapse")
    )
    args = parser.parse_args(argv)
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        parser.error(f"--seeds must be comma-separated integers, got {args.seeds!r}")
    if args.classes < l2l_bench.WAYS:
        parser.error(f"--classes must be at least {l2l_bench.WAYS}")
    config = {"seeds": seeds, "iterations": args.iterations, "meta_batch": args.meta_batch,
              "classes": args.classes, "settings": list(SETTINGS), "glyphs": glyph_environment(),
              "command": "python benchmarks/fewshot_collapse.py "
                         + shlex.join(sys.argv[1:] if argv is None else argv)}  # fmt: skip
    jobs = [(name, seed, config) for name in SETTINGS for seed in seeds]
    pool = mp.get_context("spawn").Pool(args.workers) if args.workers > 1 else None
    runs = []
    try:
        for run in pool.imap(run_one, jobs) if pool else map(run_one, jobs):
            runs.append(run)
            print(f"{run['setting']}, seed {run['seed']}: {run['activity']:.3f}", flush=True)
    finally:
        if pool:
            pool.close()
            pool.join()
    result = {"config": config, "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out.with_suffix(".json"), result)
    write_atomic(args.out.with_suffix(".md"), to_markdown(result))
    print(f"wrote {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
