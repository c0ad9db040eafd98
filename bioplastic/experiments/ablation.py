"""Mechanism ablations of the bio rule: which mechanism helps or hurts which claim.

Every *variant* (:data:`VARIANTS`) switches one mechanism of :class:`bioplastic.BioRule` or of the
Dale-typed model off, or scales it. Variants and the dense baseline (Adam on the same
architecture from the Dale init, ``adam-dale``, and from PyTorch's, ``adam-torch``; per metric the
better of the two, as in :mod:`~bioplastic.experiments.rulebench`) run the same jobs and seeds;
each cell is the paired difference ``variant - adam`` over seeds with a t-based 95% CI.

Jobs (:data:`JOBS`; ``BioMLP`` with 256 hidden units), composed from the existing experiments:

* ``robustness`` (digits; ``robustness-mnist1d``): ``train_to_accuracy`` to the robustness
  benchmark's validation target (matched clean accuracy), then the per-sample worst case of L-inf
  PGD and APGD-DLR, mean over its eps > 0 grid, and the masking checks. The digits model gives
  the *plausibility* metrics: population sparseness of the hidden layer (test set) and the KS
  distance of standardised ln|w| to N(0, 1), layers weighted by their present synapses.
* ``fewshot`` (glyphs): the few-shot benchmark's pre-training and prototype 5-way 1-shot
  evaluation on meta-test classes.
* ``allocation-digits`` / ``-mnist1d``: a task-incremental split stream (5 tasks of 2 classes, a
  head per task), :meth:`BioRule.consolidate` after each task for bio (the continual strategy's
  defaults); mean off-diagonal Jaccard overlap of the hidden units each task recruits
  (:func:`bioplastic.probes.recruited_units`, ``rel_activity`` 0.5) and average forgetting.

Example: ``print(format_markdown(run_ablation(seeds=3, journal=Path("ablation.jsonl"))))``
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from bioplastic import probes as P
from bioplastic.baselines import interneurons_for, make_optimizer
from bioplastic.dale import BioMLP, _assign_sign
from bioplastic.experiments._common import mean_std, paired_difference
from bioplastic.experiments.rulebench import _read_journal
from bioplastic.train import accuracy, train_epochs

__all__ = ["BASELINES", "JOBS", "METRICS", "QUICK", "SETTINGS", "VARIANTS", "build_model",
           "candidates", "cell_text", "favourable", "format_markdown", "make_rule",
           "run_ablation", "summarise"]  # fmt: skip

SCHEMA = "bioplastic.experiments.ablation/1"

#: One mechanism changed per row: ``rule`` overrides BioRule's options, ``model`` the model
#: (``on_off``, ``sigma``, ``dale``), ``consolidate`` the stream's consolidation (``None``: off),
#: ``jobs`` restricts the row to the jobs where it acts.
VARIANTS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "noise 0.1": {"rule": {"noise": 0.1}},
    "homeostasis off": {"rule": {"homeostasis": False}},
    "budget_rate 0": {"rule": {"budget_rate": 0.0}},
    "budget_rate 0.1": {"rule": {"budget_rate": 0.1}},
    "cost 0": {"rule": {"cost": 0.0}},
    "saturation 0": {"rule": {"saturation": 0.0}},
    "elimination off": {"rule": {"prune_threshold": 0.0}},
    "elimination 0.2": {"rule": {"prune_threshold": 0.2}},
    "growth (every 50, gradient)": {
        "rule": {"grow_every": 50, "grow_mode": "gradient", "grow_fraction": 0.1}
    },
    "momentum 0": {"rule": {"momentum": 0.0}},
    "normalize_by tensor (rule v1)": {"rule": {"normalize_by": "tensor"}},
    "ON/OFF input off": {"model": {"on_off": False}},
    "Dale typing off": {"model": {"dale": False}},
    "init sigma 0.25": {"model": {"sigma": 0.25}},
    "init sigma 1.0": {"model": {"sigma": 1.0}},
    "consolidation off": {"consolidate": None, "jobs": ("allocation-digits", "allocation-mnist1d")},
    "consolidation strong": {
        "consolidate": {"fraction": 0.8, "factor": 0.01},
        "jobs": ("allocation-digits", "allocation-mnist1d"),
    },
}

#: The dense baseline: Adam from the Dale initialisation and from PyTorch's default
#: initialisation, on the plain BioMLP (the variants have bio's interneurons; ``benchmarks/
#: robustness.py`` instead trains Adam on bio's network). "Dale typing off" strips the
#: interneurons' types too.
BASELINES = ("adam-dale", "adam-torch")


class Metric(NamedTuple):
    key: str  # the job row's key
    job: str
    label: str
    better: int  # +1: higher supports the claim, -1: lower does


#: Heatmap columns (claims), then context columns (clean accuracy of each job).
METRICS: tuple[Metric, ...] = (
    Metric("robust", "robustness", "robustness: worst PGD/APGD-DLR acc (digits)", +1),
    Metric("robust", "robustness-mnist1d", "robustness: worst PGD/APGD-DLR acc (MNIST-1D)", +1),
    Metric("fewshot", "fewshot", "few-shot: proto 5w1s acc (glyphs)", +1),
    Metric("overlap", "allocation-digits", "allocation: unit overlap (split digits)", -1),
    Metric("forgetting", "allocation-digits", "allocation: forgetting (split digits)", -1),
    Metric("overlap", "allocation-mnist1d", "allocation: unit overlap (split MNIST-1D)", -1),
    Metric("forgetting", "allocation-mnist1d", "allocation: forgetting (split MNIST-1D)", -1),
    Metric("sparseness", "robustness", "plausibility: population sparseness", +1),
    Metric("ks", "robustness", "plausibility: KS of ln(abs w) vs normal", -1),
)
CONTEXT: tuple[Metric, ...] = (
    Metric("clean", "robustness", "clean test acc at match (digits)", +1),
    Metric("clean", "robustness-mnist1d", "clean test acc at match (MNIST-1D)", +1),
    Metric("clean", "fewshot", "held-out clean acc (glyphs pre-training)", +1),
    Metric("accuracy", "allocation-digits", "final avg acc (split digits)", +1),
    Metric("accuracy", "allocation-mnist1d", "final avg acc (split MNIST-1D)", +1),
    Metric("connectivity", "robustness", "connectivity (digits)", +1),
)

#: The reduced protocol of the sweep (the full benchmarks' values in comments).
SETTINGS: dict[str, Any] = {
    "hidden": (256,),
    "robustness": {
        "dataset": "digits",  # full: digits and MNIST-1D
        "batch_size": 32,
        "eval_every_steps": 10,
        "pgd_steps": 20,
        "restarts": 1,
        "masking_steps": 20,
        "masking_restarts": 1,  # full: 3
        "n_test": None,
    },
    "fewshot": {
        "max_classes": 400,  # full: every glyph class (~1,900)
        "epochs": 10,
        "hidden": (256,),  # full: (256, 128)
        "batch_size": 64,
        "ways": 5,
        "shots": 1,
        "queries": 15,
        "episodes": 600,
    },
    "allocation": {"epochs": 10, "batch_size": 32, "probe_size": 128, "rel_activity": 0.5},
}

#: Tiny settings for a smoke run (``--quick``, tests).
QUICK: dict[str, Any] = {
    "hidden": (32,),
    "robustness": {**SETTINGS["robustness"], "pgd_steps": 3, "masking_steps": 3, "n_test": 60},
    "fewshot": {**SETTINGS["fewshot"], "max_classes": 60, "epochs": 1, "hidden": (32,),
                "episodes": 10},
    "allocation": {**SETTINGS["allocation"], "epochs": 1, "probe_size": 32},
}  # fmt: skip

Job = tuple[str, str, int]  # (job, config, seed); config is a variant or a baseline


# ------------------------------------------------------------------------------ rule and model
def make_rule(
    config: str, params, *, base: Mapping[str, Any] | None = None, seed: int = 0
) -> torch.optim.Optimizer:
    """The optimizer of ``config``: Adam for a baseline, else ``BioRule`` with ``base`` (the
    job's defaults, e.g. the continual strategy's) updated by the variant's ``rule`` options."""
    if config in BASELINES:
        return make_optimizer("adam", params)
    options = {**(base or {}), **VARIANTS[config].get("rule", {}), "seed": seed}
    return make_optimizer("bio", params, **options)


