"""Optimizer step time and state memory: BioRule against torch.optim.Adam, SGD and the peers.

Measures, in one run and on the same models and gradients, the median wall time of
``optimizer.step()`` (gradients fixed, so only the update is timed; elimination runs every
step, as with the defaults) for

- ``adam()``: ``torch.optim.Adam()`` with its defaults (on CPU tensors: the for-loop path),
  ``adam-foreach``: ``Adam(foreach=True)``, ``adam-fused``: ``Adam(fused=True)``,
- ``sgd``: ``torch.optim.SGD(momentum=0.9)`` (defaults otherwise),
- ``bio``: ``BioRule()`` with its defaults (rule v2: noise 0),
- ``bio-noise``: ``BioRule(noise=0.18, noise_halflife=0)`` (constant noise, every step),
- ``bio-consolidated``: the defaults after two ``consolidate()`` calls (plasticity per synapse),
- ``bio-fused``: ``BioRule(fused=True)`` (the first step, which compiles, is timed apart),
- ``deepr``, ``softdeepr``, ``rigl``: the published sparse peers
  (:class:`bioplastic.baselines.SparsePeer`, connectivity :data:`PEER_CONNECTIVITY`; the
  ``peers`` extra); a peer that cannot run on a model is listed with the reason,

on MLPs of about 1e5, 1e6 and 1e7 parameters (784-128-10, 784-1000-1000-10, 784-3000-3000-10)
and a small conv net (BioConvNet, channels (32, 64), ON/OFF input, 1x28x28). The optimizers of
one model are stepped in turn (round robin), so a change in machine load hits all of them alike;
a ratio is the median over rounds of the ratio of the two step times within a round. Also
reports the optimizer state in bytes per parameter (every tensor in ``optimizer.state``). Writes
``benchmarks/results/optimizer_step.{json,md}`` and
``benchmarks/results/figures/optimizer_step_scaling.png`` (time against parameters, log-log;
``--out`` moves both).

    python benchmarks/optimizer_step.py [--device cuda] [--repeats 30] [--threads 1]
        [--models mlp-1e5,mlp-1e6,mlp-1e7,conv] [--optimizers bio,adam(),...] [--profile]

``--profile`` also counts, with ``torch.profiler`` over 5 steps, what one step asks of the
machine: operator calls (``aten::`` ops, nested ones included) and, on CUDA, kernel launches and
host synchronisations (``cudaStreamSynchronize``/``cudaDeviceSynchronize`` calls); a step that is
launch- or sync-bound on a GPU shows it here (``<out>_profile.md``).
"""

from __future__ import annotations

import argparse
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

import bioplastic as bp
from bioplastic._io import json_text, write_atomic
from bioplastic.baselines import PEER_NAMES, SparsePeer
from bioplastic.experiments._figures import new_figure, save_figure

RESULTS = Path(__file__).resolve().parent / "results"
MODELS = {
    "mlp-1e5": (784, 128, 10),
    "mlp-1e6": (784, 1000, 1000, 10),
    "mlp-1e7": (784, 3000, 3000, 10),
    "conv": None,
}
OPTIMIZERS = ("adam()", "adam-foreach", "adam-fused", "sgd", "bio", "bio-noise",
              "bio-consolidated", "bio-fused", *PEER_NAMES)  # fmt: skip
