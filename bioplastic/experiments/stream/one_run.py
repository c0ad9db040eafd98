"""One strategy on one seed: train, evaluate, checkpoint and resume; the comparison's manifest."""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from avalanche.core import SupervisedPlugin
from avalanche.training.templates import SupervisedTemplate

from bioplastic._progress import Stages, bar
from bioplastic.data import Stream
from bioplastic.experiments._common import read_json, write_json
from bioplastic.experiments.stream.markdown import _num
from bioplastic.experiments.stream.metrics import (
    _ACC_KEY,
    _run_summary,
    _weights_summary,
    avalanche_metrics,
    continual_metrics,
    forgetting_max,
)
from bioplastic.experiments.stream.real import AvalancheStream, avalanche_model
from strategies.avalanche.benchmarks import avalanche_benchmark
from strategies.avalanche.checkpoint import load_checkpoint, save_checkpoint
from strategies.avalanche.config import strategy_defaults
from strategies.avalanche.loggers import JSONResultsLogger, make_evaluator, to_jsonable
from strategies.avalanche.models import make_model
from strategies.avalanche.strategy import make_strategy

logger = logging.getLogger("bioplastic.experiments.stream")  # the name it had as one module

_MANIFEST_FORMAT = "bioplastic-stream-manifest"

Progress = Callable[[str], None]
AfterExperience = Callable[[str, int, int], None]


def _normal(data: Any) -> Any:
    """``data`` as it reads back from JSON (tuples become lists), for comparisons."""
    return json.loads(json.dumps(to_jsonable(data)))


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
    stream: Stream | AvalancheStream,
    *,
    epochs: int,
    resume: bool,
    device: torch.device,
    progress: Progress,
    after_experience: AfterExperience | None,
    overrides: Mapping[str, Any],
    trusted: bool = False,
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
            return _upgrade(cached, run_dir)
        stale = comparison.runs.get(key, {}).get("hyper_parameters")
        if stale is not None and stale != hyper:
            logger.warning("%s: hyper-parameters changed since the checkpoint; starting over", key)
            resume = False
    if not (resume and ckpt.exists()) and run_dir.exists():
        shutil.rmtree(run_dir)  # a fresh start: no stale events or checkpoints

    real = isinstance(stream, AvalancheStream)
    benchmark = stream.benchmark if real else avalanche_benchmark(stream)

    def build() -> SupervisedTemplate:
        torch.manual_seed(seed)
        if real:
            model = avalanche_model(stream, name, **model_kwargs)
        else:
            model = make_model(stream, **model_kwargs)
        evaluator = make_evaluator(
            tensorboard_dir=run_dir, json_path=run_dir / "metrics.json", metadata=run_config
        )
        return make_strategy(
            name, model, evaluator=evaluator, device=device, **{"train_epochs": epochs, **overrides}
        )

    start_time = time.perf_counter()
    if resume and ckpt.exists():
        strategy, start = load_checkpoint(build, ckpt, trusted=trusted)
        progress(f"{key}: resuming after experience {start}/{n_exp} from {ckpt}")
    else:
        strategy, start = build(), 0
    comparison.update(key, status="running", next_experience=start, hyper_parameters=hyper)

    stages = Stages()
    _train_experiences(strategy, benchmark, start, key, ckpt, comparison, progress, stages,
                       lambda k: after_experience and after_experience(name, seed, k))  # fmt: skip
    run = _finished_run(strategy, run_config, hyper, overrides, n_exp, start_time)
    write_json(run_json, run)
    # Only an unfinished run needs its checkpoint (megabytes: metric histories, replay buffers).
    ckpt.unlink(missing_ok=True)
    comparison.update(key, status="done", next_experience=n_exp)
    progress(
        f"{key}: done, final average accuracy {run['final_average_accuracy']:.3f}, "
        f"Avalanche forgetting {_num(run['avalanche_forgetting'])}, F (max) "
        f"{_num(run['forgetting_max'])}, connectivity {run['connectivity']:.2f} ({stages})"
    )
    return run


class _EpochBar(SupervisedPlugin):
    """Advances a progress bar after each training epoch (added only while training)."""

    def __init__(self, progress_bar: Any) -> None:
        super().__init__()
        self.bar = progress_bar

    def after_training_epoch(self, strategy: Any, *args: Any, **kwargs: Any) -> None:
        self.bar.update(1)


def _train(strategy: SupervisedTemplate, experience: Any, desc: str) -> None:
    """``strategy.train(experience)`` with a bar over its epochs; the bar's plugin is removed
    afterwards, so checkpoints never hold it."""
    with bar(total=getattr(strategy, "train_epochs", None), desc=desc, unit="epoch") as epochs:
        plugin = _EpochBar(epochs)
        strategy.plugins.append(plugin)
        try:
            strategy.train(experience)
        finally:
            strategy.plugins.remove(plugin)


def _train_experiences(
    strategy, benchmark, start, key, ckpt, comparison, progress, stages, after
) -> None:  # fmt: skip
    """Train experiences ``start..`` in order, evaluating and checkpointing after each; the
    time of each stage is added to ``stages``."""
    n_exp = len(benchmark.train_stream)
    for k in bar(range(start, n_exp), total=n_exp, initial=start, desc=key, unit="exp"):
        t0 = time.perf_counter()
        with stages("train"):
            _train(strategy, benchmark.train_stream[k], f"experience {k + 1}/{n_exp}")
        with stages("eval"):
            results = strategy.eval(benchmark.test_stream)
        with stages("checkpoint"):
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
        after(k)


def _finished_run(strategy, run_config, hyper, overrides, n_exp, start_time) -> dict[str, Any]:
    """The run's record: accuracy matrix, continual metrics, weight summary, wall time."""
    json_logger = next(lg for lg in strategy.evaluator.loggers if isinstance(lg, JSONResultsLogger))
    records = json_logger.results()
    summary = _run_summary(records, n_exp)
    run = {
        "config": run_config,
        **summary,
        **continual_metrics(summary["accuracy_matrix"]),
        **avalanche_metrics(records),
        **_weights_summary(strategy.model),
        "dale_typed": bool(overrides.get("dalify", hyper.get("dalify"))),
        "wall_seconds": time.perf_counter() - start_time,
    }
    return _normal(run)


def _upgrade(run: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """A run record written before the forgetting keys were renamed, in today's keys:
    ``average_forgetting`` becomes ``forgetting_max``, and Avalanche's forgetting and BWT are
    read from the run's ``metrics.json`` (forgetting ``None`` and the old BWT kept when it is
    gone)."""
    if "forgetting_max" in run and "avalanche_forgetting" in run:
        return run
    run = dict(run)
    run["forgetting_max"] = forgetting_max(run)
    run.pop("average_forgetting", None)
    records = read_json(run_dir / "metrics.json")
    logged = avalanche_metrics(records if isinstance(records, dict) else {})
    run["avalanche_forgetting"] = logged["avalanche_forgetting"]
    if logged["bwt"] is not None:
        run["bwt"] = logged["bwt"]
    return run
