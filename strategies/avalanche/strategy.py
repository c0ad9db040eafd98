"""``BioPlastic``: the bio rule as a drop-in Avalanche strategy, and ``make_strategy`` by name.

``BioPlastic`` is Avalanche's ``SupervisedTemplate`` wired with the rule, as ``EWC`` is the
template plus ``EWCPlugin``: it dalifies the model, builds a :class:`bioplastic.BioRule` and adds
:class:`BioRulePlugin` (consolidation between experiences, Dale types for new heads, the rule's
state kept across experiences); it overrides no template method, so
``Naive(model, BioRule(...), ..., plugins=[BioRulePlugin()])`` on a dalified model trains
exactly the same. Swap it in where you had ``Naive`` or ``EWC``::

    from avalanche.models import SimpleMLP
    from strategies.avalanche import BioPlastic, avalanche_benchmark

    strategy = BioPlastic(model=SimpleMLP(num_classes=10, input_size=64),
                          train_mb_size=32, train_epochs=5, eval_mb_size=256)
    for experience in benchmark.train_stream:
        strategy.train(experience)
        strategy.eval(benchmark.test_stream)

:func:`make_strategy` builds any of the compared strategies by name, with the defaults of
:mod:`strategies.avalanche.config`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from avalanche.core import BasePlugin
from avalanche.models.packnet import PackNetModel, PackNetModule
from avalanche.training import (
    EWC,
    MAS,
    LwF,
    Naive,
    PackNet,
    Replay,
    SynapticIntelligence,
)
from avalanche.training.plugins import EvaluationPlugin
from avalanche.training.plugins.evaluation import default_evaluator
from avalanche.training.templates import SupervisedTemplate
from torch import nn
from torch.optim import Optimizer

from bioplastic import BioRule, dalify
from bioplastic import make_optimizer as make_torch_optimizer
from bioplastic._checks import check_int
from bioplastic._device import resolve_device
from bioplastic.dale import check_dalify_args, looks_freshly_initialised
from strategies.avalanche.config import (
    BIO_CONSOLIDATE,
    BIO_RULE,
    STRATEGY_NAMES,
    strategy_defaults,
)
from strategies.avalanche.models import MultiHeadMLP, PackNetMultiHead
from strategies.avalanche.plugins import BioRulePlugin, DaleTypesPlugin, GrowSchedule

__all__ = ["BioPlastic", "STRATEGY_NAMES", "make_strategy", "resolve_device"]

EvaluatorArg = EvaluationPlugin | Callable[[], EvaluationPlugin] | None

#: Avalanche's own defaults (read from ``SupervisedTemplate``'s signature): a drop-in keeps them.
_TEMPLATE_DEFAULTS: dict[str, Any] = {
    name: inspect.signature(SupervisedTemplate.__init__).parameters[name].default
    for name in ("train_mb_size", "train_epochs", "eval_mb_size")
}


def _check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _consolidate_options(consolidate: Mapping[str, Any] | None) -> dict[str, Any]:
    if consolidate is None:
        return {"consolidate_fraction": 0.0}
    if not isinstance(consolidate, Mapping):
        raise TypeError(
            "consolidate must be None or a mapping with fraction, factor and by, "
            f"got {type(consolidate).__name__}"
        )
    unknown = set(consolidate) - {"fraction", "factor", "by"}
    if unknown:
        raise ValueError(
            f"unknown consolidate options {sorted(unknown)}; allowed: fraction, factor, by"
        )
    options = {**BIO_CONSOLIDATE, **consolidate}
    return {
        "consolidate_fraction": options["fraction"],
        "consolidate_factor": options["factor"],
        "consolidate_by": options["by"],
    }


class BioPlastic(SupervisedTemplate):
    """The bio rule as an Avalanche strategy: ``SupervisedTemplate`` + ``BioRule`` + plugin.

    Args:
        model: any torch model of Linear/Conv layers (e.g. Avalanche's ``SimpleMLP``, a
            :class:`strategies.avalanche.MultiHeadMLP` for task streams).
        optimizer: a :class:`bioplastic.BioRule`; default ``BioRule(model.parameters(),
            **rule_kwargs)``.
        criterion: loss (default ``nn.CrossEntropyLoss()``).
        train_mb_size, eval_mb_size, train_epochs: as in Avalanche, with Avalanche's defaults
            (``SupervisedTemplate``'s: 1, 1, 1), so ``BioPlastic`` drops in where ``Naive``
            was (periodic evaluation in iterations included). The settings our results use
            (32, 256, 10: :data:`strategies.avalanche.config.COMMON`) come with
            :func:`make_strategy` or by passing them.
        device: where to train; ``None``: CUDA if available, else the CPU.
        plugins: more Avalanche plugins (run before the bio rule's plugin).
        evaluator: an ``EvaluationPlugin`` (see :func:`strategies.avalanche.make_evaluator` for
            one with the probes), a factory, or ``None`` for none. Default: Avalanche's.
        eval_every: periodic evaluation as in Avalanche (-1: none).
        dalify_model: give the model Dale's-law types and a lognormal initialisation
            (:func:`bioplastic.dalify`) before training.
        dalify_kwargs: arguments of :func:`bioplastic.dalify` (``inh_fraction``, ``sigma``...).
        dalify_init: how :func:`bioplastic.dalify` treats the model's weights. ``"reinit"``:
            new types and lognormal magnitudes (for a fresh model). ``"keep"``: types by each
            presynaptic unit's majority sign, magnitudes kept, the minority entries removed
            (with a warning that counts them); for a trained model. ``"auto"`` (default):
            ``"reinit"`` when every layer still holds torch's default initialisation (all
            weights within ``+-1/sqrt(fan_in)``, see
            :func:`bioplastic.dale.looks_freshly_initialised`), else ``"keep"``, so a
            pretrained model is never wiped. Every argument is checked before the model is
            changed: a constructor that raises leaves it as it was.
        rule_kwargs: arguments of :class:`bioplastic.BioRule` when ``optimizer`` is None, on
            top of :data:`strategies.avalanche.config.BIO_RULE` (the continual strategies'
            changes to the rule's defaults, the same as ``make_strategy("bio")``'s).
        consolidate: ``dict(fraction=..., factor=..., by=...)`` for the consolidation after
            each experience (defaults in :data:`strategies.avalanche.config.BIO_CONSOLIDATE`);
            ``None`` disables it.
        grow_schedule: rule options per experience (see :class:`BioRulePlugin`).
        protect_consolidated: consolidated synapses are never eliminated.
        **base_kwargs: other ``SupervisedTemplate`` arguments (e.g. ``peval_mode``).

    The rule's per-synapse state (signs, plasticity, momentum, budgets, generator) survives every
    experience, including Avalanche's optimizer resets: :class:`BioRulePlugin` restores it at
    the start of each training experience (the plugin is ``strategy.bio_plugin``).

    Example::

        strategy = BioPlastic(model=SimpleMLP(num_classes=10, input_size=64), train_mb_size=32,
                              train_epochs=5, consolidate=dict(fraction=0.3, factor=0.1))
        strategy.train(benchmark.train_stream[0])
    """

    def __init__(
        self,
        *,
        model: nn.Module,
        optimizer: Optimizer | None = None,
        criterion: nn.Module | None = None,
        train_mb_size: int = _TEMPLATE_DEFAULTS["train_mb_size"],
        train_epochs: int = _TEMPLATE_DEFAULTS["train_epochs"],
        eval_mb_size: int | None = _TEMPLATE_DEFAULTS["eval_mb_size"],
        device: str | torch.device | None = None,
        plugins: Sequence[BasePlugin] | None = None,
        evaluator: EvaluatorArg = default_evaluator,
        eval_every: int = -1,
        dalify_model: bool = True,
        dalify_kwargs: Mapping[str, Any] | None = None,
        rule_kwargs: Mapping[str, Any] | None = None,
        consolidate: Mapping[str, Any] | None = BIO_CONSOLIDATE,
        grow_schedule: GrowSchedule | None = None,
        protect_consolidated: bool = True,
        dalify_init: str = "auto",
        **base_kwargs: Any,
    ):
        dalify_kwargs = _check_arguments(
            model, optimizer, criterion, plugins, dalify_model, dalify_kwargs, dalify_init,
            rule_kwargs, (train_mb_size, train_epochs, eval_mb_size),
        )  # fmt: skip
        device = resolve_device(device)
        self.bio_plugin = BioRulePlugin(
            **_consolidate_options(consolidate),
            grow_schedule=grow_schedule,
            protect_consolidated=protect_consolidated,
            dalify_kwargs={
                k: v for k, v in dalify_kwargs.items() if k not in ("seed", "skip", "init")
            },
            seed=int(dalify_kwargs.get("seed", 0) or 0),
        )
        # Every argument is valid: only now is the caller's model changed.
        if dalify_model:
            dalify(model, **dalify_kwargs)
        if optimizer is None:
            optimizer = BioRule(model.parameters(), **{**BIO_RULE, **dict(rule_kwargs or {})})
        plugins = [*(plugins or []), self.bio_plugin]
        super().__init__(
            model=model,
            optimizer=optimizer,
            criterion=nn.CrossEntropyLoss() if criterion is None else criterion,
            train_mb_size=train_mb_size,
            train_epochs=train_epochs,
            eval_mb_size=eval_mb_size,
            device=device,
            plugins=plugins,
            evaluator=evaluator,
            eval_every=eval_every,
            **base_kwargs,
        )


def _check_arguments(
    model, optimizer, criterion, plugins, dalify_model, dalify_kwargs, dalify_init, rule_kwargs,
    sizes,
) -> dict[str, Any]:  # fmt: skip
    """Validate :class:`BioPlastic`'s arguments before anything is changed; returns the
    ``dalify`` arguments with ``init`` resolved."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    for name, value in zip(("train_mb_size", "train_epochs", "eval_mb_size"), sizes, strict=True):
        if not (name == "eval_mb_size" and value is None):  # None: as train_mb_size (Avalanche)
            _check_positive_int(name, value)
    if not isinstance(dalify_model, bool):
        raise TypeError(f"dalify_model must be a bool, got {dalify_model!r}")
    if optimizer is not None and not isinstance(optimizer, BioRule):
        raise TypeError(
            f"BioPlastic needs a bioplastic.BioRule optimizer, got {type(optimizer).__name__}; "
            "to add the rule to another strategy use BioRulePlugin"
        )
    if optimizer is not None and rule_kwargs:
        raise ValueError("rule_kwargs only apply when no optimizer is given")
    if optimizer is None:
        options = dict(rule_kwargs or {})
        seed = options.pop("seed", None)  # validate_options covers the group options only
        if seed is not None:
            check_int("seed (or None)", seed, 0, 2**63 - 1)
        BioRule.validate_options(**options)
    if criterion is not None and not callable(criterion):
        raise TypeError(f"criterion must be a callable loss, got {criterion!r}")
    bad = [p for p in plugins or () if not isinstance(p, BasePlugin)]
    if bad:
        raise TypeError(f"plugins must be Avalanche plugins, got {bad!r}")
    if dalify_init not in ("auto", "reinit", "keep"):
        raise ValueError(f"dalify_init must be 'auto', 'reinit' or 'keep', got {dalify_init!r}")
    dalify_kwargs = dict(dalify_kwargs or {})
    if "init" in dalify_kwargs:
        raise ValueError("pass dalify_init=..., not dalify_kwargs['init']")
    if dalify_model:
        if dalify_init == "auto":
            dalify_init = "reinit" if looks_freshly_initialised(model) else "keep"
        dalify_kwargs["init"] = dalify_init
        check_dalify_args(model, **dalify_kwargs)
    return dalify_kwargs


# ---------------------------------------------------------------------------- by name


def _split_overrides(cfg: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Route ``overrides`` into the config sections; return the rest (SupervisedTemplate args)."""
    rest = {}
    for key, value in overrides.items():
        if key in cfg["common"]:
            cfg["common"][key] = value
        elif key in cfg["strategy"]:
            cfg["strategy"][key] = value
        elif key in ("consolidate", "dalify"):
            cfg[key] = value
        else:
            rest[key] = value
    return rest


def make_strategy(
    name: str,
    model: nn.Module,
    *,
    optimizer_kwargs: Mapping[str, Any] | None = None,
    plugins: Sequence[BasePlugin] | None = None,
    evaluator: EvaluatorArg = default_evaluator,
    device: str | torch.device | None = None,
    **overrides: Any,
) -> SupervisedTemplate:
    """Build a strategy by name with the defaults of :mod:`strategies.avalanche.config`.

    Names: ``bio`` (:class:`BioPlastic`), ``naive``, ``ewc``, ``si``, ``mas``, ``lwf``,
    ``replay``, ``packnet`` (Avalanche's strategies with Adam), ``eg`` (exponentiated gradient
    on a Dale model: :class:`BioPlastic` with ``make_optimizer("eg")``, no consolidation),
    ``enforced`` (Adam with sign projection, L1 and pruning on a Dale model) and ``bio+replay``
    (Replay with a BioRule and :class:`BioRulePlugin`).

    Args:
        name: one of :data:`STRATEGY_NAMES`.
        model: the model; dalified in place for ``bio``, ``eg``, ``enforced``, ``bio+replay``;
            for ``packnet`` wrapped in PackNet (a :class:`MultiHeadMLP` keeps its heads).
        optimizer_kwargs: override the optimizer arguments of the config (e.g. ``lr``).
        plugins: more Avalanche plugins.
        evaluator: as in Avalanche (default: Avalanche's default evaluator).
        device: ``None``: CUDA if available, else the CPU.
        **overrides: config values (``train_epochs``, ``train_mb_size``, ``eval_mb_size``,
            strategy arguments such as ``ewc_lambda`` or ``mem_size``, ``consolidate``,
            ``dalify``) and any other ``SupervisedTemplate`` argument (e.g. ``eval_every``).

    Example::

        strategy = make_strategy("ewc", make_model(stream), train_epochs=5, ewc_lambda=10.0)
    """
    cfg = strategy_defaults(name)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    rest = _split_overrides(cfg, dict(overrides))
    common = cfg["common"]
    for key in ("train_mb_size", "train_epochs", "eval_mb_size"):
        _check_positive_int(key, common[key])
    opt_name, opt_kwargs = cfg["optimizer"]
    opt_kwargs = {**opt_kwargs, **dict(optimizer_kwargs or {})}
    device = resolve_device(device)
    plugins = list(plugins or [])
    base = dict(common, device=device, evaluator=evaluator, **rest)

    if name in ("bio", "eg"):
        return _bio_strategy(name, model, cfg, opt_kwargs, plugins, base)
    if cfg["dalify"]:
        dalify(model)
    if name == "packnet":
        model = _packnet_model(model)
        post = cfg["strategy"]["post_prune_epochs"]
        if common["train_epochs"] <= post:
            raise ValueError(
                f"packnet needs train_epochs > post_prune_epochs ({post}), "
                f"got train_epochs={common['train_epochs']}"
            )
    optimizer = make_torch_optimizer(opt_name, model.parameters(), **opt_kwargs)
    criterion = nn.CrossEntropyLoss()
    args = dict(model=model, optimizer=optimizer, criterion=criterion, plugins=plugins, **base)
    if name == "naive":
        return Naive(**args)
    if name == "enforced":  # new heads get the types of the units they read
        return Naive(**{**args, "plugins": [*plugins, DaleTypesPlugin()]})
    if name == "bio+replay":
        bio = BioRulePlugin(**_consolidate_options(cfg["consolidate"]))
        return Replay(**{**args, "plugins": [*plugins, bio]}, **cfg["strategy"])
    constructors: dict[str, Callable[..., SupervisedTemplate]] = {
        "ewc": EWC,
        "si": SynapticIntelligence,
        "mas": MAS,
        "lwf": LwF,
        "replay": Replay,
        "packnet": PackNet,
    }
    strategy = constructors[name](**args, **cfg["strategy"])
    if name == "packnet":
        # Avalanche 0.6's PackNet passes ``plugins=[plugins, PackNetPlugin(...)]``: the user's
        # plugins end up in a nested list that is never called. Flatten it.
        strategy.plugins = _flat_plugins(strategy.plugins)
    return strategy


def _bio_strategy(
    name: str,
    model: nn.Module,
    cfg: dict[str, Any],
    opt_kwargs: dict[str, Any],
    plugins: list[BasePlugin],
    base: dict[str, Any],
) -> BioPlastic:
    """``bio`` (BioPlastic with the tuned rule) and ``eg`` (BioPlastic around an EG optimizer)."""
    if name == "bio":
        return BioPlastic(
            model=model,
            rule_kwargs=opt_kwargs,
            consolidate=cfg["consolidate"],
            dalify_model=bool(cfg["dalify"]),
            plugins=plugins,
            **base,
        )
    if cfg["dalify"]:
        dalify(model)
    return BioPlastic(
        model=model,
        optimizer=make_torch_optimizer("eg", model.parameters(), **opt_kwargs),
        consolidate=cfg["consolidate"],
        dalify_model=False,
        plugins=plugins,
        **base,
    )


def _flat_plugins(plugins: Sequence[Any]) -> list[Any]:
    flat = []
    for plugin in plugins:
        if isinstance(plugin, (list, tuple)):
            flat.extend(_flat_plugins(plugin))
        elif plugin is not None:
            flat.append(plugin)
    return flat


def _packnet_model(model: nn.Module) -> nn.Module:
    if isinstance(model, PackNetModule):
        return model
    if isinstance(model, MultiHeadMLP):
        return PackNetMultiHead.from_multi_head(model)
    return PackNetModel(model)
