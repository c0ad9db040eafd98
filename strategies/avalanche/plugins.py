"""``BioRulePlugin``: the bio rule's experience-level behaviour, for any Avalanche strategy.

The per-step rule is the optimizer (:class:`bioplastic.BioRule`); what happens between
experiences lives here, as Avalanche plugins do it (compare ``EWCPlugin``):

* after each training experience the most important synapses are consolidated
  (:meth:`BioRule.consolidate`: their plasticity is multiplied by a factor < 1 and, with
  ``protect_consolidated``, they are no longer eliminated);
* an optional growth schedule changes the rule's structural options per experience;
* synaptic layers that appear during training (a new task head of a multi-head model, a grown
  classifier) get Dale's-law types when they are added;
* the rule's per-synapse state and random generator survive every experience, even when another
  plugin rebuilds the optimizer (PackNet does, before each experience) or the strategy resets
  the optimizer's state (Avalanche does before the first experience; ``make_optimizer(
  reset_optimizer_state=True)``): the state is restored before the next training experience.

Example::

    from avalanche.training import Replay
    from strategies.avalanche import BioRulePlugin

    # Replay + the bio rule: the plugin swaps Adam for a BioRule and dalifies the model
    strategy = Replay(model=model, optimizer=torch.optim.Adam(model.parameters()),
                      criterion=nn.CrossEntropyLoss(), mem_size=200, train_mb_size=32,
                      plugins=[BioRulePlugin(replace_optimizer=True)])
"""

from __future__ import annotations

import logging
import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from avalanche.core import SupervisedPlugin
from torch import nn

from bioplastic import BioRule, dale_init_, dalify, synaptic_layers
from strategies.avalanche.config import BIO_CONSOLIDATE, BIO_RULE
from strategies.avalanche.models import head_groups

__all__ = ["BioRulePlugin", "DaleKeeper", "DaleTypesPlugin", "GrowSchedule"]

logger = logging.getLogger(__name__)

#: A growth schedule: BioRule group options per training experience (see BioRulePlugin).
GrowSchedule = (
    Mapping[int, Mapping[str, Any]]
    | Sequence[Mapping[str, Any] | None]
    | Callable[[int], Mapping[str, Any] | None]
)

_DALIFY_KEYS = ("inh_fraction", "sigma", "gain", "connectivity", "balance")


class DaleKeeper:
    """Gives Dale's-law types to synaptic layers that appear after a model was dalified.

    The first call of :meth:`update` records the model: layers without a ``dale_sign`` buffer
    then are left alone for good (e.g. layers the user skipped), and nothing at all is done if
    no layer is Dale-typed. Later calls dalify every *new* synaptic layer (a new task head);
    a layer that was replaced by a larger copy of itself (Avalanche's ``IncrementalClassifier``
    growing) keeps its presynaptic types and its old rows, and only the new rows are
    initialised. Seeds are derived from the layer names, so runs are reproducible.

    Args:
        seed: base seed for the initialisation of new layers.
        dalify_kwargs: ``inh_fraction``, ``sigma``, ``gain``, ``connectivity``, ``balance`` as
            for :func:`bioplastic.dalify`.
    """

    def __init__(self, seed: int = 0, dalify_kwargs: Mapping[str, Any] | None = None):
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {seed!r}")
        dalify_kwargs = dict(dalify_kwargs or {})
        unknown = set(dalify_kwargs) - set(_DALIFY_KEYS)
        if unknown:
            raise ValueError(f"unknown dalify_kwargs {sorted(unknown)}; allowed: {_DALIFY_KEYS}")
        self.seed = seed
        self.dalify_kwargs = dalify_kwargs
        self.started = False
        self.active = False
        self.exempt: set[str] = set()
        self.known: dict[str, tuple[torch.Tensor, int]] = {}

    def _seed_for(self, name: str) -> int:
        return (self.seed + zlib.crc32(name.encode())) % (2**31)

    @torch.no_grad()
    def update(self, model: nn.Module) -> list[str]:
        """Dalify the synaptic layers of ``model`` that are new since the last call.

        Returns the names of the layers that were given types now. Also re-attaches every
        layer's ``weight.dale_sign`` to its ``dale_sign`` buffer (``module.to(device)``
        replaces buffers, and :class:`bioplastic.BioRule` reads the attribute).
        """
        layers = synaptic_layers(model)
        if not self.started:
            self.started = True
            self.active = any("dale_sign" in m._buffers for _, m in layers)
            self.exempt = {name for name, m in layers if "dale_sign" not in m._buffers}
        added = []
        for name, module in layers:
            if "dale_sign" in module._buffers:
                module.weight.dale_sign = module.dale_sign
            elif self.active and name not in self.exempt:
                self._dalify_layer(name, module, _sibling_types(model, name, module))
                added.append(name)
            if "dale_sign" in module._buffers:
                self.known[name] = (module.dale_sign.detach().cpu().clone(), module.weight.shape[0])
        if added:
            logger.debug("gave Dale types to new layers %s", added)
        return added

    def _dalify_layer(self, name: str, module: nn.Module, sibling: torch.Tensor | None) -> None:
        old = self.known.get(name)
        weight = module.weight
        if old is None or old[0].numel() != weight.shape[1] or old[1] > weight.shape[0]:
            if sibling is None:
                dalify(module, seed=self._seed_for(name), **self.dalify_kwargs)
                return
            # a new head reads the units its sibling heads read: their types, not new ones
            old = (sibling.detach().to("cpu", copy=True), 0)
        # A grown copy of a known layer (or a new head): keep its types and old rows, initialise
        # the new rows.
        sign, n_old = old
        sign = sign.to(device=weight.device, dtype=weight.dtype)
        module.register_buffer("dale_sign", sign)
        weight.dale_sign = module.dale_sign
        if weight.shape[0] > n_old:
            gen = torch.Generator().manual_seed(self._seed_for(f"{name}:{weight.shape[0]}"))
            kwargs = {k: v for k, v in self.dalify_kwargs.items() if k != "inh_fraction"}
            rows = torch.empty_like(weight[n_old:], device="cpu")
            dale_init_(rows, sign.cpu(), generator=gen, **kwargs)
            weight[n_old:] = rows.to(weight.device)
            if getattr(module, "bias", None) is not None:
                module.bias[n_old:] = 0.0