def build_model(config: str, n_in: int, n_out: int, hidden: Sequence[int], seed: int) -> nn.Module:
    """``BioMLP(n_in, hidden, n_out)`` as ``config`` wants it: Dale-typed with the variant's
    ``on_off``/``sigma``; ``dale=False`` gives every entry its own sign (each row of every
    layer shuffled, which keeps each unit's E/I input balance but mixes the signs of every
    presynaptic unit, and the types dropped); ``adam-torch`` has PyTorch's initialisation.
    Interneurons: :func:`~bioplastic.baselines.interneurons_for` the config's rule."""
    spec = VARIANTS.get(config, {}).get("model", {})
    inh = interneurons_for("adam" if config in BASELINES else "bio")
    model = BioMLP(n_in, tuple(hidden), n_out, on_off=spec.get("on_off", True),
                   sigma=spec.get("sigma", 0.5), seed=seed, interneurons=inh)  # fmt: skip
    if config == "adam-torch" or not spec.get("dale", True):
        gen = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        for _, layer in P.synaptic_layers(model):
            with torch.no_grad():
                if config == "adam-torch":
                    layer.reset_parameters()
                else:
                    w = layer.weight
                    order = torch.argsort(torch.rand(w.shape, generator=gen), dim=1)
                    w.copy_(torch.gather(w, 1, order))
            del layer._buffers["dale_sign"]
            del layer.weight.dale_sign
    return model


