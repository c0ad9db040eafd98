"""GPU benchmark: ResNet-18 on a SplitCIFAR-100 stream, BioPlastic against Naive + Adam.

SYNTHETIC DATA in CIFAR-100's format (``uint8`` 32x32x3 images, 100 classes, ``--per-class``
images each; :func:`strategies.avalanche.real.synthetic_cifar`), so it needs no download; the
stream is 10 experiences of 10 classes (SplitCIFAR-100's split, fixed class order). Measures

1. **strategies** (what an Avalanche user sees, data loading included): images/s and peak GPU
   memory of ``BioPlastic`` and of ``Naive`` with ``torch.optim.Adam`` training
   ``resnet18_32x32(100)`` on the first ``--experiences`` experiences, fp32;
2. **loop** (data already on the GPU): images/s and peak memory of forward + backward + step,
   fp32 and under ``torch.autocast(dtype=torch.bfloat16)``, for BioRule and Adam; and the
   optimizer step alone (gradients fixed): BioRule's time / Adam's ("step ratio").

Targets (issue 14): BioPlastic images/s >= 0.9x Naive+Adam, peak memory <= Adam's.

    python benchmarks/gpu_resnet.py                      # on a machine with a GPU
    python benchmarks/gpu_resnet.py --device cpu --quick # a tiny smoke run on the CPU

Without CUDA (and without ``--device cpu``) it says so, writes ``{"status": "not run"}`` and
exits 0. Writes ``<out>.json`` and ``<out>.md`` (default ``runs/gpu_check/gpu_resnet``).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets
from avalanche.training import Naive
from torch import nn

import bioplastic as bp
from bioplastic._io import write_atomic
from bioplastic.experiments._common import write_json
from strategies.avalanche import BioPlastic, tensor_classification_dataset
from strategies.avalanche.real import cifar_tensor, synthetic_cifar
from strategies.avalanche.resnets import dalify_resnet, resnet18_32x32

N_CLASSES, N_EXPERIENCES = 100, 10


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def split_cifar100(per_class: int, n_experiences: int):
    """The first ``n_experiences`` train experiences of a synthetic SplitCIFAR-100."""
    images, labels = synthetic_cifar(N_CLASSES, per_class, seed=0)
    x, y = cifar_tensor(images), torch.from_numpy(labels)
    order = torch.randperm(N_CLASSES, generator=torch.Generator().manual_seed(0))
    per_exp = N_CLASSES // N_EXPERIENCES
    datasets = []
    for e in range(n_experiences):
        mask = torch.isin(y, order[e * per_exp : (e + 1) * per_exp])
        datasets.append(tensor_classification_dataset(x[mask], y[mask]))
    return benchmark_from_datasets(train=datasets, test=datasets[:1]), x, y


def run_strategies(args, device, benchmark) -> dict:
    out = {}
    for name in ("bioplastic", "naive+adam"):
        torch.manual_seed(0)
        model = resnet18_32x32(N_CLASSES)
        common = dict(train_mb_size=args.batch, train_epochs=args.epochs, evaluator=None,
                      device=device)  # fmt: skip
        if name == "bioplastic":
            strategy = BioPlastic(model=dalify_resnet(model), dalify_model=False, **common)
        else:
            adam = torch.optim.Adam(model.parameters(), lr=1e-3)
            strategy = Naive(model=model, optimizer=adam, criterion=nn.CrossEntropyLoss(), **common)
        _reset_peak(device)
        n_images, t0 = 0, time.perf_counter()
        for exp in benchmark.train_stream:
            strategy.train(exp)
            n_images += len(exp.dataset) * args.epochs
        _sync(device)
        seconds = time.perf_counter() - t0
        out[name] = {"images_per_s": n_images / seconds, "seconds": seconds,
                     "peak_mib": _peak_mib(device), "images": n_images}  # fmt: skip
    bio, adam = out["bioplastic"], out["naive+adam"]
    out["throughput_ratio"] = bio["images_per_s"] / adam["images_per_s"]
    return out


def _loop(model, opt, x, y, iters: int, autocast: bool, device) -> float:
    ctx = (
        torch.autocast(device.type, dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
    )
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        with ctx:
            loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    _sync(device)
    return time.perf_counter() - t0


def run_loops(args, device, x, y) -> dict:
    xb, yb = x[: args.batch].to(device), y[: args.batch].to(device)
    base = resnet18_32x32(N_CLASSES)
    dalify_resnet(base)
    out = {}
    for precision in ("fp32", "bf16"):
        for name in ("bio", "adam"):
            model = copy.deepcopy(base).to(device)
            opt = bp.BioRule(model.parameters()) if name == "bio" else torch.optim.Adam(
                model.parameters(), lr=1e-3)  # fmt: skip
            _loop(model, opt, xb, yb, args.warmup, precision == "bf16", device)
            _reset_peak(device)
            seconds = _loop(model, opt, xb, yb, args.iters, precision == "bf16", device)
            out[f"{name}_{precision}"] = {
                "images_per_s": args.iters * args.batch / seconds,
                "peak_mib": _peak_mib(device),
            }
        out[f"throughput_ratio_{precision}"] = (
            out[f"bio_{precision}"]["images_per_s"] / out[f"adam_{precision}"]["images_per_s"]
        )
    out["step"] = _step_ratio(base, xb, yb, args, device)
    return out


def _step_ratio(base, xb, yb, args, device) -> dict:
    times = {}
    for name in ("bio", "adam"):
        model = copy.deepcopy(base).to(device)
        nn.functional.cross_entropy(model(xb), yb).backward()
        opt = bp.BioRule(model.parameters()) if name == "bio" else torch.optim.Adam(
            model.parameters(), lr=1e-3)  # fmt: skip
        samples = []
        for i in range(args.warmup + args.iters):
            _sync(device)
            t0 = time.perf_counter()
            opt.step()
            _sync(device)
            if i >= args.warmup:
                samples.append(time.perf_counter() - t0)
        times[f"{name}_ms"] = 1000 * statistics.median(samples)
    times["ratio"] = times["bio_ms"] / times["adam_ms"]
    return times


def markdown(r: dict) -> str:
    s, lp = r["strategies"], r["loop"]
    mem = lambda v: "-" if v is None else f"{v:,.0f} MiB"  # noqa: E731
    lines = [
        f"# GPU ResNet-18 benchmark ({r['device_name']}; SYNTHETIC SplitCIFAR-100 data)",
        "",
        f"{r['per_class']} images per class, first {r['experiences']} of 10 experiences, "
        f"mini-batches of {r['batch']}, {r['epochs']} epoch(s) per experience.",
        "",
        "| run | images/s | peak memory |",
        "|---|---|---|",
    ]
    for name in ("bioplastic", "naive+adam"):
        lines.append(f"| strategy {name} (fp32) | {s[name]['images_per_s']:,.0f} | "
                     f"{mem(s[name]['peak_mib'])} |")  # fmt: skip
    for key in ("bio_fp32", "adam_fp32", "bio_bf16", "adam_bf16"):
        lines.append(
            f"| loop {key} | {lp[key]['images_per_s']:,.0f} | {mem(lp[key]['peak_mib'])} |"
        )
    lines += [
        "",
        f"BioPlastic / Naive+Adam images/s: {s['throughput_ratio']:.2f} (target >= 0.9); loop "
        f"fp32 {lp['throughput_ratio_fp32']:.2f}, bf16 {lp['throughput_ratio_bf16']:.2f}.",
        f"Optimizer step alone: BioRule {lp['step']['bio_ms']:.2f} ms, Adam "
        f"{lp['step']['adam_ms']:.2f} ms, ratio {lp['step']['ratio']:.2f}.",
        "",
        f"Command: `{r['command']}`",
    ]
    return "\n".join(lines) + "\n"


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    p.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run)")
    p.add_argument("--per-class", type=int, default=500, help="images per class (CIFAR: 500)")
    p.add_argument("--experiences", type=int, default=10, help="experiences trained (<= 10)")
    p.add_argument("--batch", type=int, default=128, help="mini-batch size")
    p.add_argument("--epochs", type=int, default=1, help="epochs per experience")
    p.add_argument("--iters", type=int, default=50, help="timed loop iterations")
    p.add_argument("--warmup", type=int, default=5, help="untimed loop iterations first")
    p.add_argument("--out", type=Path, default=Path("runs/gpu_check/gpu_resnet"), help="stem")
    args = p.parse_args(argv)
    if args.quick:
        args.per_class, args.experiences, args.batch = 1, 1, 10
        args.iters, args.warmup = 2, 1
    if not 1 <= args.experiences <= N_EXPERIENCES:
        p.error(f"--experiences must be in 1..{N_EXPERIENCES}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    command = " ".join(
        ["python benchmarks/gpu_resnet.py", *(sys.argv[1:] if argv is None else argv)]
    )
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        reason = "no CUDA device (torch.cuda.is_available() is False)"
        print(f"gpu_resnet: {reason}: GPU benchmark not run. For a CPU smoke run: "
              "python benchmarks/gpu_resnet.py --device cpu --quick")  # fmt: skip
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_json(args.out.with_suffix(".json"), {"status": "not run", "reason": reason})
        return 0
    device = torch.device(args.device)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message="No loggers specified")
    if device.type == "cpu":
        torch.set_num_threads(1)
    benchmark, x, y = split_cifar100(args.per_class, args.experiences)
    result = {
        "status": "ran",
        "data": "SYNTHETIC CIFAR-100-format images (strategies.avalanche.real.synthetic_cifar)",
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU",
        "torch": torch.__version__,
        **{k: getattr(args, k) for k in ("per_class", "experiences", "batch", "epochs", "iters")},
        "strategies": run_strategies(args, device, benchmark),
        "loop": run_loops(args, device, x, y),
        "command": command,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out.with_suffix(".json"), result)
    text = markdown(result)
    write_atomic(args.out.with_suffix(".md"), text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