#: Connectivity the peers run at (bio reaches 0.1-0.4 on the rule benchmark's tasks).
PEER_CONNECTIVITY = 0.25
DESCRIPTIONS = {
    "adam()": "torch.optim.Adam() (defaults)",
    "adam-foreach": "torch.optim.Adam(foreach=True)",
    "adam-fused": "torch.optim.Adam(fused=True)",
    "sgd": "torch.optim.SGD(momentum=0.9)",
    "bio": "BioRule() (defaults)",
    "bio-noise": "BioRule(noise=0.18, noise_halflife=0)",
    "bio-consolidated": "BioRule() after consolidate(0.3, 0.1) and consolidate(0.3, 0.5)",
    "bio-fused": "BioRule(fused=True)",
    "deepr": "DEEP R (deep-rewire 1.0.5, bioplastic.baselines.SparsePeer('deepr'), "
    f"connectivity {PEER_CONNECTIVITY})",
    "softdeepr": "Soft-DEEP R (deep-rewire 1.0.5, SparsePeer('softdeepr'))",
    "rigl": f"RigL around Adam (rigl-torch 0.5.2, SparsePeer('rigl'), connectivity "
    f"{PEER_CONNECTIVITY}; a rewiring, every 100th step, is timed only in runs that long)",
}


def build(model_name: str, device: str) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    sizes = MODELS[model_name]
    if sizes is None:
        model = bp.BioConvNet(1, 10, channels=(32, 64), on_off=True)
        x = torch.rand(64, 1, 28, 28)
    else:
        layers: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:], strict=False):
            layers += [nn.Linear(a, b), nn.ReLU()]
        model = bp.dalify(nn.Sequential(*layers[:-1]))
        x = torch.rand(64, sizes[0])
    return model.to(device), x.to(device)


def make(name: str, model: nn.Module):
    """The optimizer ``name`` for ``model`` (a peer may re-parameterise the model's weights)."""
    if name in PEER_NAMES:
        return SparsePeer(name, model, connectivity=PEER_CONNECTIVITY, total_steps=10**6)
    params = list(model.parameters())
    if name == "adam()":
        return torch.optim.Adam(params)
    if name == "adam-foreach":
        return torch.optim.Adam(params, foreach=True)
    if name == "adam-fused":
        return torch.optim.Adam(params, fused=True)
    if name == "sgd":
        return torch.optim.SGD(params, lr=0.01, momentum=0.9)
    if name == "bio-noise":
        return bp.BioRule(params, noise=0.18, noise_halflife=0.0)
    if name == "bio-fused":
        return bp.BioRule(params, fused=True)
    opt = bp.BioRule(params)
    if name == "bio-consolidated":
        opt.consolidate(fraction=0.3, factor=0.1)
        opt.consolidate(fraction=0.3, factor=0.5)
    return opt


def state_bytes(opt, model: nn.Module, n_params: int) -> int:
    """Bytes of optimizer state; for a peer, of all its optimizers plus what it keeps beyond
    the plain float32 weights (DEEP R's re-parameterisation, RigL's masks)."""
    tensors = [v for o in getattr(opt, "optimizers", [opt]) for state in o.state.values()
               for v in state.values() if torch.is_tensor(v)]  # fmt: skip
    total = sum(v.numel() * v.element_size() for v in tensors)
    if isinstance(opt, SparsePeer):
        held = [*model.parameters(), *model.buffers()]
        held += [m for m in getattr(opt.scheduler, "backward_masks", None) or [] if m is not None]
        total += sum(t.numel() * t.element_size() for t in held) - 4 * n_params
    return total


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure_model(
    model_name: str, names: list[str], args: argparse.Namespace, skipped: dict[str, str]
) -> dict:
    """Step every optimizer of ``names`` on its own copy of the model, in turn."""
    runs = {}
    for name in names:
        model, x = build(model_name, args.device)
        n_params = sum(p.numel() for p in model.parameters())
        try:
            opt = make(name, model)  # first: a peer's gradients are those of its parameterisation
        except (ValueError, ImportError) as error:  # a peer that cannot run here (extra missing,
            # or its connectivity is out of reach on this model)
            skipped[name] = str(error)
            continue
        target = torch.zeros(len(x), dtype=torch.long, device=args.device)
        nn.functional.cross_entropy(model(x), target).backward()
        grads = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
        runs[name] = {"model": model, "grads": grads, "opt": opt, "n_params": n_params}
        runs[name]["times"] = []
    for i in range(args.warmup + args.repeats):
        for run in runs.values():
            for p, g in zip(run["model"].parameters(), run["grads"], strict=True):
                p.grad = g  # the same gradient every step: only the update is timed
            sync(args.device)
            start = time.perf_counter()
            run["opt"].step()
            sync(args.device)
            elapsed = time.perf_counter() - start
            if i == 0:
                run["first_step_s"] = elapsed  # includes torch.compile for bio-fused
            if i >= args.warmup:
                run["times"].append(elapsed)
    rows = {}
    for name, run in runs.items():
        n_params = run["n_params"]
        rows[name] = {
            "median_ms": 1000 * statistics.median(run["times"]),
            "state_bytes_per_param": state_bytes(run["opt"], run["model"], n_params) / n_params,
            "n_params": n_params,
            "first_step_s": run["first_step_s"],
        }
    for name, row in rows.items():
        for anchor in ("adam()", "adam-fused"):
            if anchor in rows:  # median over rounds of the ratio within a round: robust to drift
                pairs = zip(runs[name]["times"], runs[anchor]["times"], strict=True)
                row[f"ratio_vs_{anchor}"] = statistics.median(a / b for a, b in pairs)
    return rows


