"""The rule benchmark: every rule at its defaults on tasks of several depths, widths and class
counts, with the published sparse peers at the connectivity the bio rule reaches.

Tasks (:data:`TASKS`): digits MLP 1x256; MNIST-1D (5,000 samples) MLP 2x256 and 3x512; glyphs
(100 classes, 15 train / 5 test images each) with the 2-layer conv net and a 4-layer conv net;
glyphs with 500 classes and an MLP 784-512-256-500. One epoch budget and batch size (64) per
task, the same for every rule.

Rules (:data:`RULES`): ``bio``, ``eg``, ``enforced`` and ``adam-dale``/``sgd-dale`` on the
Dale-initialised model (on an MLP bio's has feedforward inhibition, the others' none:
:meth:`Task.interneurons_for`); ``adam``/``sgd`` on the same architecture with PyTorch's default
initialisation; each of the four also with cosine annealing (``-cos``; the best of the eight
backprop runs is the dense baseline); and the peers of
:class:`bioplastic.baselines.SparsePeer` (``deepr``, ``rigl`` at bio's mean connectivity on that
task, ``softdeepr`` at its own). Every rule runs with its defaults: nothing is tuned per task.
bio is given the length of the run (``BioRule(total_steps=...)``: its rate anneals, with the
default ``lr`` as its mean); ``eg``, ``enforced`` and the peers run as they are.

:func:`run_rulebench` returns plain data (JSON-ready); :func:`format_markdown` and
:func:`plot_accuracy_vs_connectivity` present it; :func:`check_targets` applies the targets.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from bioplastic.baselines import PEER_NAMES, SparsePeer, interneurons_for, make_optimizer
from bioplastic.dale import BioMLP, DaleConv2d, DaleLinear, OnOffSplit, on_off_sign
from bioplastic.experiments._figures import new_figure
from bioplastic.inhibition import InhibitedConv2d, InhibitedLinear
from bioplastic.probes import synaptic_layers, weight_report
from bioplastic.train import accuracy

__all__ = [
    "RULES",
    "TASKS",
    "Task",
    "build_model",
    "check_targets",
    "format_markdown",
    "load_task",
    "plot_accuracy_vs_connectivity",
    "run_one",
    "run_rulebench",
]


@dataclass(frozen=True)
class Task:
    """One benchmark task: a dataset, an architecture and a training budget."""

    name: str
    data: str  # "digits", "mnist1d" or "glyphs"
    arch: str  # "mlp", "conv2" or "conv4"
    width: tuple[int, ...]  # hidden sizes (mlp) or channels (conv)
    n_classes: int = 10
    epochs: int = 30
    batch_size: int = 64
    #: Feedforward inhibition (BioMLP's ``interneurons``) for every rule; None (default): on
    #: an MLP, :func:`bioplastic.baselines.interneurons_for` the rule (the default for bio;
    #: the plain network for the others, the dense baselines with either init and the peers).
    #: Conv nets: none (1x1 interneurons cost there).
    interneurons: float | None = None

    def interneurons_for(self, rule: str) -> float:
        """The interneuron fraction ``rule`` trains this task with (see ``interneurons``)."""
        if self.interneurons is not None:
            return self.interneurons
        if self.arch != "mlp" or rule in PEER_NAMES:
            return 0.0
        return interneurons_for(rule_parts(rule)[0])


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task("digits-mlp1x256", "digits", "mlp", (256,)),
        Task("mnist1d-mlp2x256", "mnist1d", "mlp", (256, 256)),
        Task("mnist1d-mlp3x512", "mnist1d", "mlp", (512, 512, 512)),
        Task("glyphs100-conv2", "glyphs", "conv2", (32, 64), n_classes=100, epochs=40),
        Task("glyphs100-conv4", "glyphs", "conv4", (32, 32, 64, 64), n_classes=100, epochs=40),
        Task("glyphs500-mlp", "glyphs", "mlp", (512, 256), n_classes=500, epochs=30),
    )
}

#: Backprop baselines: PyTorch's or the Dale init, a constant rate or cosine annealing
#: (``-cos``: torch's ``CosineAnnealingLR`` over the run, stepped per batch); the best is the
#: dense baseline.
DENSE_RULES = ("adam", "adam-dale", "sgd", "sgd-dale",
               "adam-cos", "adam-dale-cos", "sgd-cos", "sgd-dale-cos")  # fmt: skip
RULES = ("bio", "eg", "enforced", *DENSE_RULES, *PEER_NAMES)


def rule_parts(rule: str) -> tuple[str, str, bool]:
    """``(optimizer name, init, cosine?)`` of a benchmark rule: ``"adam-dale-cos"`` is
    ``("adam", "dale", True)``; ``adam``/``sgd`` and the peers take PyTorch's init."""
    cosine = rule.endswith("-cos")
    base = rule.removesuffix("-cos")
    name = base.removesuffix("-dale")
    init = "default" if base in ("adam", "sgd", *PEER_NAMES) else "dale"
    return name, init, cosine


