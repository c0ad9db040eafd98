"""Meta-training and episode evaluation for MAML-style learners (learn2learn ``MAML`` or
:class:`~strategies.fewshot.maml.BioMAML`).

:func:`make_maml` pairs a named rule with its inner and outer updates:

=========  ==============================  =====================================
rule       inner (adaptation) step         outer (meta) optimizer
=========  ==============================  =====================================
``bio``    :class:`BioMAML` (bio update)   :class:`bioplastic.BioRule`
``eg``     :class:`BioMAML` (bio update)   ``make_optimizer("eg")``
``adam``   learn2learn ``MAML`` (SGD)      ``torch.optim.Adam``
``sgd``    learn2learn ``MAML`` (SGD)      ``torch.optim.SGD``
=========  ==============================  =====================================

With ``meta_sgd=True`` the inner rates are learned per parameter entry: :class:`BioMetaSGD`
for ``bio``/``eg``, learn2learn's ``MetaSGD`` for ``adam``/``sgd``. The sign-preserving rules
keep Dale's law in the meta-parameters; the additive ones do not (see
:mod:`strategies.fewshot.maml`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from bioplastic import BioRule, make_optimizer
from bioplastic._checks import check_number
from bioplastic._compat import import_learn2learn
from bioplastic.data.episodes import EpisodeSampler
from strategies.fewshot.maml import BioMAML
from strategies.fewshot.metasgd import BioMetaSGD
from strategies.fewshot.tasksets import IndexEpisode, seeded_random, split_support_query

__all__ = [
    "INNER_OPTIONS", "MAML_DEFAULTS", "evaluate_maml", "make_maml", "meta_train",
    "meta_train_tasks", "split_inner",
]  # fmt: skip

l2l = import_learn2learn()

#: Inner learning rates and outer optimizer options per rule. The bio inner step (BioMAML's
#: default, ``normalize="model"``): the log-domain step of a synapse of fan-in ``n`` is ``lr /
#: sqrt(n)`` times its gradient over the RMS of all synapse gradients of the step, so the rate
#: does not depend on the loss scale. 0.3 was the best of 0.1, 0.3, 1 and 3 on glyphs 5-way
#: 1-shot (300 meta-iterations, seed 0; ``benchmarks/results/fewshot_l2l_inner/``). On the
#: 4-block conv net it silenced the last layer in one of four 1-shot runs (the meta-loss then
#: sits at ln(ways)); 0.1 avoided that but lost 3-5 points elsewhere (README, few-shot). The
#: outer BioRule starts at full rate (``warmup=0``: a
#: meta-training run is a few hundred to a few thousand steps) and has no metabolic cost or
#: elimination: a meta-gradient averages the query loss over random tasks, so each synapse's
#: credit is weak and the fixed cost wins (measured on glyphs 5-way 1-shot, 500 iterations:
#: the head kept 35% of its synapses and BioMAML reached 0.42, against 0.55 without them), nor
#: saturation (the few-shot results were measured before it was a default; without the cost
#: it takes the slow reference path).
#: BioMetaSGD's learned rates get their own Adam step of ``rates_lr``, so an outer ``other``
#: or ``other_lr`` in ``outer_kwargs`` sets the biases' step only (``other_lr=0`` leaves biases
#: to the inner loop: on the conv net the last layer then mostly stayed active, but BioMAML
#: lost 0.05 on the MLP; README, few-shot).
MAML_DEFAULTS: dict[str, dict[str, object]] = {
    "bio": {
        "inner_lr": 0.3,
        "other_lr": 0.4,
        "outer": {"warmup": 0, "cost": 0.0, "prune_threshold": 0.0, "saturation": 0.0},
        "rates_lr": 1e-3,  # BioMetaSGD's learned inner rates: Adam at this rate
    },
    "eg": {"inner_lr": 0.3, "other_lr": 0.4, "outer": {"lr": 1.0}},  # bio's inner step
    "adam": {"inner_lr": 0.4, "outer": {"lr": 1e-3}},
    "sgd": {"inner_lr": 0.4, "outer": {"lr": 0.05, "momentum": 0.9}},
}


#: The additive step of BioMetaSGD's learned rates: BioRule's own defaults (Adam), whatever
#: ``outer_kwargs`` set for the biases (its rate: ``MAML_DEFAULTS["bio"]["rates_lr"]``).
_RATE_STEP = {
    name: inspect.signature(BioRule).parameters[name].default
    for name in ("other", "betas", "eps", "weight_decay")
}

#: Options of the bio and eg learners' inner step that :func:`make_maml` takes besides its rate.
INNER_OPTIONS = ("fan_in_exponent", "max_step", "normalize")


def split_inner(options: Mapping[str, object]) -> tuple[float | None, dict[str, object]]:
    """``(inner_lr, inner_options)`` of a mapping of inner-step settings (a benchmark's
    ``--bio-inner``), checked before any work: a ValueError names a key that is neither
    ``inner_lr`` nor one of :data:`INNER_OPTIONS`, or a value :class:`BioMAML` would refuse."""
    options = dict(options)
    lr = options.pop("inner_lr", None)
    unknown = sorted(set(options) - set(INNER_OPTIONS))
    if unknown:
        raise ValueError(
            f"unknown inner options {unknown}; allowed: inner_lr, {', '.join(INNER_OPTIONS)}"
        )
    if lr is not None:
        lr = check_number("inner_lr", lr, 0.0, lo_open=True, hi_open=True)
    if "fan_in_exponent" in options:
        check_number("fan_in_exponent", options["fan_in_exponent"], 0.0, 2.0)
    BioMAML(nn.Linear(1, 1), lr=1.0, **options)  # the learner's own checks (normalize, max_step)
    return lr, options


def make_maml(
    model: nn.Module,
    rule: str,
    first_order: bool = False,
    inner_lr: float | None = None,
    outer_kwargs: Mapping[str, object] | None = None,
    seed: int = 0,
    meta_sgd: bool = False,
    inner_options: Mapping[str, object] | None = None,
) -> tuple[nn.Module, torch.optim.Optimizer]:
    """The meta-learner and its outer optimizer for ``rule`` (see the module table).

    Args:
        model: the network (``ways`` outputs), Dale-typed for ``bio``/``eg``.
        rule: ``"bio"``, ``"eg"``, ``"adam"`` or ``"sgd"``.
        first_order: first-order MAML.
        inner_lr: adaptation learning rate (default :data:`MAML_DEFAULTS`).
        outer_kwargs: options of the outer optimizer, over the defaults (with ``meta_sgd``
            and ``bio``, ``other``, ``other_lr``, ``betas``, ``eps`` and ``weight_decay`` here
            set the biases' step; the learned rates keep BioRule's default Adam step at
            ``MAML_DEFAULTS["bio"]["rates_lr"]``).
        seed: seed of the bio rule's generator (noise, growth).
        meta_sgd: learn one inner rate per parameter entry (Meta-SGD).
        inner_options: for ``bio``/``eg``, options of the inner step over the defaults:
            ``normalize``, ``fan_in_exponent``, ``max_step`` (see :class:`BioMAML`).
    """
    if rule not in MAML_DEFAULTS:
        raise ValueError(f"rule must be one of {tuple(MAML_DEFAULTS)}, got {rule!r}")
    defaults = MAML_DEFAULTS[rule]
    lr = float(defaults["inner_lr"] if inner_lr is None else inner_lr)
    options = {**defaults["outer"], **(outer_kwargs or {})}  # type: ignore[dict-item]
    inner = dict(inner_options or {})
    if inner and rule not in ("bio", "eg"):
        raise ValueError(f"inner_options apply to the rules bio and eg, not {rule!r}")
    if "inner_lr" in inner or split_inner(inner)[1] != inner:
        raise ValueError("pass the inner rate as inner_lr, not in inner_options")
    if rule in ("bio", "eg"):
        cls = BioMetaSGD if meta_sgd else BioMAML
        learner: nn.Module = cls(
            model, lr=lr, first_order=first_order, other_lr=float(defaults["other_lr"]), **inner
        )
        if rule == "bio":
            options.setdefault("seed", seed)
        params = learner.param_groups() if meta_sgd else learner.parameters()
        if meta_sgd and "rates_lr" in defaults:  # the rates' own step, whatever the biases'
            params[1].update(_RATE_STEP, other_lr=float(defaults["rates_lr"]))  # type: ignore
        return learner, make_optimizer(rule, params, **options)
    algorithm = l2l.algorithms.MetaSGD if meta_sgd else l2l.algorithms.MAML
    learner = algorithm(model, lr=lr, first_order=first_order)
    return learner, make_optimizer(rule, learner.parameters(), **options)


def _adapt(learner: nn.Module, x: Tensor, y: Tensor, steps: int, first_order: bool) -> nn.Module:
    clone = learner.clone()  # learn2learn's MetaSGD.clone takes no first_order
    for _ in range(steps):
        clone.adapt(nn.functional.cross_entropy(clone(x), y), first_order=first_order)
    return clone


def meta_train(
    learner: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: Tensor,
    y: Tensor,
    ways: int,
    shots: int,
    queries: int,
    iterations: int,
    meta_batch: int = 4,
    inner_steps: int = 1,
    seed: int = 0,
    on_iteration: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Meta-train ``learner`` on episodes drawn from ``(x, y)``; returns the meta-losses.

    Each iteration averages the query loss after ``inner_steps`` adaptation steps over
    ``meta_batch`` episodes (from :class:`~bioplastic.data.episodes.EpisodeSampler` with
    ``seed``) and takes one outer step.
    """
    sampler = EpisodeSampler(torch.arange(len(y)), y, ways=ways, shots=shots, queries=queries,
                             seed=seed)  # fmt: skip

    def episode() -> tuple[Tensor, Tensor, Tensor, Tensor]:
        s, sy, q, qy = (t.to(x.device) for t in sampler.sample())
        return x[s], sy, x[q], qy

    return _meta_train_loop(learner, optimizer, episode, iterations, meta_batch, inner_steps,
                            on_iteration)  # fmt: skip