class DaleTypesPlugin(SupervisedPlugin):
    """Dale's-law types for synaptic layers added during training (a task's new head), for a
    strategy with another optimizer on a dalified model (the ``enforced`` baseline);
    :class:`BioRulePlugin` does the same for the bio rule. Uses a :class:`DaleKeeper`.

    Args:
        seed, dalify_kwargs: as for :class:`DaleKeeper`.
    """

    def __init__(self, seed: int = 0, dalify_kwargs: Mapping[str, Any] | None = None):
        super().__init__()
        self.keeper = DaleKeeper(seed, dalify_kwargs)

    def before_training(self, strategy: Any, *args: Any, **kwargs: Any) -> None:
        self.keeper.update(strategy.model)

    def before_training_exp(self, strategy: Any, *args: Any, **kwargs: Any) -> None:
        self.keeper.update(strategy.model)  # after the template's model adaptation

    def before_eval_exp(self, strategy: Any, *args: Any, **kwargs: Any) -> None:
        self.keeper.update(strategy.model)


def _sibling_types(model: nn.Module, name: str, module: nn.Module) -> torch.Tensor | None:
    """The presynaptic types of the Dale-typed heads of the multi-head classifier that ``name``
    is a head of (:func:`head_groups`), or None: every head reads the same units, and a unit
    has one type whatever it projects to (Dale's law)."""
    for group in head_groups(model):
        if name not in (n for n, _ in group):
            continue
        for other_name, other in group:
            sign = other._buffers.get("dale_sign")
            if other_name != name and sign is not None:
                if sign.numel() == module.weight.shape[1]:
                    return sign
    return None


def _schedule_for(schedule: GrowSchedule | None, experience: int) -> Mapping[str, Any] | None:
    if schedule is None:
        return None
    if callable(schedule):
        return schedule(experience)
    if isinstance(schedule, Mapping):
        return schedule.get(experience)
    return schedule[experience] if experience < len(schedule) else None


def _check_schedule(schedule: object) -> None:
    if schedule is None or callable(schedule):
        return
    if isinstance(schedule, Mapping):
        entries = schedule.items()
    elif isinstance(schedule, Sequence) and not isinstance(schedule, str):
        entries = enumerate(schedule)
    else:
        raise TypeError(
            "grow_schedule must be None, a mapping {experience: options}, a list of options per "
            f"experience or a callable experience -> options, got {type(schedule).__name__}"
        )
    for key, value in entries:
        if isinstance(key, bool) or not isinstance(key, int) or key < 0:
            raise ValueError(f"grow_schedule keys must be experience indices >= 0, got {key!r}")
        if value is not None and not isinstance(value, Mapping):
            raise TypeError(f"grow_schedule[{key}] must be a mapping of BioRule options or None")