def profile_model(model_name: str, names: list[str], args: argparse.Namespace, steps: int = 5):
    """Per optimizer: operator calls, kernel launches and host synchronisations per step."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if args.device.startswith("cuda"):
        activities.append(ProfilerActivity.CUDA)
    rows = {}
    for name in names:
        model, x = build(model_name, args.device)
        target = torch.zeros(len(x), dtype=torch.long, device=args.device)
        try:
            opt = make(name, model)
        except (ValueError, ImportError):  # listed as not run by measure_model
            continue
        nn.functional.cross_entropy(model(x), target).backward()
        for _ in range(3):  # past the first (compiling) step and the lazy state
            opt.step()
        sync(args.device)
        with profile(activities=activities) as prof:
            for _ in range(steps):
                opt.step()
            sync(args.device)
        counts = {"ops": 0, "launches": 0, "syncs": 0}
        for event in prof.key_averages():
            key = event.key
            if key.startswith("aten::"):
                counts["ops"] += event.count
            elif "LaunchKernel" in key:
                counts["launches"] += event.count
            elif key in ("cudaStreamSynchronize", "cudaDeviceSynchronize"):
                counts["syncs"] += event.count
        rows[name] = {k: v / steps for k, v in counts.items()}
    return rows


def profile_table(results: dict) -> str:
    lines = [
        f"What one optimizer step asks of the machine, on {results['device']} "
        f"({results['device_name']}), torch {results['torch']}: per step, counted by "
        "torch.profiler over 5 steps; `python benchmarks/optimizer_step.py --profile`",
        "",
        "| model | optimizer | aten ops | kernel launches | host syncs |",
        "|---|---|---:|---:|---:|",
    ]
    for model_name, rows in results["profile"].items():
        for name, row in rows.items():
            lines.append(f"| {model_name} | {name} | {row['ops']:.0f} | {row['launches']:.0f} "
                         f"| {row['syncs']:.0f} |")  # fmt: skip
    return "\n".join(lines)


def table(results: dict) -> str:
    lines = [
        f"Optimizer step on {results['device']} ({results['device_name']}), "
        f"{results['threads']} thread(s), torch {results['torch']}, median of "
        f"{results['repeats']} steps (optimizers stepped in turn; a ratio is the median over "
        f"rounds of the two step times within a round); `{results['command']}`",
        "",
        "| model | params | optimizer | step ms | vs Adam() | vs Adam(fused) | state bytes/param |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for model_name, rows in results["models"].items():
        for name, row in rows.items():
            ratios = [row.get(f"ratio_vs_{a}") for a in ("adam()", "adam-fused")]
            shown = " | ".join("–" if r is None else f"{r:.2f}" for r in ratios)
            lines.append(
                f"| {model_name} | {row['n_params']:,} | {name} | {row['median_ms']:.3f} "
                f"| {shown} | {row['state_bytes_per_param']:.2f} |"
            )
    lines += ["", "Optimizers:"] + [f"- `{k}`: {v}" for k, v in results["optimizers"].items()]
    for model_name, why in results.get("skipped", {}).items():
        lines += [f"- not run on {model_name}: `{k}` ({v})" for k, v in why.items()]
    first = {m: rows["bio-fused"]["first_step_s"] for m, rows in results["models"].items()
             if "bio-fused" in rows}  # fmt: skip
    if first:
        lines.append(
            "- first `bio-fused` step (torch.compile, in turn over the models): "
            + ", ".join(f"{m} {s:.1f} s" for m, s in first.items())
        )
    return "\n".join(lines)


def figure(results: dict, path: Path) -> Path:
    fig = new_figure(6.0, 4.2)
    ax = fig.add_subplot(1, 1, 1)
    mlps = [m for m in results["models"] if m.startswith("mlp")]
    names = dict.fromkeys(n for m in mlps for n in results["models"][m])
    for name in names:
        ran = [m for m in mlps if name in results["models"][m]]
        xs = [results["models"][m][name]["n_params"] for m in ran]
        ys = [results["models"][m][name]["median_ms"] for m in ran]
        style = "-" if name.startswith("bio") else "--"
        ax.plot(xs, ys, style, marker="o", label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("parameters (MLP)")
    ax.set_ylabel("step time, ms (median)")
    ax.set_title(f"optimizer step on {results['device']}, {results['threads']} thread(s)")
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--optimizers", default=",".join(OPTIMIZERS))
    parser.add_argument("--out", default=str(RESULTS / "optimizer_step"))
    parser.add_argument("--figure", default=None,
                        help="scaling plot (default: figures/NAME_scaling.png beside --out NAME, "
                        "so a run elsewhere leaves the committed figure alone)")  # fmt: skip
    parser.add_argument("--profile", action="store_true",
                        help="also count ops, kernel launches and syncs per step")  # fmt: skip
    args = parser.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    names = [n for n in args.optimizers.split(",") if n]
    unknown = sorted(set(models) - set(MODELS)) + sorted(set(names) - set(OPTIMIZERS))
    if unknown:
        parser.error(f"unknown models/optimizers {unknown}; models: {list(MODELS)}, "
                     f"optimizers: {list(OPTIMIZERS)}")  # fmt: skip
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no GPU")
    torch.set_num_threads(args.threads)
    shown = " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    results = {
        "command": f"python benchmarks/optimizer_step.py {shown}".strip(),
        "device": args.device,
        "device_name": torch.cuda.get_device_name() if args.device.startswith("cuda") else
        platform.processor() or platform.machine(),
        "threads": args.threads,
        "torch": torch.__version__,
        "repeats": args.repeats,
        "optimizers": {n: DESCRIPTIONS[n] for n in names},
        "models": {},
    }  # fmt: skip
    results["skipped"] = {}
    for model_name in models:
        skipped = results["skipped"].setdefault(model_name, {})
        results["models"][model_name] = measure_model(model_name, names, args, skipped)
        if not skipped:
            del results["skipped"][model_name]
        print(f"{model_name}: done", flush=True)
    text = table(results)
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out.with_suffix(".json"), json_text(results, indent=2) + "\n")
    write_atomic(out.with_suffix(".md"), text + "\n")
    if any(m.startswith("mlp") for m in models):
        default = out.parent / "figures" / f"{out.name}_scaling.png"
        figure(results, Path(args.figure) if args.figure else default)
    if args.profile:
        results["profile"] = {m: profile_model(m, names, args) for m in models}
        text = profile_table(results)
        print(text)
        write_atomic(out.with_name(out.name + "_profile.md"), text + "\n")
        write_atomic(out.with_suffix(".json"), json_text(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