def meta_train_tasks(
    learner: nn.Module,
    optimizer: torch.optim.Optimizer,
    taskset,
    shots: int,
    iterations: int,
    meta_batch: int = 16,
    inner_steps: int = 1,
    seed: int = 0,
    device: torch.device | str = "cpu",
    on_iteration: Callable[[int, float], None] | None = None,
) -> list[float]:
    """learn2learn's canonical meta-training loop over a ``TaskDataset``; returns the losses.

    As in learn2learn's ``maml_omniglot.py``: per iteration, ``meta_batch`` tasks are drawn
    (``taskset.sample()`` under :func:`seeded_random` with ``seed``), each split into ``shots``
    support examples per class and the rest as query, adapted with ``inner_steps`` steps; the
    query losses are averaged and one outer step is taken.
    """

    def episode() -> tuple[Tensor, Tensor, Tensor, Tensor]:
        data, labels = taskset.sample()
        return tuple(t.to(device) for t in split_support_query(data, labels, shots))

    with seeded_random(seed):
        return _meta_train_loop(learner, optimizer, episode, iterations, meta_batch,
                                inner_steps, on_iteration)  # fmt: skip


def _meta_train_loop(
    learner: nn.Module,
    optimizer: torch.optim.Optimizer,
    episode: Callable[[], tuple[Tensor, Tensor, Tensor, Tensor]],
    iterations: int,
    meta_batch: int,
    inner_steps: int,
    on_iteration: Callable[[int, float], None] | None,
) -> list[float]:
    """The meta-training loop of both drivers: per iteration, ``meta_batch`` episodes
    ``(support x, support y, query x, query y)`` from ``episode()``, each adapted with
    ``inner_steps`` steps; the query losses are averaged and one outer step is taken."""
    for name, value, low in (("iterations", iterations, 0), ("meta_batch", meta_batch, 1),
                             ("inner_steps", inner_steps, 1)):  # fmt: skip
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    losses = []
    learner.train()
    for it in range(iterations):
        optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for _ in range(meta_batch):
            sx, sy, qx, qy = episode()
            clone = _adapt(learner, sx, sy, inner_steps, first_order=learner.first_order)
            loss = nn.functional.cross_entropy(clone(qx), qy) / meta_batch
            loss.backward()
            total += float(loss.detach())
        optimizer.step()
        losses.append(total)
        if on_iteration is not None:
            on_iteration(it, total)
    return losses


def evaluate_maml(
    learner: nn.Module, x: Tensor, episodes: Sequence[IndexEpisode], inner_steps: int = 1
) -> list[float]:
    """Query accuracy of ``learner`` after ``inner_steps`` adaptation steps, per index episode.

    Adaptation is first-order here (no meta-gradient is needed at test time); the learner's
    own parameters are never changed.
    """
    accuracies = []
    was_training = learner.training
    learner.train()
    try:
        for episode in episodes:
            s, sy, q, qy = (t.to(x.device) for t in episode)
            clone = _adapt(learner, x[s], sy, inner_steps, first_order=True)
            with torch.no_grad():
                accuracies.append(float((clone(x[q]).argmax(1) == qy).double().mean()))
    finally:
        learner.train(was_training)
    return accuracies