class _MultiHead(nn.Module):
    """A trunk and one 2-way head per task; ``task`` picks the head. An inhibited readout's
    interneurons stay shared: every head reads the hidden units and the interneurons."""

    def __init__(self, model: BioMLP, n_tasks: int, per_task: int):
        super().__init__()
        self.trunk = model.net[:-1]
        self.interneurons = getattr(model.net[-1], "interneurons", None)
        readout = getattr(model.net[-1], "principal", model.net[-1])
        self.heads = nn.ModuleList()
        for t in range(n_tasks):
            head = nn.Linear(readout.in_features, per_task)
            with torch.no_grad():  # rows of one typed readout: hidden units keep their types
                head.weight.copy_(readout.weight[t * per_task : (t + 1) * per_task])
                head.bias.copy_(readout.bias[t * per_task : (t + 1) * per_task])
            if "dale_sign" in readout._buffers:
                _assign_sign(head, readout.dale_sign.clone())
            self.heads.append(head)
        self.task = 0

    def forward(self, x: Tensor) -> Tensor:
        h = self.trunk(x)
        if self.interneurons is not None:
            h = torch.cat([h, self.interneurons(h)], dim=-1)
        return self.heads[self.task](h)


# ------------------------------------------------------------------------------------ jobs
def _robustness_job(config: str, seed: int, settings: Mapping[str, Any]) -> dict[str, Any]:
    from bioplastic.experiments.robustness import DATASET_DEFAULTS, apgd_dlr_accuracy
    from bioplastic.experiments.robustness.data import _Batches, load_robustness_data
    from bioplastic.robustness import gradient_masking_checks, train_to_accuracy

    cfg = settings["robustness"]
    defaults = DATASET_DEFAULTS[cfg["dataset"]]
    data = load_robustness_data(cfg["dataset"], seed)
    if cfg["n_test"] is not None:
        data["test"] = tuple(t[: cfg["n_test"]] for t in data["test"])
    torch.manual_seed(seed)
    model = build_model(config, data["n_features"], 10, settings["hidden"], seed)
    optimizer = make_rule(config, model.parameters(), seed=seed)
    loader = _Batches(*data["train"], cfg["batch_size"], seed)
    training = train_to_accuracy(model, optimizer, loader, data["val"],
                                 defaults["target_accuracy"], defaults["max_epochs"],
                                 eval_every_steps=cfg["eval_every_steps"])  # fmt: skip
    model.eval()
    test, rng = data["test"], data["input_range"]
    worst, dlr = [], []
    for eps in (e for e in defaults["epsilons"] if e > 0):
        d, both = apgd_dlr_accuracy(model, test, eps, steps=cfg["pgd_steps"],
                                    restarts=cfg["restarts"], input_range=rng,
                                    ensemble_with_pgd=True)  # fmt: skip
        dlr.append(d)
        worst.append(both)
    masking = gradient_masking_checks(model, test, defaults["masking_eps"],
                                      steps=cfg["masking_steps"],
                                      restarts=cfg["masking_restarts"], large_eps=1.0,
                                      input_range=rng)  # fmt: skip
    return {
        "reached": bool(training.reached),
        "val": float(training.accuracy),
        "epochs": int(training.epoch),
        "clean": accuracy(model, *test),
        "robust": statistics.fmean(worst),
        "robust_dlr": statistics.fmean(dlr),
        "masked": bool(masking["masked"]),
        **_plausibility(model, test[0]),
    }


