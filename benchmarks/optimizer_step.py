"""Optimizer step time and state memory: BioRule against torch.optim.Adam and SGD.

Measures, in one run and on the same model and gradients, the median wall time of
``optimizer.step()`` (gradients fixed, so only the update is timed; 50 steps, so the noise is
still on and elimination runs every step) for

- ``bio``: BioRule with its defaults (noise, homeostasis, elimination active),
- ``bio+consolidated``: the same after a ``consolidate()`` (adds the per-synapse plasticity),
- ``adam``: ``torch.optim.Adam(foreach=True)``, ``sgd``: ``torch.optim.SGD(momentum=0.9,
  foreach=True)``,

on an MLP 784-1000-1000-10 and a small conv net (BioConvNet, 1x28x28), and the optimizer
state in bytes per parameter. Prints a table with the ratios and writes
``benchmarks/results/optimizer_step.{json,md}``.

    python benchmarks/optimizer_step.py [--device cuda] [--repeats 50] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from torch import nn

import bioplastic as bp

RESULTS = Path(__file__).resolve().parent / "results"


def build(model_name: str, device: str) -> tuple[nn.Module, torch.Tensor]:
    if model_name == "mlp-784-1000-1000-10":
        model = bp.dalify(
            nn.Sequential(
                nn.Linear(784, 1000),
                nn.ReLU(),
                nn.Linear(1000, 1000),
                nn.ReLU(),
                nn.Linear(1000, 10),
            )  # fmt: skip
        )
        x = torch.rand(64, 784)
    else:
        model = bp.BioConvNet(1, 10, channels=(32, 64), on_off=True)
        x = torch.rand(64, 1, 28, 28)
    return model.to(device), x.to(device)


def make(name: str, params) -> torch.optim.Optimizer:
    if name == "bio":
        return bp.BioRule(params)
    if name == "bio+consolidated":
        opt = bp.BioRule(params)
        opt.consolidate(fraction=0.3, factor=0.1)
        return opt
    if name == "adam":
        return torch.optim.Adam(params, lr=1e-3, foreach=True)
    return torch.optim.SGD(params, lr=0.01, momentum=0.9, foreach=True)


def state_bytes(opt: torch.optim.Optimizer) -> int:
    total = 0
    for state in opt.state.values():
        for value in state.values():
            if torch.is_tensor(value):
                total += value.numel() * value.element_size()
    return total


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(model_name: str, opt_name: str, device: str, repeats: int, warmup: int) -> dict:
    torch.manual_seed(0)
    model, x = build(model_name, device)
    nn.functional.cross_entropy(model(x), torch.zeros(len(x), dtype=torch.long, device=device)
                                ).backward()  # fmt: skip
    grads = [p.grad.clone() for p in model.parameters()]
    opt = make(opt_name, model.parameters())
    times = []
    for i in range(warmup + repeats):
        for p, g in zip(model.parameters(), grads, strict=True):
            p.grad = g  # same gradient every step: only the update is timed
        sync(device)
        t0 = time.perf_counter()
        opt.step()
        sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    n_params = sum(p.numel() for p in model.parameters())
    return {
        "median_ms": 1000 * statistics.median(times),
        "state_bytes_per_param": state_bytes(opt) / n_params,
        "n_params": n_params,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(RESULTS / "optimizer_step"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    optimizers = ["bio", "bio+consolidated", "adam", "sgd"]
    models = ["mlp-784-1000-1000-10", "bioconvnet-28x28"]
    results = {
        "device": args.device,
        "device_name": torch.cuda.get_device_name() if args.device.startswith("cuda") else
        platform.processor() or platform.machine(),
        "threads": args.threads,
        "torch": torch.__version__,
        "repeats": args.repeats,
        "models": {},
    }  # fmt: skip
    for model_name in models:
        rows = {name: measure(model_name, name, args.device, args.repeats, args.warmup)
                for name in optimizers}  # fmt: skip
        for row in rows.values():
            row["ratio_vs_adam"] = row["median_ms"] / rows["adam"]["median_ms"]
            row["ratio_vs_sgd"] = row["median_ms"] / rows["sgd"]["median_ms"]
        results["models"][model_name] = rows
    lines = [
        f"Optimizer step on {results['device']} ({results['device_name']}), "
        f"{args.threads} thread(s), torch {torch.__version__}, median of {args.repeats} steps",
        "",
        "| model | optimizer | step ms | vs Adam | vs SGD | state bytes/param |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for model_name, rows in results["models"].items():
        for name, row in rows.items():
            lines.append(
                f"| {model_name} | {name} | {row['median_ms']:.3f} | {row['ratio_vs_adam']:.2f} "
                f"| {row['ratio_vs_sgd']:.2f} | {row['state_bytes_per_param']:.2f} |"
            )
    table = "\n".join(lines)
    print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    out.with_suffix(".md").write_text(table + "\n")
    return results


if __name__ == "__main__":
    main()