class BioRulePlugin(SupervisedPlugin):
    """Experience-level behaviour of the bio rule, for any strategy whose optimizer is a BioRule.

    Args:
        consolidate_fraction: fraction in [0, 1] of each layer's present synapses consolidated
            after every training experience (0 disables consolidation).
        consolidate_factor: plasticity factor in (0, 1] the consolidated synapses get.
        consolidate_by: ``"magnitude"`` (largest ``|w|``) or ``"importance"`` (path integral of
            ``-g * dw`` over the experience; switches ``track_importance`` on).
        grow_schedule: BioRule options per training experience, e.g.
            ``{0: {"grow_every": 0}, 1: {"grow_every": 20, "grow_fraction": 0.01}}``; a list
            (entry ``i`` for experience ``i``) or a callable ``experience -> options`` also work.
            Options apply to every param group from that experience on (until changed).
        protect_consolidated: consolidated synapses are never eliminated.
        replace_optimizer: if the strategy's optimizer is not a BioRule, replace it by
            ``BioRule(model.parameters(), **rule_kwargs)`` at the start of training (and
            dalify the model if it has no Dale types yet) instead of raising ``TypeError``.
        rule_kwargs: BioRule arguments for ``replace_optimizer``, on top of
            :data:`strategies.avalanche.config.BIO_RULE` (the continual strategies' settings).
        dalify_model: with ``replace_optimizer``, dalify a model that has no Dale types.
        dalify_kwargs: arguments of :func:`bioplastic.dalify` (also used for new layers).
        seed: seed for the types of layers added later (new heads).

    Attributes:
        history: one dict per training experience: ``experience``, ``consolidated``,
            ``consolidated_total`` and the rule's ``eliminated``/``grown`` totals.
        keeper: the :class:`DaleKeeper` typing new layers.

    Example::

        strategy = Naive(model=dalify(model), optimizer=BioRule(model.parameters()),
                         criterion=nn.CrossEntropyLoss(), train_mb_size=32,
                         plugins=[BioRulePlugin(consolidate_fraction=0.3)])
    """

    def __init__(
        self,
        consolidate_fraction: float = BIO_CONSOLIDATE["fraction"],
        consolidate_factor: float = BIO_CONSOLIDATE["factor"],
        consolidate_by: str = BIO_CONSOLIDATE["by"],
        *,
        grow_schedule: GrowSchedule | None = None,
        protect_consolidated: bool = True,
        replace_optimizer: bool = False,
        rule_kwargs: Mapping[str, Any] | None = None,
        dalify_model: bool = True,
        dalify_kwargs: Mapping[str, Any] | None = None,
        seed: int = 0,
    ):
        super().__init__()
        for name, value, lo_open in (
            ("consolidate_fraction", consolidate_fraction, False),
            ("consolidate_factor", consolidate_factor, True),
        ):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            ok = ok and math.isfinite(value) and (0 < value <= 1 if lo_open else 0 <= value <= 1)
            if not ok:
                interval = "(0, 1]" if lo_open else "[0, 1]"
                raise ValueError(f"{name} must be a number in {interval}, got {value!r}")
        if consolidate_by not in BioRule.CONSOLIDATE_BY:
            raise ValueError(
                f"consolidate_by must be one of {BioRule.CONSOLIDATE_BY}, got {consolidate_by!r}"
            )
        for name, value in (
            ("protect_consolidated", protect_consolidated),
            ("replace_optimizer", replace_optimizer),
            ("dalify_model", dalify_model),
        ):
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be a bool, got {value!r}")
        _check_schedule(grow_schedule)
        self.consolidate_fraction = float(consolidate_fraction)
        self.consolidate_factor = float(consolidate_factor)
        self.consolidate_by = consolidate_by
        self.grow_schedule = grow_schedule
        self.protect_consolidated = protect_consolidated
        self.replace_optimizer = replace_optimizer
        self.rule_kwargs = dict(rule_kwargs or {})
        self.dalify_model = dalify_model
        self.dalify_kwargs = dict(dalify_kwargs or {})
        self.keeper = DaleKeeper(seed, self.dalify_kwargs)
        self.history: list[dict[str, int]] = []
        self._rule: BioRule | None = None
        # The rule's per-parameter state as last seen: restored if the strategy resets it.
        self._kept_state: Mapping[torch.Tensor, Any] | None = None

    # ------------------------------------------------------------------ optimizer handling
    def install(self, strategy: Any, dalify_model: bool | None = None) -> BioRule:
        """Replace the strategy's optimizer by a BioRule over all model parameters.

        Dalifies the model first if ``dalify_model`` (default: the plugin's setting) and the
        model has no Dale-typed layer. Used by ``replace_optimizer=True`` and when a checkpoint
        of such a run is loaded.
        """
        model = strategy.model
        if dalify_model is None:
            dalify_model = self.dalify_model
        if dalify_model and not any("dale_sign" in m._buffers for _, m in synaptic_layers(model)):
            dalify(model, seed=self.keeper.seed, **self.dalify_kwargs)
        rule = BioRule(model.parameters(), **{**BIO_RULE, **self.rule_kwargs})
        strategy.optimizer = rule
        if getattr(strategy, "optimized_param_id", None) is not None:
            strategy.optimized_param_id = None  # let Avalanche map the new optimizer afresh
        self._rule = rule
        self._kept_state = rule.state
        return rule

    def _check_optimizer(self, strategy: Any) -> BioRule:
        opt = strategy.optimizer
        if opt is self._rule and opt is not None:
            return opt
        if isinstance(opt, BioRule):
            if self._rule is not None:
                opt.adopt_state(self._rule)
            self._rule = opt
            self._kept_state = opt.state
            return opt
        raise TypeError(
            "BioRulePlugin needs the strategy's optimizer to be a bioplastic.BioRule, got "
            f"{type(opt).__name__}; pass BioRulePlugin(replace_optimizer=True) to swap it"
        )

    def _keep_state(self, rule: BioRule) -> None:
        """Undo a reset of the rule's state (Avalanche replaces ``optimizer.state`` to reset it)."""
        if self._kept_state is not None and self._kept_state is not rule.state:
            restored = rule.adopt_state(self._kept_state)
            if restored:
                logger.debug("restored the rule state of %d parameters after a reset", restored)
        self._kept_state = rule.state

    def _configure(self, rule: BioRule) -> None:
        for group in rule.param_groups:
            group["protect_consolidated"] = self.protect_consolidated
            if self.consolidate_by == "importance":
                group["track_importance"] = True

    # ------------------------------------------------------------------ callbacks
    def before_training(self, strategy: Any, *args: Any, **kwargs: Any) -> None:
        if not isinstance(strategy.optimizer, BioRule) and self.replace_optimizer:
            self.install(strategy)
        rule = self._check_optimizer(strategy)
        self._configure(rule)
        self.keeper.update(strategy.model)

    def before_training_exp(self, strategy: Any, *args: Any, **kwargs: Any) -> None:
        # Runs after the template's model adaptation and make_optimizer: new layers (heads)
        # are already in the optimizer; the rule reads their Dale types at its first step.
        self.keeper.update(strategy.model)
        rule = self._check_optimizer(strategy)
        self._keep_state(rule)
        self._configure(rule)
        options = _schedule_for(self.grow_schedule, strategy.clock.train_exp_counter)
        if options:
            _set_group_options(rule, options)

    def before_training_epoch(self, strategy: Any, *args: Any, **kwargs: Any) -> None:
        # Another plugin may have rebuilt the optimizer in its before_training_exp.
        self._configure(self._check_optimizer(strategy))

    def before_eval_exp(self, strategy: Any, *args: Any, **kwargs: Any) -> None:
        self.keeper.update(strategy.model)

    def after_training_exp(self, strategy: Any, *args: Any, **kwargs: Any) -> None:
        rule = self._check_optimizer(strategy)
        self._kept_state = rule.state
        record = {"experience": int(strategy.clock.train_exp_counter)}
        if self.consolidate_fraction > 0:
            record.update(
                rule.consolidate(
                    self.consolidate_fraction, self.consolidate_factor, self.consolidate_by
                )
            )
        else:
            record.update({"consolidated": 0, "consolidated_total": 0})
        counts = rule.structural_counts()
        record.update(eliminated=counts["eliminated"], grown=counts["grown"])
        self.history.append(record)
        logger.debug("bio rule after experience %d: %s", record["experience"], record)

    # ------------------------------------------------------------------ checkpointing
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_rule"] = None  # the optimizer is checkpointed (and re-linked) by the strategy
        state["_kept_state"] = None
        return state


def _set_group_options(rule: BioRule, options: Mapping[str, Any]) -> None:
    """Set BioRule group options (validated as BioRule's constructor does) on every group."""
    allowed = set(rule.defaults)
    unknown = set(options) - allowed
    if unknown:
        raise ValueError(f"unknown BioRule options in grow_schedule: {sorted(unknown)}")
    for group in rule.param_groups:
        merged = {k: group[k] for k in allowed if k in group}
        merged.update(options)
        BioRule.validate_options(**merged)  # raises ValueError naming a bad value
        group.update(options)
