"""Continual-learning strategies side by side on one offline stream, with resume.

:func:`run_stream_comparison` trains every strategy of :func:`strategies.avalanche.make_strategy`
asked for on the same stream and seeds: for each seed ``k`` it builds the stream
(:func:`bioplastic.data.make_stream` with ``seed=k``, so seeds vary the class order and the
train/test split), and for each strategy a fresh model (:func:`make_model`, seeded with ``k``),
the strategy (hyper-parameters from :mod:`strategies.avalanche.config`) and an evaluator with the
probes (:func:`make_evaluator`) writing TensorBoard logs and one JSON file per run. After each
training experience the strategy is evaluated on *every* test experience, which fills the
accuracy matrix ``R[i][j]`` (accuracy on experience ``j`` after training experience ``i``; the
entries ``j > i`` are the accuracy on tasks not yet seen), a checkpoint is saved
(:func:`save_checkpoint`, atomic) and a progress manifest is updated.

Layout under ``logdir``::

    <stream>-<scenario>/
        manifest.json           settings of the comparison and the state of every run
        results.json            everything below, aggregated (mean ± std over seeds)
        results.md              the tables (format_markdown)
        <strategy>/seed<k>/     TensorBoard events, metrics.json (every metric per experience,
                                :class:`JSONResultsLogger`), run.json (the run's summary) and,
                                until the run is finished, checkpoint.pt

With ``resume=True`` a run whose ``run.json`` exists (same settings and hyper-parameters) is
not trained again, and a run interrupted between experiences continues from its last
checkpoint; the checkpoint restores model, optimizer, plugins, metrics, loggers and random
generators, so a resumed run ends with the same metrics as an uninterrupted one.

Metrics of one run, from its accuracy matrix ``R`` over ``T`` experiences:

* final average accuracy ``ACC = 1/T sum_j R[T-1][j]`` (Lopez-Paz & Ranzato 2017, "Gradient
  Episodic Memory for Continual Learning");
* backward transfer ``BWT = 1/(T-1) sum_{j<T-1} (R[T-1][j] - R[j][j])`` (Lopez-Paz & Ranzato
  2017), negative when learning later tasks hurts earlier ones;
* average forgetting ``F = 1/(T-1) sum_{j<T-1} max_{j<=l<T-1} (R[l][j] - R[T-1][j])``
  (Chaudhry et al. 2018, "Riemannian Walk for Incremental Learning"; the maximum runs over the
  accuracies the task had once trained, as in Avalanche's forgetting metric);
* the final connectivity (fraction of present synapses) and Dale violations of the whole model
  (:mod:`bioplastic.probes`). Backprop baselines are not Dale-typed: their violations are what
  the probe finds (units with mixed-sign outgoing weights) and ``dale_typed`` says so;
* per experience, the task-encoding probes (capacity used and free, mean synapse and unit
  overlap between tasks, synapses and units the task recruited).

Example::

    results = run_stream_comparison("split-digits", "task", strategies=("bio", "naive"),
                                    seeds=2, logdir="runs/")
    print(format_markdown(results))
"""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from avalanche.training.templates import SupervisedTemplate

from bioplastic import probes as P
from bioplastic._checks import check_int
from bioplastic._device import resolve_device
from bioplastic._io import write_atomic
from bioplastic.data import SCENARIOS, Stream, available_streams, make_stream
from bioplastic.experiments._common import mean_std, read_json, write_json
from strategies.avalanche.benchmarks import avalanche_benchmark
from strategies.avalanche.checkpoint import load_checkpoint, save_checkpoint
from strategies.avalanche.config import COMMON, STRATEGY_NAMES, strategy_defaults
from strategies.avalanche.loggers import JSONResultsLogger, make_evaluator, to_jsonable
from strategies.avalanche.models import make_model
from strategies.avalanche.strategy import make_strategy

__all__ = [
    "DEFAULT_STRATEGIES",
    "QUICK",
    "TARGETS",
    "check_targets",
    "continual_metrics",
    "format_markdown",
    "run_stream_comparison",
]

logger = logging.getLogger(__name__)

