"""One JSON results file per run, and an evaluator with accuracy, forgetting and the probes.

:class:`JSONResultsLogger` is an Avalanche logger: it groups every metric value by training
experience (the values logged from the start of training experience ``k`` until the start of
experience ``k + 1``, evaluations included) and rewrites one JSON file atomically (temporary
file + rename) after each training experience and each evaluation, so the file on disk is always
complete and valid.

:func:`make_evaluator` builds an ``EvaluationPlugin`` with the usual continual-learning metrics,
the probe metrics and the loggers asked for (TensorBoard, JSON, text).
:class:`BioTensorboardLogger` is Avalanche's ``TensorboardLogger`` plus the run configuration
(text and hparams).

Example::

    evaluator = make_evaluator(tensorboard_dir="runs/bio", json_path="runs/bio/results.json")
    strategy = BioPlastic(model, evaluator=evaluator)
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from avalanche.evaluation.metric_results import MetricValue
from avalanche.evaluation.metrics import (
    accuracy_metrics,
    bwt_metrics,
    forgetting_metrics,
    loss_metrics,
)
from avalanche.logging import BaseLogger, InteractiveLogger, TensorboardLogger, TextLogger
from avalanche.training.plugins import EvaluationPlugin
from torch import Tensor

from bioplastic._io import write_atomic
from strategies.avalanche.config import PROBES
from strategies.avalanche.metrics import HistogramValue, MatrixValue, probe_metrics

__all__ = [
    "BioTensorboardLogger",
    "JSONResultsLogger",
    "make_evaluator",
    "run_config",
    "to_jsonable",
]

_FORMAT = "bioplastic-results"


def to_jsonable(value: Any) -> Any:
    """A metric value as JSON data, or ``None`` when it has no JSON form (images, figures).

    Numbers stay numbers (NaN and infinities become ``None``), :class:`MatrixValue` becomes
    nested lists, :class:`HistogramValue` its summary, small tensors lists.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return value
    if isinstance(value, MatrixValue):
        return value.tolist()
    if isinstance(value, HistogramValue):
        return {k: to_jsonable(v) for k, v in value.summary().items()}
    if isinstance(value, Tensor):
        if value.numel() == 1:
            return to_jsonable(value.item())
        if value.numel() <= 10_000:
            return to_jsonable(value.tolist())
        return None
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    return None


