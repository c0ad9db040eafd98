"""What the Dale-typed initialisation costs on MNIST-1D (MLP 3x512), and why.

Every presynaptic unit of a Dale-typed layer sends weights of one sign, so each weight matrix
has a rank-one mean part ``1 (s * mean|w|)^T``: every postsynaptic unit receives the same
sample-dependent shift. With lognormal magnitudes of spread ``sigma`` that part holds a fraction
``exp(-sigma^2)`` of the second moment of the weights (0.78 at the default 0.5). This script
trains the rule benchmark's MNIST-1D 3x512 task (same data, schedule and architecture, ON/OFF
input split included) from five initialisations:

- ``torch``: PyTorch's default init (signs free);
- ``free-sign``: the Dale init's lognormal magnitudes with a random sign per entry (not Dale);
- ``dale-0.5`` (the default), ``dale-1.0``, ``dale-1.25``: Dale-typed, lognormal spread sigma;

with SGD and Adam (the rule benchmark's settings) and the bio rule (defaults), and measures the
common-mode share of the last hidden layer's pre-activations at initialisation on the test set:
``Var_x(mean_i z_i(x)) / mean_i Var_x(z_i(x))`` (0 when units vary independently, 1 when they
all move together). Writes ``benchmarks/results/init_structure.{json,md}``.

    python benchmarks/init_structure.py [--seeds 3] [--rules sgd,adam,bio]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch import nn

from bioplastic._io import write_atomic
from bioplastic.baselines import make_optimizer
from bioplastic.dale import dale_init_
from bioplastic.experiments._common import mean_std
from bioplastic.experiments.rulebench import TASKS, _train, build_model, load_task
from bioplastic.probes import synaptic_layers
from bioplastic.train import accuracy

RESULTS = Path(__file__).resolve().parent / "results"
INITS = ("torch", "free-sign", "dale-0.5", "dale-1.0", "dale-1.25")
TASK = TASKS["mnist1d-mlp3x512"]


def build(init: str, seed: int, in_shape) -> nn.Module:
    """The task's model with one of :data:`INITS`."""
    model = build_model(TASK, in_shape, "default" if init == "torch" else "dale", seed, 0.0)
    if init == "torch" or init == "dale-0.5":
        return model
    gen = torch.Generator().manual_seed(seed + 1000)
    for _, layer in synaptic_layers(model):
        sigma = 0.5 if init == "free-sign" else float(init.split("-")[1])
        dale_init_(layer.weight, layer.dale_sign, sigma=sigma, generator=gen)
        if init == "free-sign":
            with torch.no_grad():
                flip = torch.rand(layer.weight.shape, generator=gen) < 0.5
                layer.weight.copy_(torch.where(flip, -layer.weight, layer.weight))
            del layer._buffers["dale_sign"]
            del layer.weight.dale_sign
    return model


def common_mode_share(model: nn.Module, x: torch.Tensor) -> float:
    """Share of the last hidden layer's pre-activation variance that all its units share."""
    layers = [m for _, m in synaptic_layers(model)]
    captured = {}
    hook = layers[-2].register_forward_hook(lambda m, i, o: captured.setdefault("z", o))
    with torch.no_grad():
        model(x)
    hook.remove()
    z = captured["z"]
    return float(z.mean(1).var() / z.var(0).mean())


def run(rule: str, init: str, seed: int, data) -> dict:
    xtr, ytr, xte, yte = data
    torch.manual_seed(seed)
    model = build(init, seed, xtr.shape[1:])
    share = common_mode_share(model, xte)
    extra = {"seed": seed} if rule == "bio" else {}
    _train(model, make_optimizer(rule, model.parameters(), **extra), xtr, ytr, TASK, seed)
    return {
        "rule": rule, "init": init, "seed": seed, "common_mode_share": round(share, 4),
        "train": accuracy(model, xtr[:4000], ytr[:4000]), "test": accuracy(model, xte, yte),
    }  # fmt: skip


def markdown(runs: list[dict], rules: list[str]) -> str:
    lines = [
        "# What the Dale-typed initialisation costs (MNIST-1D, MLP 3x512)",
        "",
        f"Test accuracy, mean ± std over {len({r['seed'] for r in runs})} seed(s) "
        "(`python benchmarks/init_structure.py`); common-mode share of the last hidden "
        "layer's pre-activations at initialisation (see the script's docstring).",
        "",
        "| init | common-mode share | " + " | ".join(rules) + " |",
        "|---|---|" + "---|" * len(rules),
    ]
    for init in INITS:
        mine = [r for r in runs if r["init"] == init]
        if not mine:
            continue
        share = mean_std([r["common_mode_share"] for r in mine])
        cells = []
        for rule in rules:
            accs = [r["test"] for r in mine if r["rule"] == rule]
            ms = mean_std(accs)
            cells.append(f"{ms['mean']:.3f} ± {ms['std']:.3f}" if accs else "-")
        lines.append(f"| {init} | {share['mean']:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rules", default="sgd,adam,bio")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rules = args.rules.split(",")
    data = load_task(TASK)
    runs = []
    for init in INITS:
        for rule in rules:
            for seed in range(args.seeds):
                runs.append(run(rule, init, seed, data))
                print(json.dumps(runs[-1]), flush=True)
    table = markdown(runs, rules)
    write_atomic(RESULTS / "init_structure.json", json.dumps({"runs": runs}, indent=1) + "\n")
    write_atomic(RESULTS / "init_structure.md", table)
    print(table)


if __name__ == "__main__":
    main()