#: The strategies compared by default (``bio+replay`` is for the class-incremental table).
DEFAULT_STRATEGIES: tuple[str, ...] = (
    "bio", "naive", "ewc", "si", "mas", "lwf", "replay", "packnet", "eg", "enforced",
)  # fmt: skip

#: What ``quick=True`` changes: fewer epochs and samples (stream keyword arguments win).
QUICK: dict[str, int] = {
    "epochs": 3,
    "max_train_per_experience": 128,
    "max_test_per_experience": 64,
}

#: The issue's targets (see :func:`check_targets`).
TARGETS: dict[str, float] = {
    "task_max_forgetting": 0.03,
    "task_max_connectivity": 0.30,
    "task_max_dale_violations": 0,
}

#: Task-encoding probes summarised per experience (``probe/task/<name>``).
ENCODING_KEYS: tuple[str, ...] = (
    "capacity_used",
    "capacity_free",
    "free_present_fraction",
    "synapse_overlap_mean",
    "unit_overlap_mean",
    "selectivity_mean",
)

_FORMAT = "bioplastic-stream-comparison"
_MANIFEST_FORMAT = "bioplastic-stream-manifest"
_ACC_KEY = re.compile(r"^Top1_Acc_Exp/eval_phase/test_stream/Task\d+/Exp(\d+)$")

Progress = Callable[[str], None]
AfterExperience = Callable[[str, int, int], None]


# ----------------------------------------------------------------------------- metrics


def continual_metrics(matrix: Sequence[Sequence[float | None]]) -> dict[str, float | None]:
    """Final average accuracy, average forgetting and BWT of an accuracy matrix.

    Args:
        matrix: ``T x T`` accuracies in [0, 1], ``matrix[i][j]`` on experience ``j`` after
            training experience ``i`` (only ``j <= i`` is used).

    Returns:
        ``{"final_average_accuracy", "average_forgetting", "bwt"}`` (module docstring for the
        definitions); forgetting and BWT are ``None`` for a single experience.

    Raises:
        ValueError: the matrix is not square, or a used entry is missing or outside [0, 1].
    """
    n = len(matrix)
    if n == 0 or any(len(row) != n for row in matrix):
        raise ValueError(
            f"matrix must be square T x T with T >= 1, got rows {[len(r) for r in matrix]}"
        )
    for i, row in enumerate(matrix):
        for j in range(i + 1):
            value = row[j]
            if value is None or not (0.0 <= float(value) <= 1.0):
                raise ValueError(f"matrix[{i}][{j}] must be an accuracy in [0, 1], got {value!r}")
    last = n - 1
    acc = sum(float(matrix[last][j]) for j in range(n)) / n
    if n == 1:
        return {"final_average_accuracy": acc, "average_forgetting": None, "bwt": None}
    forgetting = [
        max(float(matrix[l][j]) for l in range(j, last)) - float(matrix[last][j])
        for j in range(last)
    ]
    bwt = [float(matrix[last][j]) - float(matrix[j][j]) for j in range(last)]
    return {
        "final_average_accuracy": acc,
        "average_forgetting": sum(forgetting) / last,
        "bwt": sum(bwt) / last,
    }


def _weights_summary(model: torch.nn.Module) -> dict[str, float | int]:
    report = P.weight_report(model)
    total = sum(int(row["n_synapses"]) for row in report.values())
    present = sum(int(row["n_present"]) for row in report.values())
    return {
        "connectivity": present / total if total else math.nan,
        "dale_violations": sum(int(row["dale_violations"]) for row in report.values()),
        "n_synapses": total,
    }