class JSONResultsLogger(BaseLogger):
    """Writes all metrics of a run, per training experience, to one JSON file.

    File layout::

        {"format": "bioplastic-results", "version": 1, "metadata": {...},
         "before_training": {metric: value, ...},
         "experiences": [{"experience": 0, "metrics": {metric: value, ...}}, ...]}

    Within an experience the last value of each metric is kept (e.g. the final epoch's loss,
    the last evaluation's accuracies). The file is rewritten atomically after each training
    experience and each evaluation.

    Args:
        path: the JSON file (parent folders are created).
        metadata: JSON-able run description stored under ``metadata`` (strategy, seed, ...).

    The logger's records are part of a checkpoint (:meth:`state_dict`), so a resumed run still
    writes one file covering all experiences.
    """

    def __init__(self, path: str | os.PathLike[str], metadata: Mapping[str, Any] | None = None):
        super().__init__()
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
        self.path = Path(path)
        if self.path.exists() and self.path.is_dir():
            raise ValueError(f"path must be a file, {self.path} is a folder")
        self.metadata = to_jsonable(dict(metadata or {}))
        self.initial: dict[str, Any] = {}
        self.experiences: list[dict[str, Any]] = []
        self._current: int | None = None
        self._pending: list[MetricValue] = []

    # --------------------------------------------------------------- logger interface
    def log_metrics(self, metric_values: list[MetricValue]) -> None:
        self._pending.extend(metric_values)

    def _bucket(self) -> dict[str, Any]:
        if self._current is None:
            return self.initial
        while len(self.experiences) <= self._current:
            self.experiences.append({"experience": len(self.experiences), "metrics": {}})
        return self.experiences[self._current]["metrics"]

    def _flush(self) -> None:
        bucket = self._bucket()
        for mval in self._pending:
            items = mval.value.items() if isinstance(mval.value, dict) else [(None, mval.value)]
            for key, value in items:
                name = mval.name if key is None else f"{mval.name}/{key}"
                data = to_jsonable(value)
                if data is not None or isinstance(value, (int, float)):
                    bucket[name] = data
        self._pending = []

    def before_training_exp(self, strategy: Any, metric_values: list[MetricValue]) -> None:
        self._pending = [v for v in self._pending if v not in metric_values]
        self._flush()
        self._current = int(strategy.clock.train_exp_counter)
        self._pending = list(metric_values)
        self._flush()

    def after_training_epoch(self, strategy: Any, metric_values: list[MetricValue]) -> None:
        self._flush()

    def after_training_exp(self, strategy: Any, metric_values: list[MetricValue]) -> None:
        self._flush()
        self.write()

    def after_eval_exp(self, strategy: Any, metric_values: list[MetricValue]) -> None:
        self._flush()

    def after_eval(self, strategy: Any, metric_values: list[MetricValue]) -> None:
        self._flush()
        self.write()

    def after_training(self, strategy: Any, metric_values: list[MetricValue]) -> None:
        self._flush()
        self.write()

    # --------------------------------------------------------------- output
    def results(self) -> dict[str, Any]:
        """The JSON document (a dict) as it would be written now."""
        return {
            "format": _FORMAT,
            "version": 1,
            "metadata": self.metadata,
            "before_training": dict(self.initial),
            "experiences": [
                {"experience": e["experience"], "metrics": dict(e["metrics"])}
                for e in self.experiences
            ],
        }

    def write(self) -> None:
        """Write the results file atomically."""
        text = json.dumps(self.results(), indent=1, allow_nan=False, sort_keys=False)
        write_atomic(self.path, text)

    # --------------------------------------------------------------- checkpointing
    def state_dict(self) -> dict[str, Any]:
        """Everything logged so far (for checkpoints)."""
        self._flush()
        return {
            "before_training": dict(self.initial),
            "experiences": [
                {"experience": e["experience"], "metrics": dict(e["metrics"])}
                for e in self.experiences
            ],
            "current": self._current,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.initial = dict(state["before_training"])
        self.experiences = [
            {"experience": e["experience"], "metrics": dict(e["metrics"])}
            for e in state["experiences"]
        ]
        self._current = state["current"]
        self._pending = []


class BioTensorboardLogger(TensorboardLogger):
    """Avalanche's ``TensorboardLogger`` that also records the run configuration.

    At the start of the first training it writes the configuration (``config`` merged with
    what the strategy says about itself: class, model, optimizer and its hyper-parameters,
    mini-batch sizes, epochs, device, plugins) as a text summary (``config``, a Markdown table)
    and as TensorBoard hparams (the HPARAMS tab; nested keys joined with ``/``, values that
    are not numbers, strings or booleans written as text), with the stream accuracy and
    forgetting as the hparams' metrics. Everything else is Avalanche's logger.

    Args:
        tb_log_dir: the TensorBoard folder.
        config: JSON-able run description (strategy name, seed, stream, ...).
    """

    def __init__(self, tb_log_dir: str | os.PathLike[str], config: Mapping[str, Any] | None = None):
        super().__init__(tb_log_dir=tb_log_dir)
        self.config = dict(config or {})
        self.config_written = False

    def before_training(self, strategy: Any, metric_values: list[MetricValue]) -> None:
        parent = getattr(super(), "before_training", None)
        if parent is not None:
            parent(strategy, metric_values)
        if not self.config_written:
            self.write_config(run_config(strategy, self.config))

    def write_config(self, config: Mapping[str, Any]) -> None:
        """Write ``config`` (flat: ``{key: value}``) as text and as hparams."""
        from torch.utils.tensorboard.summary import hparams

        rows = "\n".join(f"| {k} | {v} |" for k, v in config.items())
        self.writer.add_text("config", "| key | value |\n|---|---|\n" + rows, global_step=0)
        values = {
            k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in config.items()
        }
        metrics = {name: 0.0 for name in _HPARAM_METRICS}
        writer = self.writer._get_file_writer()
        for summary in hparams(values, metrics):
            writer.add_summary(summary)
        self.writer.flush()
        self.config_written = True


#: Scalars the HPARAMS tab shows next to the configuration.
_HPARAM_METRICS = (
    "Top1_Acc_Stream/eval_phase/test_stream/Task000",
    "StreamForgetting/eval_phase/test_stream",
)


def run_config(strategy: Any, config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A flat description of a run: ``config`` (nested keys joined with ``/``) plus what the
    strategy says about itself (``strategy``, ``model``, ``optimizer`` and its scalar
    hyper-parameters as ``optimizer/<name>``, ``train_mb_size``, ``train_epochs``,
    ``eval_mb_size``, ``device``, ``plugins``). Keys of ``config`` win."""
    found: dict[str, Any] = {
        "strategy": type(strategy).__name__,
        "model": type(getattr(strategy, "model", None)).__name__,
    }
    for key in ("train_mb_size", "train_epochs", "eval_mb_size", "device"):
        if hasattr(strategy, key):
            found[key] = to_jsonable(getattr(strategy, key)) or str(getattr(strategy, key))
    opt = getattr(strategy, "optimizer", None)
    if opt is not None:
        found["optimizer"] = type(opt).__name__
        group = opt.param_groups[0] if getattr(opt, "param_groups", None) else {}
        for key, value in group.items():
            if key != "params" and isinstance(value, (bool, int, float, str, tuple)):
                found[f"optimizer/{key}"] = value if not isinstance(value, tuple) else str(value)
    plugins = [type(p).__name__ for p in getattr(strategy, "plugins", ())]
    found["plugins"] = ", ".join(p for p in plugins if p not in ("EvaluationPlugin", "Clock"))
    return {**found, **_flatten(to_jsonable(dict(config or {})))}


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(data, Mapping):
        return {prefix: data if data is not None else "None"}
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(_flatten(value, name))
        elif isinstance(value, list):
            flat[name] = json.dumps(value)
        else:
            flat[name] = value if value is not None else "None"
    return flat


def make_evaluator(
    *,
    probes: bool = True,
    tensorboard_dir: str | os.PathLike[str] | None = None,
    json_path: str | os.PathLike[str] | None = None,
    metadata: Mapping[str, Any] | None = None,
    interactive: bool = False,
    text_file: Any = None,
    loggers: Sequence[BaseLogger] = (),
    histograms: bool = True,
    figures: bool | str = True,
    probe_size: int = PROBES["probe_size"],
    probe_every: int = PROBES["every"],
    max_units: int | None = PROBES["max_units"],
    **probe_kwargs: Any,
) -> EvaluationPlugin:
    """An ``EvaluationPlugin`` with accuracy, loss, forgetting, BWT and the probe metrics.

    Metrics: accuracy per training epoch (``Top1_Acc_Epoch``), per experience and stream; loss
    per epoch, experience and stream; Avalanche's forgetting and BWT per experience and stream
    (``ExperienceForgetting/eval_phase/test_stream/Task<ttt>/Exp<eee>``,
    ``StreamForgetting/eval_phase/test_stream``, ``ExperienceBWT/...``, ``StreamBWT/...``:
    accuracy when the experience was last trained minus the current one); with ``probes``,
    :func:`probe_metrics`.

    Args:
        probes: add the weight, activity and task-encoding probes.
        tensorboard_dir: add a :class:`BioTensorboardLogger` writing there (scalars,
            histograms, labelled heatmaps, the run configuration as text and hparams).
        json_path: add a :class:`JSONResultsLogger` writing there.
        metadata: the run's description, stored in the JSON file and in TensorBoard's config.
        interactive: add Avalanche's ``InteractiveLogger`` (progress bars).
        text_file: add a ``TextLogger`` writing to this open file.
        loggers: more loggers.
        histograms, figures, probe_size, max_units, **probe_kwargs: passed to
            :func:`probe_metrics` (``figures=True``: labelled heatmaps).
        probe_every: training iterations between the probes' scalars during training
            (:func:`probe_metrics`'s ``every``; 0: at experience ends and evaluations only).
    """
    all_loggers: list[BaseLogger] = list(loggers)
    if tensorboard_dir is not None:
        all_loggers.append(BioTensorboardLogger(tensorboard_dir, metadata))
    if json_path is not None:
        all_loggers.append(JSONResultsLogger(json_path, metadata))
    if interactive:
        all_loggers.append(InteractiveLogger())
    if text_file is not None:
        all_loggers.append(TextLogger(text_file))
    metrics: list[Any] = [
        *accuracy_metrics(epoch=True, experience=True, stream=True),
        *loss_metrics(epoch=True, experience=True, stream=True),
        *forgetting_metrics(experience=True, stream=True),
        *bwt_metrics(experience=True, stream=True),
    ]
    if probes:
        metrics += probe_metrics(
            histograms=histograms, figures=figures, probe_size=probe_size, every=probe_every,
            max_units=max_units, **probe_kwargs,
        )  # fmt: skip
    return EvaluationPlugin(*metrics, loggers=all_loggers)