def _plausibility(model: nn.Module, x: Tensor) -> dict[str, float]:
    """Population sparseness of the hidden layer(s) on ``x``, connectivity, and the KS
    distance of standardised ln|w| to N(0, 1) (layers weighted by present synapses)."""
    relus = [name for name, m in model.named_modules() if isinstance(m, nn.ReLU)]
    acts = P.record_activations(model, x, layers=relus)
    sparse = statistics.fmean(P.population_sparseness(a.reshape(len(a), -1)) for a in acts.values())
    report = P.weight_report(model).values()
    present = sum(r["n_present"] for r in report)
    ks = sum(r["log_mag_ks_normal"] * r["n_present"] for r in report) / present
    return {
        "sparseness": sparse,
        "ks": ks,
        "connectivity": present / sum(r["n_synapses"] for r in report),
    }


@functools.lru_cache(maxsize=2)
def _glyphs(max_classes: int):
    from bioplastic.experiments.fewshot import load_fewshot_data

    return load_fewshot_data("glyphs", max_classes=max_classes)


def _fewshot_job(config: str, seed: int, settings: Mapping[str, Any]) -> dict[str, Any]:
    from bioplastic.experiments.fewshot.evaluate import _draw_episodes
    from bioplastic.experiments.fewshot.pretrain import _holdout, _pretrain
    from strategies.fewshot.proto import ProtoEvaluator

    cfg = settings["fewshot"]
    data = _glyphs(cfg["max_classes"])
    n_in, n_out = math.prod(data.input_shape), int(data.train_y.max()) + 1
    torch.manual_seed(seed)
    model = build_model(config, n_in, n_out, cfg["hidden"], seed)
    train_idx, held_idx = _holdout(data.train_y, 0.2, seed)
    rule, options = (
        ("adam", {}) if config in BASELINES else ("bio", VARIANTS[config].get("rule", {}))
    )
    run = _pretrain(model, rule, data, train_idx, held_idx, cfg["epochs"], cfg["batch_size"], seed,
                    options, torch.device("cpu"))  # fmt: skip
    _, episodes, _ = _draw_episodes(data, cfg["ways"], (cfg["shots"],), cfg["queries"],
                                    cfg["episodes"], seed, "bioplastic", torch.device("cpu"),
                                    set(data.test_y.tolist()))  # fmt: skip
    result = ProtoEvaluator(model.net[:-1]).evaluate_indexed(data.test_x, episodes[cfg["shots"]])
    return {"fewshot": float(result["mean"]), "clean": float(run["clean_accuracy"])}


