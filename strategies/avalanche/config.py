"""Default hyper-parameters of every strategy :func:`strategies.avalanche.make_strategy` offers.

One readable table. Every number is written once: the strategies' settings here, the rule's own
in :mod:`bioplastic` (a ``("bio", {...})`` entry lists only what differs from
:class:`bioplastic.BioRule`'s defaults). :func:`make_strategy` (and through it the CLI and the
benchmarks) reads :data:`STRATEGY_DEFAULTS`. :class:`BioPlastic` built by hand keeps Avalanche's
template defaults (mini-batches of 1, one epoch: a drop-in for ``Naive``; pass
``**COMMON`` or the values for ours) and, with :class:`BioRulePlugin`, uses
:data:`BIO_CONSOLIDATE`, the generic consolidation, which is
:meth:`bioplastic.BioRule.consolidate`'s own default (read from its signature), not the tuned
one of the ``"bio"`` entry: ``make_strategy("bio", model)`` gives the settings our stream
results use. Override through ``make_strategy(name, model, **overrides)`` rather than by
editing call sites. Values are for the small offline streams (digits, MNIST-1D): an MLP,
mini-batches of 32, Adam for the backprop baselines.

Keys of each entry:

``optimizer``
    ``(name, kwargs)`` for :func:`bioplastic.make_optimizer` (``bio``, ``eg``, ``sgd``,
    ``adam``, ``enforced``).
``strategy``
    keyword arguments of the Avalanche strategy or plugin (``ewc_lambda``, ``mem_size``, ...).
``consolidate``
    for the bio rule: ``fraction`` of present synapses consolidated after each experience and
    the plasticity ``factor`` they get (see :meth:`bioplastic.BioRule.consolidate`); ``None``
    disables consolidation.
``dalify``
    whether the model is given Dale's-law types and a lognormal initialisation first.
"""

from __future__ import annotations

import copy
import inspect
from typing import Any

from bioplastic import BioRule

__all__ = [
    "BIO_CONSOLIDATE",
    "BIO_RULE",
    "COMMON",
    "PROBES",
    "STRATEGY_DEFAULTS",
    "STRATEGY_NAMES",
    "strategy_defaults",
]

#: Arguments every strategy of :func:`make_strategy` gets (Avalanche's own defaults, which a
#: hand-built :class:`BioPlastic` keeps, are mini-batches of 1 and one epoch).
COMMON: dict[str, Any] = {
    "train_mb_size": 32,
    "eval_mb_size": 256,
    "train_epochs": 10,
}

#: Probe cadence and size (:func:`strategies.avalanche.probe_metrics`, ``make_evaluator``):
#: ``every`` training iterations the weight and activity scalars (0: only at experience ends
#: and evaluations), on a fixed probe batch of ``probe_size`` samples, the activity statistics
#: on at most ``max_units`` sampled units per layer. Chosen for the probes' cost against 10% of
#: train+eval per experience (benchmarks/strategy_overhead.py, split digits and MNIST-1D 3x512):
#: ``every`` went from 100 to 200 (half as many in-training points; each in-training activity
#: probe costs about 15% of an epoch on MNIST-1D 3x512), and ``eval_experiences`` "trained":
#: the activity probe after an evaluation measures only the experiences trained so far (15 of
#: the 25 it measured on a 5-experience stream; the others showed a network that had not seen
#: them). Unchanged: the weight and task-encoding probes at every experience end.
PROBES: dict[str, Any] = {
    "every": 200,
    "probe_size": 256,
    "max_units": 1024,
    "eval_experiences": "trained",
}

#: Consolidation after each experience of a hand-built :class:`BioPlastic` or
#: :class:`BioRulePlugin`: ``fraction``, ``factor`` and ``by`` of :meth:`BioRule.consolidate`,
#: whose defaults they are (one place: the rule's signature).
BIO_CONSOLIDATE: dict[str, Any] = {
    name: param.default
    for name, param in inspect.signature(BioRule.consolidate).parameters.items()
    if name != "self"
}

#: What the continual strategies change in :class:`bioplastic.BioRule`'s defaults (see the
#: ``"bio"`` entry below for why); a hand-built :class:`BioPlastic` uses them too.
BIO_RULE: dict[str, Any] = {"warmup": 0, "budget_rate": 0.1}