# ------------------------------------------------------------------------------------ data
def load_task(task: Task) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(x_train, y_train, x_test, y_test)`` of a task (offline; cached after the first call)."""
    if task.data == "digits":
        from bioplastic.data.sources import load_digits_arrays

        arrays = load_digits_arrays(seed=0)
    elif task.data == "mnist1d":
        from bioplastic.data.sources import load_mnist1d_arrays

        arrays = load_mnist1d_arrays(n_samples=5000)
    elif task.data == "glyphs":
        return _glyph_split(task.n_classes, flatten=task.arch == "mlp")
    else:
        raise ValueError(f"unknown dataset {task.data!r}")
    return tuple(torch.as_tensor(a) for a in arrays)  # type: ignore[return-value]


def _glyph_split(n_classes: int, flatten: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The first ``n_classes`` glyph classes of the train split, 15 train / 5 test images each."""
    from bioplastic.data.glyphs import load_glyphs

    x, y = load_glyphs("train", instances_per_class=20).tensors()
    if int(y.max()) + 1 < n_classes:
        raise ValueError(f"the glyph train split has {int(y.max()) + 1} classes, not {n_classes}")
    keep = y < n_classes
    x, y = x[keep], y[keep]
    position = torch.zeros_like(y)
    for c in range(n_classes):
        members = (y == c).nonzero().flatten()
        position[members] = torch.arange(len(members))
    if flatten:
        x = x.reshape(len(x), -1)
    train, test = position < 15, position >= 15
    return x[train], y[train], x[test], y[test]


# ------------------------------------------------------------------------------------ models
def build_model(
    task: Task, in_shape: Sequence[int], init: str, seed: int, interneurons: float | None = None
) -> nn.Module:
    """The task's model with Dale initialisation (``init="dale"``) or PyTorch's (``"default"``).

    Both have the same architecture (the ON/OFF input split included); ``"default"`` resets
    every Linear/Conv layer with its own ``reset_parameters()`` and drops the presynaptic types.
    ``interneurons`` (default: bio's, :meth:`Task.interneurons_for`) sets the inhibition.
    """
    inh = task.interneurons_for("bio") if interneurons is None else interneurons
    if task.arch == "mlp":
        model: nn.Module = BioMLP(math.prod(in_shape), task.width, task.n_classes, seed=seed,
                                  interneurons=inh)  # fmt: skip
    else:
        model = _conv_net(in_shape[0], task.width, task.n_classes, seed, inh)
    if init == "default":
        torch.manual_seed(seed)
        for _, layer in synaptic_layers(model):
            layer.reset_parameters()
            if "dale_sign" in layer._buffers:
                del layer._buffers["dale_sign"]
            if hasattr(layer.weight, "dale_sign"):
                del layer.weight.dale_sign
    elif init != "dale":
        raise ValueError(f"init must be 'dale' or 'default', got {init!r}")
    return model