def _allocation_job(
    config: str, seed: int, settings: Mapping[str, Any], stream_name: str
) -> dict[str, Any]:
    from bioplastic.data import make_stream

    cfg = settings["allocation"]
    stream = make_stream(stream_name, scenario="task", seed=seed)
    per_task = len(stream[0].labels)
    torch.manual_seed(seed)
    model = _MultiHead(build_model(config, math.prod(stream.input_shape), per_task * len(stream),
                                   settings["hidden"], seed), len(stream), per_task)  # fmt: skip
    optimizer = make_rule(config, model.parameters(), base=settings["stream_rule"], seed=seed)
    consolidate = VARIANTS.get(config, {}).get("consolidate", settings["consolidate"])
    matrix: list[list[float | None]] = []
    for k, exp in enumerate(stream):
        model.task = k
        train_epochs(model, optimizer, exp.x_train, exp.y_train, cfg["epochs"],
                     batch_size=cfg["batch_size"], seed=seed * 1000 + k)  # fmt: skip
        if config not in BASELINES and consolidate is not None:
            optimizer.consolidate(**consolidate)
        row: list[float | None] = []
        for j, other in enumerate(stream):
            model.task = j
            row.append(accuracy(model, other.x_test, other.y_test) if j <= k else None)
        matrix.append(row)
    relus = [name for name, m in model.trunk.named_modules() if isinstance(m, nn.ReLU)]
    means = []
    for exp in stream:
        acts = P.record_activations(model.trunk, exp.x_train[: cfg["probe_size"]], layers=relus)
        means.append(torch.cat([a.mean(0).reshape(-1) for a in acts.values()]))
    units = P.recruited_units(torch.stack(means).clamp(min=0).double(), cfg["rel_activity"])
    overlap = P.jaccard_matrix(list(units))
    off = overlap[~torch.eye(len(overlap), dtype=torch.bool)]
    last = len(matrix) - 1
    forgetting = statistics.fmean(
        max(matrix[i][j] for i in range(j, last)) - matrix[last][j] for j in range(last)
    )  # Chaudhry et al. 2018, as bioplastic.experiments.stream.continual_metrics
    return {
        "overlap": float(off.mean()),
        "forgetting": forgetting,
        "accuracy": statistics.fmean(matrix[last]),
        "accuracy_matrix": matrix,
    }


def _robustness_mnist1d_job(config: str, seed: int, settings: Mapping[str, Any]) -> dict:
    """The robustness job on MNIST-1D (its own target, eps grid and masking budgets)."""
    cfg = {**settings["robustness"], "dataset": "mnist1d"}
    return _robustness_job(config, seed, {**settings, "robustness": cfg})


JOBS: dict[str, Callable[..., dict[str, Any]]] = {
    "robustness": _robustness_job,
    "robustness-mnist1d": _robustness_mnist1d_job,
    "fewshot": _fewshot_job,
    "allocation-digits": functools.partial(_allocation_job, stream_name="split-digits"),
    "allocation-mnist1d": functools.partial(_allocation_job, stream_name="split-mnist1d"),
}


# ------------------------------------------------------------------------------ the sweep
def _code_fingerprint() -> str:
    """A hash of the code a job depends on (the core and this module's job functions, not its
    presentation): journal entries of other code are not reused."""
    import bioplastic

    root = Path(bioplastic.__file__).parent
    digest = hashlib.sha256()
    for path in sorted([*root.glob("*.py"), *root.glob("probes/*.py")]):
        digest.update(path.read_bytes())
    for obj in (build_model, make_rule, _MultiHead, _plausibility, _allocation_job,
                _robustness_job, _fewshot_job, _run_job):  # fmt: skip
        digest.update(inspect.getsource(obj).encode())
    return digest.hexdigest()[:16]


def _key(job: Job, settings: Mapping[str, Any], code: str) -> str:
    name, config, seed = job
    if name == "robustness-mnist1d":  # added later: its own source joins the fingerprint
        code += hashlib.sha256(inspect.getsource(_robustness_mnist1d_job).encode()).hexdigest()[:8]
    spec = VARIANTS.get(config, {})
    return json.dumps([name, config, spec, seed, settings, code], sort_keys=True, default=str)


def _run_job(args: tuple[Job, Mapping[str, Any]]) -> dict[str, Any]:
    (name, config, seed), settings = args
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    row = JOBS[name](config, seed, settings)
    return {"job": name, "config": config, "seed": seed, **row,
            "seconds": time.perf_counter() - t0}  # fmt: skip


def plan(
    variants: Sequence[str], seeds: Sequence[int], jobs: Sequence[str] = tuple(JOBS)
) -> list[Job]:
    """Every (job, config, seed) of the sweep: baselines first, then variants."""
    out = []
    for config in (*BASELINES, *variants):
        for name in jobs:
            if name in VARIANTS.get(config, {}).get("jobs", JOBS):
                out += [(name, config, seed) for seed in seeds]
    return out