def _run_summary(records: Mapping[str, Any], n_experiences: int) -> dict[str, Any]:
    """Accuracy matrix, sign flips and task encoding from a run's :class:`JSONResultsLogger`."""
    experiences = records["experiences"]
    if len(experiences) < n_experiences:
        raise RuntimeError(
            f"the run's metrics cover {len(experiences)} of {n_experiences} experiences"
        )
    matrix: list[list[float | None]] = []
    encoding = []
    sign_flips = None
    for i, exp in enumerate(experiences[:n_experiences]):
        metrics = exp["metrics"]
        row: list[float | None] = [None] * n_experiences
        for key, value in metrics.items():
            match = _ACC_KEY.match(key)
            if match and int(match.group(1)) < n_experiences:
                row[int(match.group(1))] = value
        matrix.append(row)
        enc = {k: metrics.get(f"probe/task/{k}") for k in ENCODING_KEYS}
        enc["recruited_synapse_fraction"] = metrics.get(
            f"probe/task/recruited_synapse_fraction/Exp{i:03d}"
        )
        enc["recruited_units"] = metrics.get(f"probe/task/recruited_units/Exp{i:03d}")
        encoding.append(enc)
        sign_flips = metrics.get("probe/weights/sign_flips", sign_flips)
    return {"accuracy_matrix": matrix, "task_encoding": encoding, "sign_flips": sign_flips}


# ----------------------------------------------------------------------------- helpers


def _normal(data: Any) -> Any:
    """``data`` as it reads back from JSON (tuples become lists), for comparisons."""
    return json.loads(json.dumps(to_jsonable(data)))


def _seed_list(seeds: int | Sequence[int]) -> list[int]:
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        return list(range(check_int("seeds", seeds)))
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence):
        raise ValueError(f"seeds must be a positive int or a sequence of ints >= 0, got {seeds!r}")
    out = list(seeds)
    if not out or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in out):
        raise ValueError(f"seeds must be a positive int or a sequence of ints >= 0, got {seeds!r}")
    if len(set(out)) != len(out):
        raise ValueError(f"seeds must be distinct, got {out}")
    return out


def _strategy_list(strategies: Sequence[str]) -> list[str]:
    if isinstance(strategies, str):
        strategies = [s.strip() for s in strategies.split(",") if s.strip()]
    names = list(strategies)
    if not names:
        raise ValueError("strategies must name at least one strategy")
    unknown = [n for n in names if n not in STRATEGY_NAMES]
    if unknown:
        raise ValueError(
            f"unknown strategies {', '.join(map(repr, unknown))}; choose from "
            f"{', '.join(STRATEGY_NAMES)}"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"strategies must be distinct, got {names}")
    return names


def _mean_matrix(matrices: Sequence[Sequence[Sequence[float | None]]]) -> list[list[float | None]]:
    n = len(matrices[0])
    return [[mean_std([m[i][j] for m in matrices])["mean"] for j in range(n)] for i in range(n)]


# ----------------------------------------------------------------------------- one run


class _Comparison:
    """Bookkeeping of one comparison folder: its settings, the manifest, the runs."""

    def __init__(self, root: Path, config: dict[str, Any], resume: bool):
        self.root = root
        self.config = config
        self.manifest_path = root / "manifest.json"
        old = read_json(self.manifest_path) if resume else None
        self.runs: dict[str, Any] = {}
        if isinstance(old, dict) and old.get("format") == _MANIFEST_FORMAT:
            if old.get("config") != config:
                diff = sorted(
                    k
                    for k in set(config) | set(old.get("config", {}))
                    if config.get(k) != old.get("config", {}).get(k)
                )
                raise ValueError(
                    f"{root} holds a comparison with other settings ({', '.join(diff)}); "
                    "use another logdir or run without resume"
                )
            self.runs = dict(old.get("runs", {}))

    def update(self, key: str, **state: Any) -> None:
        self.runs[key] = {**self.runs.get(key, {}), **state}
        write_json(
            self.manifest_path,
            {"format": _MANIFEST_FORMAT, "config": self.config, "runs": self.runs},
        )