STRATEGY_DEFAULTS: dict[str, dict[str, Any]] = {
    # The bio rule (rule v2) with two stream-level changes, and BioRule.consolidate's default
    # consolidation after each experience:
    # * warmup 0: chosen when the warm-up counted each parameter's own steps (every new task
    #   head restarted it). It now counts the optimizer's steps; with BioRule's 200-step
    #   warm-up split MNIST-1D gives ACC 0.799 vs 0.811 and connectivity 0.52 vs 0.40
    #   (benchmarks/stream_warmup.py, 3 seeds), so the streams keep 0;
    # * budget_rate 0.1: E and I budgets fixed per unit (0.01 adapts over ~100 steps) keep a
    #   hidden unit from shifting its E/I balance, which a new task needs; at 0.1 homeostasis
    #   still acts within ~10 steps.
    # Task-IL, 5 seeds: split-mnist1d ACC 0.739 -> 0.806 (forgetting 0.032 -> 0.016),
    # split-digits 0.984 -> 0.993 (0.007 -> 0.001). (Measured before saturation=30 was
    # BioRule's default; the streams now run with it.)
    "bio": {
        "optimizer": ("bio", dict(BIO_RULE)),
        "consolidate": dict(BIO_CONSOLIDATE),
        "dalify": True,
    },
    # Backprop baselines: Adam, no Dale's law.
    "naive": {"optimizer": ("adam", {"lr": 1e-3}), "dalify": False},
    "ewc": {
        "optimizer": ("adam", {"lr": 1e-3}),
        "strategy": {"ewc_lambda": 100.0, "mode": "separate"},
        "dalify": False,
    },
    "si": {
        "optimizer": ("adam", {"lr": 1e-3}),
        "strategy": {"si_lambda": 1.0},
        "dalify": False,
    },
    "mas": {
        "optimizer": ("adam", {"lr": 1e-3}),
        "strategy": {"lambda_reg": 1.0, "alpha": 0.5},
        "dalify": False,
    },
    "lwf": {
        "optimizer": ("adam", {"lr": 1e-3}),
        "strategy": {"alpha": 1.0, "temperature": 2.0},
        "dalify": False,
    },
    "replay": {
        "optimizer": ("adam", {"lr": 1e-3}),
        "strategy": {"mem_size": 200},
        "dalify": False,
    },
    "packnet": {
        "optimizer": ("adam", {"lr": 1e-3}),
        # PackNet needs train_epochs > post_prune_epochs.
        "strategy": {"post_prune_epochs": 2, "prune_proportion": 0.5},
        "dalify": False,
    },
    # Exponentiated gradient on the same Dale-typed model: no structural plasticity, p = 1.
    "eg": {"optimizer": ("eg", {}), "consolidate": None, "dalify": True},
    # Explicit enforcement: Adam + sign projection + L1 + magnitude pruning on a Dale model.
    "enforced": {"optimizer": ("enforced", {"lr": 1e-3}), "dalify": True},
    # The bio rule added to Replay through BioRulePlugin, at the rule's defaults, without
    # consolidation (it costs the plasticity later classes need; the replay memory protects
    # old classes).
    "bio+replay": {
        "optimizer": ("bio", {}),
        "consolidate": None,
        "strategy": {"mem_size": 200},
        "dalify": True,
    },
}

#: Names accepted by ``make_strategy``, in the order of the comparison tables.
STRATEGY_NAMES: tuple[str, ...] = tuple(STRATEGY_DEFAULTS)


def strategy_defaults(name: str) -> dict[str, Any]:
    """A deep copy of ``STRATEGY_DEFAULTS[name]`` merged with :data:`COMMON`.

    Raises:
        ValueError: unknown name (the message lists the valid ones).
    """
    if name not in STRATEGY_DEFAULTS:
        raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGY_NAMES)}")
    entry = copy.deepcopy(STRATEGY_DEFAULTS[name])
    entry.setdefault("strategy", {})
    entry.setdefault("consolidate", None)
    entry["common"] = copy.deepcopy(COMMON)
    return entry
