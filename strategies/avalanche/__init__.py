"""Avalanche integration: the bio rule as a strategy and a plugin, probes as metrics, streams.

* :class:`BioPlastic`: drop-in ``SupervisedTemplate`` strategy (swap it in for ``Naive``).
* :class:`BioRulePlugin`: the rule's experience-level behaviour for any strategy.
* :func:`make_strategy`: every compared strategy by name (defaults in :mod:`.config`).
* :class:`WeightProbeMetric`, :class:`ActivityProbeMetric`, :class:`TaskEncodingMetric`:
  the probes of :mod:`bioplastic.probes` as ``PluginMetric``\\ s; :func:`make_evaluator` wires
  them with TensorBoard and :class:`JSONResultsLogger`.
* :func:`avalanche_benchmark`: Avalanche benchmarks from :mod:`bioplastic.data` streams.
* :func:`save_checkpoint` / :func:`load_checkpoint`: resume between experiences.
* :class:`MultiHeadMLP`, :func:`make_model`: models for the offline streams.
"""

from strategies.avalanche.benchmarks import avalanche_benchmark, tensor_classification_dataset
from strategies.avalanche.checkpoint import load_checkpoint, save_checkpoint
from strategies.avalanche.config import (
    COMMON,
    PROBES,
    STRATEGY_DEFAULTS,
    STRATEGY_NAMES,
    strategy_defaults,
)
from strategies.avalanche.intrinsic import IntrinsicPlasticityPlugin
from strategies.avalanche.loggers import BioTensorboardLogger, JSONResultsLogger, make_evaluator
from strategies.avalanche.metrics import (
    ActivityProbeMetric,
    HistogramValue,
    MatrixValue,
    TaskEncodingMetric,
    WeightProbeMetric,
    probe_metrics,
    synapse_weights,
)
from strategies.avalanche.models import MultiHeadMLP, PackNetMultiHead, make_model
from strategies.avalanche.plugins import BioRulePlugin, DaleKeeper, DaleTypesPlugin
from strategies.avalanche.real import REAL_BENCHMARKS, real_benchmark
from strategies.avalanche.strategy import BioPlastic, make_strategy

__all__ = [
    "COMMON",
    "PROBES",
    "STRATEGY_DEFAULTS",
    "STRATEGY_NAMES",
    "ActivityProbeMetric",
    "BioPlastic",
    "BioRulePlugin",
    "BioTensorboardLogger",
    "DaleKeeper",
    "DaleTypesPlugin",
    "HistogramValue",
    "IntrinsicPlasticityPlugin",
    "JSONResultsLogger",
    "MatrixValue",
    "MultiHeadMLP",
    "PackNetMultiHead",
    "REAL_BENCHMARKS",
    "TaskEncodingMetric",
    "WeightProbeMetric",
    "avalanche_benchmark",
    "load_checkpoint",
    "make_evaluator",
    "make_model",
    "make_strategy",
    "probe_metrics",
    "real_benchmark",
    "save_checkpoint",
    "strategy_defaults",
    "synapse_weights",
    "tensor_classification_dataset",
]
