"""Integrations of :mod:`bioplastic` with continual-learning and few-shot libraries.

* :mod:`strategies.avalanche`: the bio rule as an Avalanche strategy and plugin, probe metrics,
  benchmarks from the offline streams, checkpoints (needs ``avalanche-lib``).
* :mod:`strategies.fewshot`: learn2learn few-shot wrappers.

The main names of both are also available here (``strategies.BioPlastic``,
``strategies.BioMAML``); they are imported on first use, so ``import strategies`` needs
neither Avalanche nor learn2learn.
"""

from __future__ import annotations

import importlib
from typing import Any

_AVALANCHE_NAMES = (
    "ActivityProbeMetric",
    "BioPlastic",
    "BioRulePlugin",
    "JSONResultsLogger",
    "MultiHeadMLP",
    "STRATEGY_NAMES",
    "TaskEncodingMetric",
    "WeightProbeMetric",
    "avalanche_benchmark",
    "load_checkpoint",
    "make_evaluator",
    "make_model",
    "make_strategy",
    "save_checkpoint",
)

_FEWSHOT_NAMES = (
    "BioMAML",
    "ProtoEvaluator",
    "finetune_readout",
    "load_omniglot",
    "make_taskset",
    "run_fewshot_benchmark",
)

__all__ = [*_AVALANCHE_NAMES, *_FEWSHOT_NAMES]


def __getattr__(name: str) -> Any:
    if name in _AVALANCHE_NAMES:
        return getattr(importlib.import_module("strategies.avalanche"), name)
    if name in _FEWSHOT_NAMES:
        return getattr(importlib.import_module("strategies.fewshot"), name)
    raise AttributeError(f"module 'strategies' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