def _conv_net(
    in_channels: int, channels: Sequence[int], n_classes: int, seed: int,
    interneurons: float = 0.0,
) -> nn.Module:  # fmt: skip
    """3x3 conv layers with ReLU (a 2x2 max-pool after every second one, or after each when
    there are two), global average pooling and a linear readout, all Dale-typed; the input goes
    through an ON/OFF split so first-layer filters can be signed. With ``interneurons``, every
    layer after the first has feedforward inhibition (:mod:`bioplastic.inhibition`)."""
    gen = torch.Generator().manual_seed(seed)
    layers: list[nn.Module] = [OnOffSplit()]
    c_in, sign = 2 * in_channels, on_off_sign(in_channels)
    pool_every = 1 if len(channels) <= 2 else 2
    for i, c_out in enumerate(channels):
        if i > 0 and interneurons:
            k = max(1, round(interneurons * c_in))
            layers.append(InhibitedConv2d(c_in, c_out, 3, k, generator=gen, padding=1))
        else:
            layers.append(DaleConv2d(c_in, c_out, 3, padding=1, dale_sign=sign, generator=gen))
        layers.append(nn.ReLU())
        if (i + 1) % pool_every == 0:
            layers.append(nn.MaxPool2d(2))
        c_in, sign = c_out, None
    readout = (InhibitedLinear(c_in, n_classes, max(1, round(interneurons * c_in)), generator=gen)
               if interneurons else DaleLinear(c_in, n_classes, generator=gen))  # fmt: skip
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), readout]
    return nn.Sequential(*layers)


# ------------------------------------------------------------------------------------ one run
def run_one(
    task: Task,
    rule: str,
    seed: int,
    connectivity: float | None = None,
    data: tuple[Tensor, Tensor, Tensor, Tensor] | None = None,
    options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Train one model with one rule and return accuracies, connectivity and weight shape.

    ``connectivity`` is the target of the peers that take one (``deepr``, ``rigl``);
    ``options`` override the rule's defaults (for sweeps such as the lr basin only); under the
    key ``readout``, options of the readout weight alone (:func:`readout_groups`).
    """
    xtr, ytr, xte, yte = load_task(task) if data is None else data
    torch.manual_seed(seed)
    name, init, cosine = rule_parts(rule)
    model = build_model(task, xtr.shape[1:], init, seed, task.interneurons_for(rule))
    reference = {k: v.clone() for k, v in model.state_dict().items()}
    steps = task.epochs * math.ceil(len(xtr) / task.batch_size)
    if rule in PEER_NAMES:
        try:
            optimizer: Any = SparsePeer(rule, model, connectivity or 0.25, steps)
        except ValueError as err:  # e.g. rigl's dense first layer exceeds the target alone
            return {"task": task.name, "rule": rule, "seed": seed, "seconds": 0.0,
                    "not_run": str(err), **dict.fromkeys(_METRICS)}  # fmt: skip
    else:
        extra: dict[str, Any] = {"seed": seed} if name in ("bio", "eg") else {}
        if name == "bio":
            extra["total_steps"] = steps  # its annealed schedule, over the run
        params, rest = readout_groups(model, options or {})
        optimizer = make_optimizer(name, params, **{**extra, **rest})
    start = time.perf_counter()
    schedule = None
    if cosine:
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    _train(model, optimizer, xtr, ytr, task, seed, schedule)
    if rule in PEER_NAMES:
        model = optimizer.finish()
    seconds = time.perf_counter() - start
    row = {"task": task.name, "rule": rule, "seed": seed, "seconds": round(seconds, 2)}
    row.update(_evaluate(model, xtr, ytr, xte, yte, reference if init == "dale" else None))
    if options:
        row["options"] = dict(options)
    return row


def readout_groups(model: nn.Module, options: Mapping[str, Any]) -> tuple[list, dict[str, Any]]:
    """``(params, options)`` for ``make_optimizer``: with ``options["readout"]`` (a mapping),
    two parameter groups, the readout weight (the last synaptic layer's) with those options and
    everything else without; otherwise ``model``'s parameters as they are."""
    rest = dict(options)
    readout = rest.pop("readout", None)
    if readout is None:
        return list(model.parameters()), rest
    weight = synaptic_layers(model)[-1][1].weight
    others = [p for p in model.parameters() if p is not weight]
    return [{"params": others}, {"params": [weight], **dict(readout)}], rest


def _train(model, optimizer, x: Tensor, y: Tensor, task: Task, seed: int, schedule=None) -> None:
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(task.epochs):
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), task.batch_size):
            idx = order[i : i + task.batch_size]
            optimizer.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            optimizer.step()
            if schedule is not None:
                schedule.step()


