"""Weight probes of every synaptic layer as an Avalanche metric (after each training experience)."""

from __future__ import annotations

import math
from typing import Any

import torch
from avalanche.evaluation.metric_results import MetricValue
from torch import Tensor, nn

from bioplastic import BioRule
from bioplastic import probes as P
from strategies.avalanche.metrics._base import (
    _check_every,
    _due,
    _layer_tag,
    _ProbeMetric,
    unit_dale_violations,
)
from strategies.avalanche.metrics.values import HistogramValue

__all__ = ["WeightProbeMetric"]


class WeightProbeMetric(_ProbeMetric):
    """Weight probes of every synaptic layer, once after each training experience.

    Emits ``probe/weights/<layer>/<stat>`` for the statistics of
    :func:`bioplastic.probes.weight_report` (``connectivity``, ``dale_violations``,
    ``sign_flips`` against the weights at the start of training, ``log_mag_*``,
    ``excitatory``, ``inhibitory``, ``ei_ratio``), totals over the model
    (``probe/weights/connectivity``, ``probe/weights/dale_violations``: units that break Dale's
    law anywhere, the heads of a multi-head model read as one layer (:func:`unit_dale_violations`),
    ``probe/weights/sign_flips``), with a BioRule optimizer ``probe/rule/eliminated``,
    ``probe/rule/grown``, ``probe/rule/consolidated`` and ``probe/rule/nonfinite_skips``, and
    (``histograms=True``) ``probe/weights/<layer>/weights`` and ``.../log_magnitude`` histograms
    of the present synapses.

    With ``every > 0`` the same scalars (no histograms) are also emitted every ``every``
    training iterations, so the TensorBoard curves show the weights change during training.
    """

    def __init__(self, histograms: bool = True, every: int = 0):
        super().__init__()
        if not isinstance(histograms, bool):
            raise TypeError(f"histograms must be a bool, got {histograms!r}")
        self.histograms = histograms
        self.every = _check_every(every)
        self.reference: dict[str, Tensor] = {}

    def _remember(self, model: nn.Module) -> None:
        for name, module in P.synaptic_layers(model):
            key = f"{name}.weight" if name else "weight"
            ref = self.reference.get(key)
            if ref is None or ref.shape != module.weight.shape:
                self.reference[key] = module.weight.detach().to("cpu", copy=True)

    def before_training(self, strategy: Any) -> None:
        self._remember(strategy.model)

    def before_training_exp(self, strategy: Any) -> None:
        self._remember(strategy.model)  # layers added since (new heads)

    @torch.no_grad()
    def after_training_iteration(self, strategy: Any) -> list[MetricValue] | None:
        """The cheap scalars during training: connectivity, Dale violations, sign flips (per
        layer and in total) and the rule's counts; the log-magnitude statistics (a sort of
        every weight) wait for the end of the experience."""
        if not _due(self.every, strategy):
            return None
        values: dict[str, Any] = {}
        total = present = flips = 0
        for name, module in P.synaptic_layers(strategy.model):
            w = module.weight.detach()
            tag = _layer_tag(name)
            n_present = int(torch.count_nonzero(w))
            bad = P.dale_violations(module)
            values[f"probe/weights/{tag}/connectivity"] = n_present / w.numel()
            values[f"probe/weights/{tag}/dale_violations"] = bad
            ref = self.reference.get(f"{name}.weight" if name else "weight")
            if ref is not None and ref.shape == w.shape:
                flips += P.sign_flips(w, ref.to(w.device))
            total, present = total + w.numel(), present + n_present
        values["probe/weights/connectivity"] = present / total if total else math.nan
        values["probe/weights/dale_violations"] = unit_dale_violations(strategy.model)
        values["probe/weights/sign_flips"] = flips
        values.update(_rule_counts(strategy))
        return self._emit(strategy, values)

    def after_training_exp(self, strategy: Any) -> list[MetricValue]:
        values = self._scalars(strategy)
        if self.histograms:
            for name, module in P.synaptic_layers(strategy.model):
                w = module.weight.detach()
                w = w[w != 0]
                tag = _layer_tag(name)
                values[f"probe/weights/{tag}/weights"] = HistogramValue(w)
                values[f"probe/weights/{tag}/log_magnitude"] = HistogramValue(torch.log(w.abs()))
        return self._emit(strategy, values)

    @torch.no_grad()
    def _scalars(self, strategy: Any) -> dict[str, Any]:
        report = self._report(strategy.model)
        values: dict[str, Any] = {}
        total = present = flips = 0
        for name, row in report.items():
            tag = _layer_tag(name)
            for key, value in row.items():
                if key in ("n_synapses", "n_present"):
                    continue
                values[f"probe/weights/{tag}/{key}"] = value
            total += row["n_synapses"]
            present += row["n_present"]
            flips += row.get("sign_flips", 0)
        values["probe/weights/connectivity"] = present / total if total else math.nan
        values["probe/weights/dale_violations"] = unit_dale_violations(strategy.model)
        values["probe/weights/sign_flips"] = flips
        values.update(_rule_counts(strategy))
        return values

    def _report(self, model: nn.Module) -> dict[str, dict[str, float]]:
        """:func:`bioplastic.probes.weight_report` against the reference weights; a layer whose
        weight equals the one of the last report (a multi-head model's other heads) keeps its
        row instead of being measured again."""
        cache = self.__dict__.setdefault("_rows", {})  # not in checkpoints (__getstate__)
        report = {}
        for name, module in P.synaptic_layers(model):
            weight = module.weight.detach().to("cpu", copy=True)  # kept, as the reference is
            sign = module._buffers.get("dale_sign")  # the types count too (Dale, E/I totals)
            sign = None if sign is None else sign.detach().to("cpu", copy=True)
            ref = self.reference.get(f"{name}.weight" if name else "weight")
            last = cache.get(name)
            if last is not None and last[2] is ref and _same(last[0], weight, last[1], sign):
                report[name] = last[3]
                continue
            on_device = ref.to(module.weight.device) if ref is not None else None
            report[name] = P.layer_report(module, on_device)
            cache[name] = (weight, sign, ref, report[name])
        return report

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_rows", None)  # a cache: a checkpoint need not hold another copy of the weights
        return state

    def __str__(self) -> str:
        return "WeightProbes"


def _same(weight: Tensor, now: Tensor, sign: Tensor | None, sign_now: Tensor | None) -> bool:
    if (sign is None) != (sign_now is None):
        return False
    return torch.equal(weight, now) and (sign is None or torch.equal(sign, sign_now))


def _rule_counts(strategy: Any) -> dict[str, int]:
    opt = getattr(strategy, "optimizer", None)
    if not isinstance(opt, BioRule):
        return {}
    counts = opt.structural_counts()
    return {
        "probe/rule/eliminated": counts["eliminated"],
        "probe/rule/grown": counts["grown"],
        "probe/rule/nonfinite_skips": counts["nonfinite_skips"],
        "probe/rule/consolidated": opt.consolidated_count(),
    }
