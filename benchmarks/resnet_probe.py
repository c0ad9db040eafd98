"""ResNet probe report: ResNet-18 (32x32 stem) dalified and trained briefly by BioPlastic.

SYNTHETIC DATA: CIFAR-shaped images from :func:`strategies.avalanche.real.synthetic_cifar`
(10 classes, smooth colour templates plus noise), so the accuracy says nothing about CIFAR; the
report is about what the rule does to a ResNet's weights. Steps:

1. ``resnet18_32x32(10)``, dalified with types tied across layers that read one tensor
   (:func:`strategies.avalanche.resnets.dalify_resnet`);
2. one epoch of ``BioPlastic`` (Avalanche strategy, its defaults, mini-batches of 16) on
   ``--train`` images; loss at the start and the end, accuracy on ``--test`` images;
3. per stage (stem, layer1..layer4, readout): synapses, connectivity, Dale violations, sign
   flips since initialisation, log-magnitude mean/std/skewness/excess kurtosis/KS (mean over the
   stage's layers, weighted by present synapses), BatchNorm scales below 0, and sampled
   activity (channel means of the stage's output on 64 test images: population sparseness,
   silent channels);
4. optimizer step time on ResNet-18, gradients fixed: median of ``--repeats`` ``BioRule.step()``
   against ``torch.optim.Adam(foreach=True).step()`` (target: ratio <= 1.2 on the CPU).

    python benchmarks/resnet_probe.py [--train 768] [--threads 1] [--out STEM]

Writes ``<out>.json`` and ``<out>.md``.
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets
from avalanche.core import SupervisedPlugin
from torch import nn

import bioplastic as bp
from bioplastic._io import write_atomic
from bioplastic.experiments._common import write_json
from bioplastic.probes import population_sparseness, silent_fraction, weight_report
from bioplastic.probes.weights import norm_scale_signs
from strategies.avalanche import BioPlastic, tensor_classification_dataset
from strategies.avalanche.real import cifar_tensor, synthetic_cifar
from strategies.avalanche.resnets import dalify_resnet, resnet18_32x32

RESULTS = Path(__file__).resolve().parent / "results"
STAGES = ("stem", "layer1", "layer2", "layer3", "layer4", "readout")


def stage_of(name: str) -> str:
    head = name.split(".")[0]
    return {"conv1": "stem", "bn1": "stem", "fc": "readout"}.get(head, head)


class LossLog(SupervisedPlugin):
    def __init__(self):
        super().__init__()
        self.losses: list[float] = []

    def after_training_iteration(self, strategy, **kwargs):
        self.losses.append(float(strategy.loss.detach()))


def stage_table(model: nn.Module, start: dict, acts: dict) -> dict[str, dict]:
    """The per-layer probes summed (counts) or averaged (moments, by present synapses) per stage."""
    layers = weight_report(model, start)
    norms = norm_scale_signs(model)
    table = {}
    for stage in STAGES:
        rows = [r for n, r in layers.items() if stage_of(n) == stage]
        n_syn = sum(r["n_synapses"] for r in rows)
        n_present = sum(r["n_present"] for r in rows)
        row = {
            "layers": len(rows),
            "synapses": n_syn,
            "connectivity": n_present / n_syn,
            "dale_violations": sum(r["dale_violations"] for r in rows),
            "sign_flips": sum(r["sign_flips"] for r in rows),
        }
        for key in ("mean", "std", "skewness", "excess_kurtosis", "ks_normal"):
            row[f"log_mag_{key}"] = sum(r[f"log_mag_{key}"] * r["n_present"] for r in rows) / max(
                1, n_present
            )
        bn = [v for n, v in norms.items() if stage_of(n) == stage]
        row["bn_channels"] = sum(v["n"] for v in bn)
        row["bn_negative_scales"] = sum(v["negative"] for v in bn)
        row.update(acts.get(stage, {}))
        table[stage] = row
    return table


def sampled_activity(model: nn.Module, x: torch.Tensor) -> dict[str, dict[str, float]]:
    """Channel means of each stage's output on a probe batch (eval mode, hooks removed)."""
    outputs = {}
    modules = {
        "stem": model.relu,
        **{f"layer{i}": getattr(model, f"layer{i}") for i in range(1, 5)},
    }
    handles = [
        m.register_forward_hook(lambda _m, _a, out, s=s: outputs.__setitem__(s, out.mean((2, 3))))
        for s, m in modules.items()
    ]
    model.eval()
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    model.train()
    return {
        s: {
            "population_sparseness": population_sparseness(a),
            "silent_channels": silent_fraction(a),
        }
        for s, a in outputs.items()
    }


def step_times(model: nn.Module, x: torch.Tensor, y: torch.Tensor, repeats: int) -> dict:
    """Median ``step()`` time of BioRule and Adam on copies of ``model`` with fixed gradients."""
    out = {}
    for name in ("bio", "adam"):
        m = copy.deepcopy(model)
        nn.functional.cross_entropy(m(x), y).backward()
        opt = (
            bp.BioRule(m.parameters())
            if name == "bio"
            else torch.optim.Adam(m.parameters(), foreach=True)
        )
        times = []
        for i in range(repeats + 2):  # two warm-up steps (state creation)
            t0 = time.perf_counter()
            opt.step()
            if i >= 2:
                times.append(time.perf_counter() - t0)
        out[f"{name}_step_s"] = statistics.median(times)
    out["ratio_bio_over_adam"] = out["bio_step_s"] / out["adam_step_s"]
    return out