def _run_one(
    comparison: _Comparison,
    name: str,
    seed: int,
    stream: Stream,
    *,
    epochs: int,
    resume: bool,
    device: torch.device,
    progress: Progress,
    after_experience: AfterExperience | None,
    overrides: Mapping[str, Any],
) -> dict[str, Any]:
    key = f"{name}/seed{seed}"
    run_dir = comparison.root / name / f"seed{seed}"
    run_json, ckpt = run_dir / "run.json", run_dir / "checkpoint.pt"
    hyper = _normal({**strategy_defaults(name), "overrides": dict(overrides)})
    overrides = dict(overrides)
    model_kwargs = dict(overrides.pop("model", {}))  # arguments of make_model, e.g. on_off
    run_config = {**comparison.config, "strategy": name, "seed": seed, "hyper_parameters": hyper}
    n_exp = stream.n_experiences

    if resume:
        cached = read_json(run_json)
        if isinstance(cached, dict) and cached.get("config") == run_config:
            progress(f"{key}: finished earlier, results read from {run_json}")
            return cached
        stale = comparison.runs.get(key, {}).get("hyper_parameters")
        if stale is not None and stale != hyper:
            logger.warning("%s: hyper-parameters changed since the checkpoint; starting over", key)
            resume = False
    if not (resume and ckpt.exists()) and run_dir.exists():
        shutil.rmtree(run_dir)  # a fresh start: no stale events or checkpoints

    benchmark = avalanche_benchmark(stream)

    def build() -> SupervisedTemplate:
        torch.manual_seed(seed)
        model = make_model(stream, **model_kwargs)
        evaluator = make_evaluator(
            tensorboard_dir=run_dir, json_path=run_dir / "metrics.json", metadata=run_config
        )
        return make_strategy(
            name, model, evaluator=evaluator, device=device, **{"train_epochs": epochs, **overrides}
        )

    start_time = time.perf_counter()
    if resume and ckpt.exists():
        strategy, start = load_checkpoint(build, ckpt)
        progress(f"{key}: resuming after experience {start}/{n_exp} from {ckpt}")
    else:
        strategy, start = build(), 0
    comparison.update(key, status="running", next_experience=start, hyper_parameters=hyper)

    for k in range(start, n_exp):
        t0 = time.perf_counter()
        strategy.train(benchmark.train_stream[k])
        results = strategy.eval(benchmark.test_stream)
        save_checkpoint(strategy, ckpt)
        comparison.update(key, status="running", next_experience=k + 1)
        seen = [
            v for kk, v in results.items() if (m := _ACC_KEY.match(kk)) and int(m.group(1)) <= k
        ]
        acc = sum(seen) / len(seen) if seen else math.nan
        progress(
            f"{key}: experience {k + 1}/{n_exp}, mean accuracy on seen {acc:.3f} "
            f"({time.perf_counter() - t0:.1f} s)"
        )
        if after_experience is not None:
            after_experience(name, seed, k)

    json_logger = next(lg for lg in strategy.evaluator.loggers if isinstance(lg, JSONResultsLogger))
    summary = _run_summary(json_logger.results(), n_exp)
    run = {
        "config": run_config,
        **summary,
        **continual_metrics(summary["accuracy_matrix"]),
        **_weights_summary(strategy.model),
        "dale_typed": bool(overrides.get("dalify", hyper.get("dalify"))),
        "wall_seconds": time.perf_counter() - start_time,
    }
    run = _normal(run)
    write_json(run_json, run)
    # Only an unfinished run needs its checkpoint (megabytes: metric histories, replay buffers).
    ckpt.unlink(missing_ok=True)
    comparison.update(key, status="done", next_experience=n_exp)
    progress(
        f"{key}: done, final average accuracy {run['final_average_accuracy']:.3f}, "
        f"forgetting {_num(run['average_forgetting'])}, connectivity {run['connectivity']:.2f}"
    )
    return run


def _num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


# ----------------------------------------------------------------------------- comparison