def _evaluate(model, xtr, ytr, xte, yte, reference) -> dict[str, Any]:
    report = weight_report(model, reference)
    present = sum(r["n_present"] for r in report.values())
    total = sum(r["n_synapses"] for r in report.values())
    skews = [abs(r["log_mag_skewness"]) for r in report.values() if _finite(r["log_mag_skewness"])]
    kurts = [
        abs(r["log_mag_excess_kurtosis"])
        for r in report.values()
        if _finite(r["log_mag_excess_kurtosis"])
    ]
    finite = all(torch.isfinite(p).all() for p in model.parameters())
    return {
        "test": accuracy(model, xte, yte) if finite else None,
        "train": accuracy(model, xtr[:4000], ytr[:4000]) if finite else None,
        "connectivity": present / total,
        "worst_abs_skew": max(skews, default=None),
        "worst_abs_kurtosis": max(kurts, default=None),
        "sign_flips": sum(r.get("sign_flips", 0) for r in report.values()),
        "dale_violations": sum(r["dale_violations"] for r in report.values()),
    }


_METRICS = ("test", "train", "connectivity", "worst_abs_skew", "worst_abs_kurtosis",
            "sign_flips", "dale_violations")  # fmt: skip


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


# ------------------------------------------------------------------------------------ driver
Job = tuple[Task, str, int, "float | None", "dict | None"]


def _job(args: Job) -> dict[str, Any]:
    task, rule, seed, connectivity, options = args
    torch.set_num_threads(1)
    return run_one(task, rule, seed, connectivity, options=options)


def _cost(task: Task) -> float:
    """A rough relative cost of one run (synapses x samples x epochs), to order parallel jobs."""
    scale = {"digits": 1.3e3, "mnist1d": 4e3, "glyphs": 15 * task.n_classes}[task.data]
    per_sample = sum(task.width) ** 2 if task.arch == "mlp" else 400 * sum(task.width) ** 2
    return scale * per_sample * task.epochs


def _code_fingerprint() -> str:
    """A hash of the code a run depends on: a journal entry from other code is not reused."""
    import hashlib

    import bioplastic

    root = Path(bioplastic.__file__).parent
    digest = hashlib.sha256()
    for path in sorted([*root.glob("*.py"), *root.glob("probes/*.py"), Path(__file__)]):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _key(job: Job) -> str:
    task, rule, seed, connectivity, options = job
    target = None if connectivity is None else round(connectivity, 6)
    return json.dumps([task.name, task.width, task.epochs, task.interneurons_for(rule), rule,
                       seed, target, options, _CODE])  # fmt: skip


_CODE = _code_fingerprint()


def run_jobs(
    jobs: Sequence[Job],
    workers: int = 1,
    progress: Callable[[str], None] | None = None,
    journal: Path | None = None,
) -> list[dict[str, Any]]:
    """Run ``(task, rule, seed, connectivity, options)`` jobs, in ``workers`` processes.

    With ``journal`` (a JSON-lines file), every finished run is appended to it at once and jobs
    already there are read back instead of run again: an interrupted benchmark continues. Keys
    include a hash of the core's and this module's source, so runs of other code are not reused.
    """
    done = _read_journal(journal)
    if journal is not None:
        journal.parent.mkdir(parents=True, exist_ok=True)
    todo = [job for job in jobs if _key(job) not in done]
    for task in {job[0] for job in todo}:
        load_task(task)  # render/cache data once, before the workers start
    if workers > 1:  # longest jobs first, so that the last ones to finish are short
        todo = sorted(todo, key=lambda job: -_cost(job[0]))
    pool = ProcessPoolExecutor(workers) if workers > 1 and todo else None
    results = map(_job, todo) if pool is None else pool.map(_job, todo)
    for n, (job, row) in enumerate(zip(todo, results, strict=True), 1):
        done[_key(job)] = row
        if journal is not None:
            with journal.open("a") as handle:
                handle.write(json.dumps({"key": _key(job), "row": row}) + "\n")
        if progress is not None:
            progress(
                f"[{n}/{len(todo)}] {row['task']} {row['rule']} seed {row['seed']}: "
                f"test {_fmt(row['test'])}, connectivity {_fmt(row['connectivity'])}, "
                f"{row['seconds']:.0f} s"
            )
    if pool is not None:
        pool.shutdown()
    return [done[_key(job)] for job in jobs]