def run_jobs(
    jobs: Sequence[Job],
    settings: Mapping[str, Any],
    *,
    workers: int = 1,
    journal: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Run ``jobs`` in ``workers`` processes (one thread each). With ``journal`` (JSON lines)
    every finished job is appended at once and jobs found there are not run again."""
    code = _code_fingerprint()
    done = _read_journal(journal)  # the rule benchmark's format: {"key", "row"} per line
    todo = [job for job in jobs if _key(job, settings, code) not in done]
    pool = ProcessPoolExecutor(workers) if workers > 1 and len(todo) > 1 else None
    args = [(job, settings) for job in todo]
    results = map(_run_job, args) if pool is None else pool.map(_run_job, args)
    try:
        for n, (job, row) in enumerate(zip(todo, results, strict=True), 1):
            key = _key(job, settings, code)
            done[key] = row
            if journal is not None:
                journal.parent.mkdir(parents=True, exist_ok=True)
                with journal.open("a") as handle:
                    handle.write(json.dumps({"key": key, "row": row}) + "\n")
            if progress is not None:
                progress(
                    f"[{n}/{len(todo)}] {job[0]} {job[1]} seed {job[2]} ({row['seconds']:.0f} s)"
                )
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return [done[_key(job, settings, code)] for job in jobs]


def summarise(
    rows: Sequence[Mapping[str, Any]], variants: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Per variant and metric (``"<job>/<key>"``): the paired difference ``variant - adam``
    over the seeds both have, against the baseline (of :data:`BASELINES`) whose mean is better
    for the claim; ``None`` where the variant does not run that job."""
    values: dict[tuple[str, str, str], dict[int, float]] = {}
    for row in rows:
        for m in (*METRICS, *CONTEXT):
            if row["job"] == m.job and row.get(m.key) is not None:
                values.setdefault((row["config"], m.job, m.key), {})[row["seed"]] = row[m.key]
    chosen: dict[tuple[str, str], str | None] = {}
    for m in (*METRICS, *CONTEXT):  # context columns: their job's first claim's baseline
        bases = [b for b in BASELINES if (b, m.job, m.key) in values]
        score = {b: m.better * statistics.fmean(values[(b, m.job, m.key)].values()) for b in bases}
        first = next((chosen.get((c.job, c.key)) for c in METRICS if c.job == m.job), None)
        chosen[(m.job, m.key)] = (
            first if m in CONTEXT and first else max(score, key=score.get, default=None)
        )
    table: dict[str, dict[str, Any]] = {}
    for variant in variants:
        table[variant] = {}
        for m in (*METRICS, *CONTEXT):
            mine = values.get((variant, m.job, m.key), {})
            base = chosen.get((m.job, m.key))
            theirs = values.get((base, m.job, m.key), {})
            seeds = sorted(set(mine) & set(theirs))
            table[variant][f"{m.job}/{m.key}"] = None if not seeds else {
                **paired_difference([mine[s] - theirs[s] for s in seeds]),
                "baseline": base,
                "variant": mean_std([mine[s] for s in seeds]),
                "adam": mean_std([theirs[s] for s in seeds]),
            }  # fmt: skip
    return table


def favourable(cell: Mapping[str, Any] | None, better: int) -> bool:
    """The CI of ``cell`` excludes 0 on the side that supports the claim."""
    if cell is None or cell["ci95_low"] is None or better == 0:
        return False
    return cell["ci95_low"] > 0 if better > 0 else cell["ci95_high"] < 0


def candidates(table: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every (variant, claim) where bio beats adam with the CI excluding 0, with the variant's
    clean-accuracy difference on that job (the price, or a sign the comparison is unmatched)."""
    context = {m.job: f"{m.job}/{m.key}" for m in CONTEXT if m.key != "connectivity"}
    out = []
    for variant, cells in table.items():
        for m in METRICS:
            cell = cells.get(f"{m.job}/{m.key}")
            if favourable(cell, m.better):
                acc = cells.get(context[m.job])
                out.append({"variant": variant, "metric": m.label, "diff": cell,
                            "clean_accuracy_diff": acc})  # fmt: skip
    return out


def run_ablation(
    variants: Sequence[str] = tuple(VARIANTS),
    seeds: int | Sequence[int] = 3,
    *,
    jobs: Sequence[str] = tuple(JOBS),
    settings: Mapping[str, Any] | None = None,
    workers: int = 1,
    journal: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the sweep (see the module docstring) and return a JSON-ready dict: ``config``,
    ``rows`` (one per job, config and seed), ``table`` (:func:`summarise`) and ``candidates``
    (:func:`candidates`).

    ``settings`` defaults to :data:`SETTINGS`; the continual strategy's rule options and
    consolidation (``stream_rule``, ``consolidate``) are read from
    :mod:`strategies.avalanche.config` unless ``settings`` holds them.
    """
    bad = [v for v in variants if v not in VARIANTS] + [j for j in jobs if j not in JOBS]
    if bad:
        raise ValueError(
            f"unknown variants or jobs {bad}; variants: {list(VARIANTS)}, jobs: {list(JOBS)}"
        )
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    settings = dict(SETTINGS if settings is None else settings)
    if "stream_rule" not in settings or "consolidate" not in settings:
        from strategies.avalanche.config import strategy_defaults

        bio = strategy_defaults("bio")
        settings.setdefault("stream_rule", dict(bio["optimizer"][1]))
        settings.setdefault("consolidate", bio["consolidate"])
    start = time.perf_counter()
    rows = run_jobs(plan(variants, seed_list, jobs), settings, workers=workers, journal=journal,
                    progress=progress)  # fmt: skip
    table = summarise(rows, variants)
    return {
        "schema": SCHEMA,
        "config": {"variants": {v: VARIANTS[v] for v in variants}, "seeds": seed_list,
                   "jobs": list(jobs), "baselines": list(BASELINES), "settings": settings},
        "rows": rows,
        "table": table,
        "candidates": candidates(table),
        "seconds": time.perf_counter() - start,
    }  # fmt: skip


# ------------------------------------------------------------------------------ presentation
def cell_text(cell: Mapping[str, Any] | None, better: int = 0, sep: str = " ") -> str:
    """``+0.012 [-0.003, +0.027]``, with `` *`` when the CI favours the claim (``better``)."""
    if cell is None:
        return "—"
    text = f"{cell['mean_diff']:+.3f}"
    if cell["ci95_low"] is not None:
        text += f"{sep}[{cell['ci95_low']:+.3f}, {cell['ci95_high']:+.3f}]"
    return text + (" *" if favourable(cell, better) else "")


def format_markdown(results: Mapping[str, Any]) -> str:
    """The heatmap's numbers, the context columns and the candidate presets as markdown."""
    table, cfg = results["table"], results["config"]
    jobs = set(cfg["jobs"])
    metrics = [m for m in METRICS if m.job in jobs]
    context = [m for m in CONTEXT if m.job in jobs]
    lines = [
        f"# Mechanism ablations: bio variant - adam ({len(cfg['seeds'])} seeds, paired, 95% t-CI)",
        "",
        "Each row changes one mechanism of the bio rule or the model; each cell is the mean "
        "paired difference over seeds with its 95% CI; `*` marks a CI that excludes 0 in the "
        "claim's favour (higher robustness, few-shot accuracy and sparseness; lower overlap, "
        "forgetting and KS). The baseline per column is the better of Adam from the Dale and "
        "from PyTorch's initialisation.",
        "",
    ]
    for group, stars in ((metrics, True), (context, False)):
        lines.append("| variant | " + " | ".join(m.label for m in group) + " |")
        lines.append("|---|" + "---|" * len(group))
        for variant, cells in table.items():
            row = [cell_text(cells.get(f"{m.job}/{m.key}"), m.better * stars) for m in group]
            lines.append(f"| {variant} | " + " | ".join(row) + " |")
        lines.append("")
    lines += ["## Candidate presets (bio > adam, CI excluding 0), per claim", ""]
    found = results["candidates"]
    if not found:
        lines.append("None: no variant beats adam on any claim with a CI that excludes 0.")
    for m in metrics:
        hits = [c for c in found if c["metric"] == m.label]
        if hits:
            names = ", ".join(f"{c['variant']} {c['diff']['mean_diff']:+.3f} (clean "
                              f"{cell_text(c['clean_accuracy_diff'])})" for c in hits)  # fmt: skip
            lines.append(f"- {m.label}: {len(hits)} of {len(table)} rows: {names}")
    return "\n".join(lines) + "\n"