def markdown(result: dict) -> str:
    t = result["training"]
    lines = [
        "# ResNet probe report (SYNTHETIC data)",
        "",
        f"ResNet-18 (3x3 stem, no max-pool), {result['parameters']:,} parameters, dalified "
        f"(inh_fraction 0.2, types tied across shared inputs) and trained by BioPlastic for "
        f"{t['iterations']} iterations (mini-batches of {t['batch']}) on {t['train_images']} "
        "synthetic CIFAR-shaped images (`synthetic_cifar`: class templates + noise; not CIFAR).",
        f"Loss {t['loss_first5']:.3f} (first 5 iterations) -> {t['loss_last5']:.3f} (last 5); "
        f"accuracy on {t['test_images']} held-out synthetic images {t['test_accuracy']:.3f} "
        f"(chance 0.1); {t['seconds']:.0f} s on {result['threads']} CPU thread(s).",
        "",
        "Per stage (moments of ln m = ln|w| over present synapses, averaged over the stage's "
        "layers weighted by present synapses; ln m pools excitatory and inhibitory synapses, whose "
        "medians differ 4x by the E/I-balanced initialisation, so it is skewed from the start; "
        "activity: channel means of the stage's output on 64 test images, after training).",
        "",
    ]
    for when in ("before", "after"):
        lines += [f"**{'At initialisation' if when == 'before' else 'After training'}**", ""]
        lines += _stage_rows(result[when]) + [""]
    s = result["step_time"]
    lines += [
        f"Optimizer step on ResNet-18 (CPU, {result['threads']} thread(s), gradients fixed, median "
        f"of {s['repeats']}): BioRule {1000 * s['bio_step_s']:.0f} ms, Adam(foreach) "
        f"{1000 * s['adam_step_s']:.0f} ms, ratio {s['ratio_bio_over_adam']:.2f} (target <= 1.2).",
        "",
        f"Command: `{result['command']}`",
    ]
    return "\n".join(lines) + "\n"


def _stage_rows(table: dict) -> list[str]:
    lines = [
        "| stage | layers | synapses | connectivity | Dale viol. | sign flips | ln m mean "
        "| ln m std | skew | ex. kurtosis | KS | BN scales < 0 | pop. sparseness | silent ch. |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for stage, r in table.items():
        act = (
            f"{r['population_sparseness']:.3f} | {r['silent_channels']:.3f}"
            if "silent_channels" in r
            else "- | -"
        )
        lines.append(
            f"| {stage} | {r['layers']} | {r['synapses']:,} | {r['connectivity']:.3f} | "
            f"{r['dale_violations']} | {r['sign_flips']} | {r['log_mag_mean']:.2f} | "
            f"{r['log_mag_std']:.3f} | {r['log_mag_skewness']:.3f} | "
            f"{r['log_mag_excess_kurtosis']:.3f} | {r['log_mag_ks_normal']:.3f} | "
            f"{r['bn_negative_scales']}/{r['bn_channels']} | {act} |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--train", type=int, default=768, help="synthetic training images")
    p.add_argument("--test", type=int, default=256, help="synthetic test images")
    p.add_argument("--batch", type=int, default=16, help="mini-batch size")
    p.add_argument("--repeats", type=int, default=5, help="timed optimizer steps")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--out", type=Path, default=RESULTS / "resnet_probe", help="output stem")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message="No loggers specified")

    n_classes = 10
    images, labels = synthetic_cifar(n_classes, (args.train + args.test) // n_classes, seed=0)
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    x, y = cifar_tensor(images)[perm], torch.from_numpy(labels)[perm]
    x_train, y_train, x_test, y_test = (
        x[: args.train],
        y[: args.train],
        x[args.train :],
        y[args.train :],
    )

    model = dalify_resnet(resnet18_32x32(n_classes), seed=0)
    start = {k: v.clone() for k, v in model.state_dict().items() if k.endswith("weight")}
    before = stage_table(model, start, {})

    data = tensor_classification_dataset(x_train, y_train)
    benchmark = benchmark_from_datasets(train=[data], test=[data])
    log = LossLog()
    strategy = BioPlastic(model=model, dalify_model=False, train_mb_size=args.batch, train_epochs=1,
                          evaluator=None, plugins=[log], device="cpu")  # fmt: skip
    t0 = time.perf_counter()
    strategy.train(benchmark.train_stream[0])
    seconds = time.perf_counter() - t0
    model.eval()
    with torch.no_grad():
        correct = sum(
            int((model(xb).argmax(1) == yb).sum())
            for xb, yb in zip(x_test.split(128), y_test.split(128), strict=True)
        )
    model.train()
    acts = sampled_activity(model, x_test[:64])
    after = stage_table(model, start, acts)
    steps = step_times(model, x_train[: args.batch], y_train[: args.batch], args.repeats)
    result = {
        "data": "SYNTHETIC CIFAR-shaped images (strategies.avalanche.real.synthetic_cifar)",
        "model": "torchvision resnet18, 3x3 stem, no max-pool (resnet18_32x32)",
        "parameters": sum(p.numel() for p in model.parameters()),
        "threads": args.threads,
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "training": {
            "iterations": len(log.losses),
            "batch": args.batch,
            "train_images": args.train,
            "test_images": len(y_test),
            "loss_first5": statistics.mean(log.losses[:5]),
            "loss_last5": statistics.mean(log.losses[-5:]),
            "test_accuracy": correct / len(y_test),
            "seconds": seconds,
        },
        "before": before,
        "after": after,
        "step_time": {**steps, "repeats": args.repeats},
        "command": " ".join(
            ["python benchmarks/resnet_probe.py", *(sys.argv[1:] if argv is None else argv)]
        ),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out.with_suffix(".json"), result)
    text = markdown(result)
    write_atomic(args.out.with_suffix(".md"), text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