def _read_journal(journal: Path | None) -> dict[str, dict[str, Any]]:
    if journal is None or not journal.exists():
        return {}
    entries = (json.loads(line) for line in journal.read_text().splitlines() if line.strip())
    return {entry["key"]: entry["row"] for entry in entries}


def run_rulebench(
    tasks: Sequence[str] = tuple(TASKS),
    rules: Sequence[str] = RULES,
    seeds: Sequence[int] = (0, 1, 2),
    workers: int = 1,
    progress: Callable[[str], None] | None = None,
    journal: Path | None = None,
) -> dict[str, Any]:
    """Run every rule on every task and seed; peers run at bio's mean connectivity per task."""
    unknown = [t for t in tasks if t not in TASKS] + [r for r in rules if r not in RULES]
    if unknown:
        raise ValueError(f"unknown task or rule: {', '.join(unknown)}")
    first = [r for r in rules if r not in ("deepr", "rigl")]
    if any(r in rules for r in ("deepr", "rigl")) and "bio" not in first:
        first.insert(0, "bio")  # the peers' connectivity comes from bio's runs
    runs = run_jobs([(TASKS[t], r, s, None, None) for t in tasks for r in first for s in seeds],
                    workers, progress, journal)  # fmt: skip
    target = {
        t: statistics.fmean(
            x["connectivity"] for x in runs if x["task"] == t and x["rule"] == "bio"
        )
        for t in tasks
    }
    peer_rules = [r for r in ("deepr", "rigl") if r in rules]
    peers = [(TASKS[t], r, s, target[t], None) for t in tasks for r in peer_rules for s in seeds]
    runs += run_jobs(peers, workers, progress, journal)
    return {"tasks": list(tasks), "rules": list(rules), "seeds": list(seeds), "runs": runs,
            "summary": summarise(runs)}  # fmt: skip