def run_stream_comparison(
    stream: str = "split-digits",
    scenario: str = "task",
    strategies: Sequence[str] = DEFAULT_STRATEGIES,
    seeds: int | Sequence[int] = 5,
    epochs: int | None = None,
    logdir: str | Path = "runs/",
    resume: bool = False,
    quick: bool = False,
    progress: Progress | None = None,
    stream_kwargs: Mapping[str, Any] | None = None,
    device: str | torch.device | None = None,
    after_experience: AfterExperience | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Train ``strategies`` on the same stream and seeds; aggregate and write the results.

    Args:
        stream: a name of :func:`bioplastic.data.available_streams`.
        scenario: ``"class"``, ``"task"`` or ``"domain"``.
        strategies: names of :data:`strategies.avalanche.STRATEGY_NAMES` (or one comma list).
        seeds: a number ``n`` (seeds ``0..n-1``) or the seeds themselves (ints >= 0). Seed ``k``
            seeds the stream (class order, split), the model and the training.
        epochs: epochs per experience; default :data:`COMMON` ``["train_epochs"]`` (10), or 3
            with ``quick``.
        logdir: results go to ``logdir/<stream>-<scenario>/`` (module docstring).
        resume: reuse finished runs and continue interrupted ones from their checkpoints; the
            settings must match those in the folder's ``manifest.json``.
        quick: a short version (:data:`QUICK`: 3 epochs, at most 128 training and 64 test
            samples per experience).
        progress: called with one line per experience and per run (default: logged at INFO).
        stream_kwargs: more arguments of :func:`make_stream` (``n_experiences``, ``root`` for
            MNIST files, ``max_train_per_experience``, ...); a ``seed`` here fixes the stream
            for all seeds.
        device: ``None``: CUDA when available, else the CPU.
        after_experience: called as ``(strategy, seed, experience)`` after each experience is
            trained, evaluated and checkpointed; an exception raised there stops the comparison
            as a kill would (tests use it to check resuming).
        overrides: per strategy name, keyword arguments of :func:`make_strategy` that replace
            the defaults of :mod:`strategies.avalanche.config` (``optimizer_kwargs``,
            ``consolidate``, ``ewc_lambda``, ...) and ``model`` (arguments of
            :func:`make_model`, e.g. ``{"on_off": True}``), e.g. ``{"bio": {"optimizer_kwargs":
            {"noise": 0.1}}}``; for tuning scripts. Recorded with each run.

    Returns:
        ``{"format", "config", "runs": [...], "summary": {strategy: ...}, "targets": ...}``,
        also written to ``results.json`` (and :func:`format_markdown` to ``results.md``).

    Raises:
        ValueError: an unknown stream, scenario or strategy, a bad number, or (with
            ``resume``) a folder holding a comparison with other settings. Nothing is
            written before the arguments are checked.
    """
    if stream not in available_streams():
        raise ValueError(
            f"unknown stream {stream!r}; valid names: {', '.join(available_streams())}"
        )
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario must be one of {', '.join(SCENARIOS)}, got {scenario!r}")
    names = _strategy_list(strategies)
    seed_list = _seed_list(seeds)
    if epochs is None:
        epochs = QUICK["epochs"] if quick else COMMON["train_epochs"]
    epochs = check_int("epochs", epochs)
    if "packnet" in names:
        post = strategy_defaults("packnet")["strategy"]["post_prune_epochs"]
        if epochs <= post:
            raise ValueError(f"packnet needs epochs > post_prune_epochs ({post}), got {epochs}")
    if stream_kwargs is not None and not isinstance(stream_kwargs, Mapping):
        raise ValueError(f"stream_kwargs must be a mapping, got {type(stream_kwargs).__name__}")
    kwargs = dict(stream_kwargs or {})
    if "scenario" in kwargs:
        raise ValueError("give the scenario as scenario=, not in stream_kwargs")
    if quick:
        kwargs = {**{k: v for k, v in QUICK.items() if k != "epochs"}, **kwargs}
    if not isinstance(logdir, (str, Path)):
        raise ValueError(f"logdir must be a path, got {type(logdir).__name__}")
    if overrides is not None and not isinstance(overrides, Mapping):
        raise ValueError(f"overrides must be a mapping, got {type(overrides).__name__}")
    overrides = {k: dict(v) for k, v in (overrides or {}).items()}
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise ValueError(f"overrides for strategies not compared: {', '.join(unknown)}")
    device = resolve_device(device)
    report: Progress = progress if progress is not None else logger.info

    def build_stream(seed: int) -> Stream:
        return make_stream(stream, scenario=scenario, **{"seed": seed, **kwargs})

    streams = {seed_list[0]: build_stream(seed_list[0])}  # checks the stream arguments
    config = _normal(
        {
            "stream": stream,
            "scenario": scenario,
            "n_experiences": streams[seed_list[0]].n_experiences,
            "epochs": epochs,
            "quick": bool(quick),
            "stream_kwargs": {k: str(v) if isinstance(v, Path) else v for k, v in kwargs.items()},
        }
    )
    root = Path(logdir) / f"{stream}-{scenario}"
    comparison = _Comparison(root, config, resume=bool(resume))

    runs = []
    for seed in seed_list:
        data = streams.pop(seed) if seed in streams else build_stream(seed)
        for name in names:
            runs.append(
                _run_one(
                    comparison,
                    name,
                    seed,
                    data,
                    epochs=epochs,
                    resume=bool(resume),
                    device=device,
                    progress=report,
                    after_experience=after_experience,
                    overrides=overrides.get(name, {}),
                )
            )
    results = {
        "format": _FORMAT,
        "version": 1,
        "config": {**config, "strategies": names, "seeds": seed_list},
        "runs": runs,
        "summary": _aggregate(runs, names),
    }
    results["targets"] = check_targets(results)
    write_json(root / "results.json", results)
    write_atomic(root / "results.md", format_markdown(results))
    logger.info("wrote %s and %s", root / "results.json", root / "results.md")
    return results


def _aggregate(runs: Sequence[Mapping[str, Any]], names: Sequence[str]) -> dict[str, Any]:
    summary = {}
    for name in names:
        mine = [r for r in runs if r["config"]["strategy"] == name]
        n_exp = len(mine[0]["accuracy_matrix"])
        entry: dict[str, Any] = {"n_seeds": len(mine), "dale_typed": mine[0]["dale_typed"]}
        for key in (
            "final_average_accuracy",
            "average_forgetting",
            "bwt",
            "connectivity",
            "dale_violations",
            "sign_flips",
            "wall_seconds",
        ):
            entry[key] = mean_std([r[key] for r in mine])
        entry["dale_violations"]["max"] = max(int(r["dale_violations"]) for r in mine)
        entry["accuracy_matrix"] = _mean_matrix([r["accuracy_matrix"] for r in mine])
        entry["task_encoding"] = [
            {
                k: mean_std([r["task_encoding"][i][k] for r in mine])["mean"]
                for k in mine[0]["task_encoding"][i]
            }
            for i in range(n_exp)
        ]
        summary[name] = entry
    return summary


# ----------------------------------------------------------------------------- targets


def check_targets(results: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The issue's targets that apply to ``results`` (those whose strategies were run).

    Task-incremental: ``bio``'s final average accuracy at least that of ``packnet``, ``ewc``
    and ``si`` (means over seeds), its average forgetting <= 0.03, 0 Dale violations (every
    seed) and connectivity <= 0.30. Class-incremental: ``bio+replay`` above ``replay``.

    Returns:
        ``{target: {"value": ..., "threshold": ..., "pass": bool}}``.
    """
    summary = results["summary"]
    scenario = results["config"]["scenario"]
    checks: dict[str, dict[str, Any]] = {}

    def mean(name: str, key: str) -> float | None:
        return summary[name][key]["mean"]

    if scenario == "task" and "bio" in summary:
        acc = mean("bio", "final_average_accuracy")
        for other in ("packnet", "ewc", "si"):
            if other in summary:
                ref = mean(other, "final_average_accuracy")
                checks[f"bio accuracy >= {other}"] = {
                    "value": acc,
                    "threshold": ref,
                    "pass": acc >= ref,
                }
        forgetting = mean("bio", "average_forgetting")
        if forgetting is not None:
            limit = TARGETS["task_max_forgetting"]
            checks["bio forgetting <= 0.03"] = {
                "value": forgetting,
                "threshold": limit,
                "pass": forgetting <= limit,
            }
        violations = summary["bio"]["dale_violations"]["max"]
        checks["bio Dale violations == 0"] = {
            "value": violations,
            "threshold": TARGETS["task_max_dale_violations"],
            "pass": violations <= TARGETS["task_max_dale_violations"],
        }
        conn = mean("bio", "connectivity")
        limit = TARGETS["task_max_connectivity"]
        checks["bio connectivity <= 0.30"] = {
            "value": conn,
            "threshold": limit,
            "pass": conn <= limit,
        }
    if scenario == "class" and "bio+replay" in summary and "replay" in summary:
        value = mean("bio+replay", "final_average_accuracy")
        ref = mean("replay", "final_average_accuracy")
        checks["bio+replay accuracy > replay"] = {
            "value": value,
            "threshold": ref,
            "pass": value > ref,
        }
    return checks


# ----------------------------------------------------------------------------- markdown


def _val(value: float | int | None) -> str:
    return str(value) if isinstance(value, int) else _num(value)


def _pm(ms: Mapping[str, float | None], digits: int = 3) -> str:
    if ms.get("mean") is None:
        return "n/a"
    return f"{ms['mean']:.{digits}f} ± {ms['std']:.{digits}f}"


def format_markdown(results: Mapping[str, Any]) -> str:
    """The comparison as markdown: the main table, task encoding, targets, accuracy matrices."""
    cfg = results["config"]
    summary = results["summary"]
    kwargs = ", ".join(f"{k}={v}" for k, v in cfg["stream_kwargs"].items())
    lines = [
        f"## {cfg['stream']}, {cfg['scenario']}-incremental",
        "",
        f"{cfg['n_experiences']} experiences, {cfg['epochs']} epochs per experience, seeds "
        f"{cfg['seeds']}{', quick' if cfg['quick'] else ''}{', ' + kwargs if kwargs else ''}. "
        "Mean ± std over seeds. ACC: final average accuracy; F: average forgetting; BWT: "
        "backward transfer; connectivity and Dale violations of the final model (whole model, "
        "heads included).",
        "",
        "| strategy | ACC | F | BWT | connectivity | Dale violations (max) | Dale-typed "
        "| s / run |",
        "|---|---|---|---|---|---:|---|---:|",
    ]
    for name, s in summary.items():
        lines.append(
            f"| {name} | {_pm(s['final_average_accuracy'])} | {_pm(s['average_forgetting'])} "
            f"| {_pm(s['bwt'])} | {_pm(s['connectivity'], 2)} | {s['dale_violations']['max']} "
            f"| {'yes' if s['dale_typed'] else 'no'} | {_num(s['wall_seconds']['mean'], 1)} |"
        )
    lines += [
        "",
        "Backprop baselines that are not Dale-typed count as violations every unit whose "
        "outgoing weights have mixed signs.",
        "",
        "Task encoding after the last experience (means over seeds): capacity used/free "
        "(fraction of potential synapses some task recruited / left), mean Jaccard overlap of "
        "the synapses and of the units two tasks recruited, mean unit task-selectivity.",
        "",
        "| strategy | capacity used | capacity free | synapse overlap | unit overlap "
        "| selectivity |",
        "|---|---|---|---|---|---|",
    ]
    for name, s in summary.items():
        last = s["task_encoding"][-1]
        lines.append(
            f"| {name} | {_num(last.get('capacity_used'))} | {_num(last.get('capacity_free'))} "
            f"| {_num(last.get('synapse_overlap_mean'))} | {_num(last.get('unit_overlap_mean'))} "
            f"| {_num(last.get('selectivity_mean'))} |"
        )
    targets = results.get("targets") or {}
    if targets:
        lines += ["", "Targets:", ""]
        for label, check in targets.items():
            value, ref = check["value"], check["threshold"]
            mark = "pass" if check["pass"] else "MISS"
            lines.append(f"- {label}: {_val(value)} vs {_val(ref)} ({mark})")
    lines += [
        "",
        "Accuracy matrices R[i][j] (rows: after training experience i; columns: "
        "test experience j; means over seeds):",
        "",
    ]
    n = cfg["n_experiences"]
    for name, s in summary.items():
        lines += [
            f"{name}:",
            "",
            "| i \\ j | " + " | ".join(str(j) for j in range(n)) + " |",
            "|---" * (n + 1) + "|",
        ]
        for i, row in enumerate(s["accuracy_matrix"]):
            lines.append(f"| {i} | " + " | ".join(_num(v) for v in row) + " |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