def summarise(runs: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Mean and standard deviation over seeds of every metric, per task and rule."""
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    keys = ("test", "train", "connectivity", "worst_abs_skew", "worst_abs_kurtosis")
    for task in dict.fromkeys(r["task"] for r in runs):
        for rule in dict.fromkeys(r["rule"] for r in runs if r["task"] == task):
            rows = [r for r in runs if r["task"] == task and r["rule"] == rule]
            entry: dict[str, Any] = {"n": len(rows)}
            for key in keys:
                values = [r[key] for r in rows if _finite(r[key])]
                entry[key] = statistics.fmean(values) if values else None
                entry[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else None
            entry["sign_flips"] = sum(r["sign_flips"] or 0 for r in rows)
            entry["dale_violations"] = sum(r["dale_violations"] or 0 for r in rows)
            reasons = {r["not_run"] for r in rows if r.get("not_run")}
            if reasons:
                entry["not_run"] = "; ".join(sorted(reasons))
            summary.setdefault(task, {})[rule] = entry
    return summary


# ------------------------------------------------------------------------------------ targets
def check_targets(results: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Per task: bio vs the best dense baseline (>= -0.01), connectivity (<= 0.30), bio vs
    every sparse peer, and the shape of ln|w| (|skew| <= 0.5, |excess kurtosis| <= 1)."""
    checks: dict[str, dict[str, Any]] = {}
    for task, rules in results["summary"].items():
        bio = rules.get("bio")
        if bio is None or bio["test"] is None:
            continue
        dense = {r: rules[r]["test"] for r in DENSE_RULES if r in rules and rules[r]["test"]}
        best = max(dense.items(), key=lambda kv: kv[1], default=(None, None))
        sparse = {r: rules[r]["test"] for r in ("enforced", *PEER_NAMES) if r in rules}
        checks[task] = {
            "bio": bio["test"],
            "best_dense": best[0],
            "gap_to_dense": None if best[1] is None else bio["test"] - best[1],
            "accuracy_ok": best[1] is None or bio["test"] >= best[1] - 0.01,
            "connectivity": bio["connectivity"],
            "connectivity_ok": bio["connectivity"] <= 0.30,
            "beats_sparse_peers": all(v is None or bio["test"] >= v for v in sparse.values()),
            "shape_ok": (bio["worst_abs_skew"] or 0) <= 0.5
            and (bio["worst_abs_kurtosis"] or 0) <= 1.0,
            "dale_ok": bio["sign_flips"] == 0 and bio["dale_violations"] == 0,
        }
    return checks


# ------------------------------------------------------------------------------------ output
def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _cell(entry: Mapping[str, Any], key: str) -> str:
    if entry.get("not_run"):
        return "not run"
    std = entry.get(f"{key}_std")
    return _fmt(entry[key]) + ("" if std is None else f" ± {std:.3f}")


def format_markdown(results: Mapping[str, Any]) -> str:
    """Tables: test accuracy and connectivity per task and rule, and the targets."""
    summary = results["summary"]
    rules = [r for r in RULES if any(r in summary[t] for t in summary)]
    lines = [
        f"# Rule benchmark ({len(results['seeds'])} seeds, every rule at its defaults)",
        "",
        "Test accuracy (mean ± std over seeds); connectivity in brackets. bio anneals its rate "
        "over each run (`BioRule(total_steps=steps)`); `-cos`: the backprop rule with torch's "
        "`CosineAnnealingLR` over the run; the best of the eight backprop columns is the "
        "dense baseline.",
        "",
        "| task | " + " | ".join(rules) + " |",
        "|---|" + "---|" * len(rules),
    ]
    for task, entries in summary.items():
        cells = [
            f"{_cell(entries[r], 'test')} ({_fmt(entries[r]['connectivity'], 2)})" if r in entries
            else "" for r in rules
        ]  # fmt: skip
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    header = "| task | bio | best dense | gap | connectivity | beats sparse peers | "
    header += "worst abs(skew), abs(kurtosis) | Dale |"
    lines += ["", "## Targets", "", header, "|---|" + "---|" * 7]
    checks = check_targets(results)
    for task, c in checks.items():
        bio = summary[task]["bio"]
        lines.append(
            f"| {task} | {_fmt(c['bio'])} | {c['best_dense']} | "
            f"{_fmt(c['gap_to_dense'])} {'pass' if c['accuracy_ok'] else 'MISS'} | "
            f"{_fmt(c['connectivity'])} {'pass' if c['connectivity_ok'] else 'MISS'} | "
            f"{'pass' if c['beats_sparse_peers'] else 'MISS'} | "
            f"{_fmt(bio['worst_abs_skew'], 2)}, {_fmt(bio['worst_abs_kurtosis'], 2)} "
            f"{'pass' if c['shape_ok'] else 'MISS'} | {'pass' if c['dale_ok'] else 'MISS'} |"
        )
    return "\n".join(lines) + "\n"


def plot_accuracy_vs_connectivity(results: Mapping[str, Any], path) -> None:
    """One panel per task: test accuracy against connectivity, one marker per rule."""
    summary = results["summary"]
    tasks = list(summary)
    cols = min(3, len(tasks))
    rows = math.ceil(len(tasks) / cols)
    fig = new_figure(4.2 * cols, 3.4 * rows)
    markers = dict(zip(RULES, "o^sDdvP*XhH<>p8", strict=False))
    for i, task in enumerate(tasks):
        ax = fig.add_subplot(rows, cols, i + 1)
        for rule, entry in summary[task].items():
            if entry["test"] is None or entry["connectivity"] is None:
                continue
            ax.scatter(entry["connectivity"], entry["test"], marker=markers.get(rule, "o"),
                       s=60 if rule == "bio" else 36, label=rule)  # fmt: skip
        ax.set_title(task)
        ax.set_xlabel("connectivity")
        ax.set_ylabel("test accuracy")
        ax.set_xlim(0, 1.05)
        ax.grid(alpha=0.3)
    fig.axes[0].legend(fontsize=7, loc="lower right")
    fig.savefig(path, dpi=110)
