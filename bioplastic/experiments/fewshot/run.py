"""The few-shot benchmark's driver: options, defaults, the loop over seeds and rules."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from bioplastic._progress import Stages
from bioplastic.experiments.fewshot.data import DATASETS, FewShotData, load_fewshot_data
from bioplastic.experiments.fewshot.evaluate import (
    _accuracy_rows,
    _draw_episodes,
    _evaluate_backbone,
    _paired_rows,
)
from bioplastic.experiments.fewshot.pretrain import (
    _holdout,
    _make_model,
    _maml_rule,
    _pretrain,
    _summarise_runs,
)
from strategies.fewshot.finetune import FINETUNE_DEFAULT_LR
from strategies.fewshot.tasksets import SAMPLERS, episodes_digest

__all__ = ["DATASET_DEFAULTS", "METHODS", "RULES", "run_fewshot_benchmark"]

METHODS = ("proto", "finetune", "maml")
RULES = ("bio", "eg", "adam", "sgd")

#: Per-dataset defaults: architecture, hidden widths, pre-training epochs and batch size,
#: MAML outer iterations and inner steps.
_MLP_DEFAULTS: dict[str, Any] = dict(
    arch="mlp", hidden=(256, 128), epochs=10, batch_size=64, maml_iterations=300, maml_inner_steps=3
)

DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "digits": {**_MLP_DEFAULTS, "hidden": (128,), "epochs": 20, "batch_size": 32},
    "mnist1d": {**_MLP_DEFAULTS, "epochs": 20, "batch_size": 32},
    "glyphs": dict(_MLP_DEFAULTS),
    "omniglot": dict(_MLP_DEFAULTS),
}

Progress = Callable[[int, int, str], None]


def _check_options(dataset, ways, shots, episodes, queries, rules, methods, seeds, sampler):
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    for name, value, low in (("ways", ways, 2), ("episodes", episodes, 2), ("queries", queries, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    if not shots or any(not isinstance(k, int) or k < 1 for k in shots):
        raise ValueError(f"shots must be a non-empty sequence of ints >= 1, got {shots!r}")
    bad = [r for r in rules if r not in RULES]
    if not rules or bad:
        raise ValueError(f"rules must be a non-empty subset of {RULES}, got {rules!r}")
    bad = [m for m in methods if m not in METHODS]
    if not methods or bad:
        raise ValueError(f"methods must be a non-empty subset of {METHODS}, got {methods!r}")
    if not seeds or any(not isinstance(s, int) or s < 0 for s in seeds):
        raise ValueError(f"seeds must be an int >= 1 or a sequence of ints >= 0, got {seeds!r}")
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")


def run_fewshot_benchmark(
    dataset: str = "digits",
    ways: int = 5,
    shots: Sequence[int] = (1, 5),
    episodes: int = 600,
    rules: Sequence[str] = ("bio", "adam", "eg"),
    methods: Sequence[str] = ("proto", "finetune", "maml"),
    seeds: int | Sequence[int] = 3,
    pretrain_epochs: int | None = None,
    root: str | None = None,
    progress: Progress | None = None,
    *,
    queries: int = 15,
    arch: str | None = None,
    hidden: Sequence[int] | None = None,
    batch_size: int | None = None,
    holdout_fraction: float = 0.2,
    optimizer_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
    finetune_steps: int = 25,
    finetune_lr: Mapping[str, float] | None = None,
    maml_iterations: int | None = None,
    maml_meta_batch: int = 4,
    maml_inner_steps: int | None = None,
    maml_first_order: bool = False,
    maml_inner: Mapping[str, Any] | None = None,
    sampler: str = "bioplastic",
    cache_dir: str | None = None,
    max_classes: int | None = None,
    eval_split: str = "test",
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Pre-train (or meta-train) per rule on meta-train classes; evaluate on meta-test classes.

    Args:
        dataset: ``"digits"``, ``"mnist1d"``, ``"glyphs"`` or ``"omniglot"`` (needs ``root``).
        ways: classes per episode.
        shots: support examples per class, one evaluation per value.
        episodes: test episodes per seed and shot (the same ones for every rule and method).
        rules: learning rules among ``bio``, ``eg``, ``adam``, ``sgd``.
        methods: among ``proto``, ``finetune``, ``maml``.
        seeds: number of seeds (``0..seeds-1``) or the seeds; a seed fixes the initial weights,
            the pre-training order, the held-out instances and the episodes.
        pretrain_epochs: pre-training epochs (default per dataset, :data:`DATASET_DEFAULTS`).
        root: Omniglot root folder.
        progress: called as ``progress(done, total, message)`` after each unit of work.
        queries: query examples per class in test episodes.
        arch, hidden, batch_size: backbone (``"mlp"`` or ``"conv"``), widths, batch size.
        holdout_fraction: fraction of each meta-train class held out for clean accuracy.
        optimizer_kwargs: per-rule options for ``make_optimizer``, used in pre-training and
            for MAML's outer optimizer.
        finetune_steps, finetune_lr: readout fine-tuning steps and per-rule learning rates.
        maml_iterations, maml_meta_batch, maml_inner_steps, maml_first_order: MAML budget.
        maml_inner: the bio and eg learners' inner step over :data:`MAML_DEFAULTS`:
            ``inner_lr``, ``normalize``, ``fan_in_exponent``, ``max_step`` (a study option).
        sampler: episode sampler, ``"bioplastic"`` or ``"learn2learn"``.
        cache_dir, max_classes: passed to the glyph loader.
        eval_split: ``"test"``, or ``"val"`` to evaluate on meta-val classes when choosing
            hyper-parameters (glyphs, omniglot).
        device: where models, data and episodes live (``"cpu"``, ``"cuda"``, ...); models are
            initialised on the CPU and then moved, so every device starts from the same
            weights. Results are plain Python floats.

    Returns:
        A JSON-serialisable dict with keys ``config``, ``data``, ``episodes`` (digest per seed
        and shot), ``backbones`` (per rule and seed: clean accuracy, probes, training time),
        ``accuracy`` (rows: method, shots, rule, mean, ci95, n, seed_means), ``paired`` (rows:
        method, shots, rule, baseline, mean_diff, ci95, n, seed_diffs), ``timing``.

    Raises:
        ValueError: naming the argument, for an unknown dataset, rule or method, counts out
            of range, too few meta-test classes for ``ways``, or omniglot without ``root``.

    Example::

        results = run_fewshot_benchmark("digits", shots=(1,), episodes=100, seeds=1,
                                        methods=("proto",), progress=print_progress)
        results["paired"][0]["mean_diff"], results["paired"][0]["ci95"]
    """
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    shots = tuple(shots)
    rules, methods = tuple(rules), tuple(methods)
    _check_options(dataset, ways, shots, episodes, queries, rules, methods, seed_list, sampler)
    if not 0 < holdout_fraction < 1:
        raise ValueError(f"holdout_fraction must be in (0, 1), got {holdout_fraction!r}")
    defaults = DATASET_DEFAULTS[dataset]
    plan = _Plan(
        dataset=dataset,
        ways=ways,
        shots=shots,
        episodes=episodes,
        queries=queries,
        rules=rules,
        methods=methods,
        seeds=seed_list,
        arch=arch or defaults["arch"],
        hidden=tuple(hidden or defaults["hidden"]),
        epochs=defaults["epochs"] if pretrain_epochs is None else pretrain_epochs,
        batch_size=batch_size or defaults["batch_size"],
        holdout_fraction=holdout_fraction,
        optimizer_kwargs=optimizer_kwargs or {},
        finetune_steps=finetune_steps,
        finetune_lrs={**FINETUNE_DEFAULT_LR, **(finetune_lr or {})},
        maml_iterations=defaults["maml_iterations"] if maml_iterations is None else maml_iterations,
        maml_meta_batch=maml_meta_batch,
        maml_inner_steps=maml_inner_steps or defaults["maml_inner_steps"],
        maml_first_order=maml_first_order,
        maml_inner=dict(maml_inner or {}),
        sampler=sampler,
        max_classes=max_classes,
        eval_split=eval_split,
        device=torch.device(device),
    )

    stages = Stages()
    with stages("load"):
        data = load_fewshot_data(dataset, root, cache_dir, max_classes, eval_split)
    load_s = stages.seconds["load"]
    if len(data.test_classes) < ways:
        raise ValueError(f"ways={ways} but meta-test has {len(data.test_classes)} classes")

    run = _Run(plan, data, progress, stages)
    for seed in seed_list:
        run.seed(seed)
    return run.results(load_s)


@dataclass(frozen=True)
class _Plan:
    """The settings of one benchmark, defaults filled in (see :func:`run_fewshot_benchmark`)."""

    dataset: str
    ways: int
    shots: tuple[int, ...]
    episodes: int
    queries: int
    rules: tuple[str, ...]
    methods: tuple[str, ...]
    seeds: list[int]
    arch: str
    hidden: tuple[int, ...]
    epochs: int
    batch_size: int
    holdout_fraction: float
    optimizer_kwargs: Mapping[str, Mapping[str, Any]]
    finetune_steps: int
    finetune_lrs: dict[str, float]
    maml_iterations: int
    maml_meta_batch: int
    maml_inner_steps: int
    maml_first_order: bool
    maml_inner: dict[str, Any]
    sampler: str
    max_classes: int | None
    eval_split: str
    device: torch.device

    @property
    def pretrained(self) -> bool:
        """Whether some method evaluates a pre-trained backbone."""
        return any(m in self.methods for m in ("proto", "finetune"))

    def total_units(self) -> int:
        """Progress units of the whole benchmark: one per training and per evaluation."""
        eval_methods = [m for m in self.methods if m != "maml"]
        units_per_seed = len(self.rules) * (
            (1 + len(eval_methods) * len(self.shots) if self.pretrained else 0)
            + (1 + len(self.shots) if "maml" in self.methods else 0)
        )
        return units_per_seed * len(self.seeds)

    def config(self) -> dict[str, Any]:
        """The ``config`` entry of the results."""
        return {
            "dataset": self.dataset,
            "ways": self.ways,
            "shots": list(self.shots),
            "episodes": self.episodes,
            "queries": self.queries,
            "rules": list(self.rules),
            "methods": list(self.methods),
            "seeds": self.seeds,
            "arch": self.arch,
            "hidden": list(self.hidden),
            "pretrain_epochs": self.epochs,
            "batch_size": self.batch_size,
            "holdout_fraction": self.holdout_fraction,
            "optimizer_kwargs": {k: dict(v) for k, v in self.optimizer_kwargs.items()},
            "finetune_steps": self.finetune_steps,
            "finetune_lr": self.finetune_lrs,
            "maml_iterations": self.maml_iterations,
            "maml_meta_batch": self.maml_meta_batch,
            "maml_inner_steps": self.maml_inner_steps,
            "maml_first_order": self.maml_first_order,
            "maml_inner": dict(self.maml_inner),
            "sampler": self.sampler,
            "max_classes": self.max_classes,
            "eval_split": self.eval_split,
        }


class _Run:
    """What one benchmark accumulates over seeds and rules, with its progress count."""

    def __init__(
        self, plan: _Plan, data: FewShotData, progress: Progress | None, stages: Stages
    ) -> None:
        self.plan, self.data, self.progress, self.stages = plan, data, progress, stages
        self.total, self.done = plan.total_units(), 0
        self.acc: dict[tuple[str, int, str], dict[int, list[float]]] = {}
        # digest of the episodes each evaluation actually used: (method, shots, rule) -> seed -> hex
        self.used: dict[tuple[str, int, str], dict[int, str]] = {}
        self.digests: dict[str, dict[str, str]] = {}
        self.backbones: dict[str, list[dict[str, Any]]] = {r: [] for r in plan.rules}
        self.maml_runs: dict[str, list[dict[str, Any]]] = {r: [] for r in plan.rules}
        self.proto_times: list[float] = []
        self.test_classes = set(data.test_y.tolist())
        self.n_train_classes = len(set(data.train_y.tolist()))
        self.test_x = data.test_x.to(plan.device)  # the same tensor (no copy) on the CPU

    def tick(self, message: str) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total, message)

    def record(self, method: str, k: int, rule: str, seed: int, accs: list[float], eps) -> None:
        self.acc.setdefault((method, k, rule), {})[seed] = accs
        self.used.setdefault((method, k, rule), {})[seed] = episodes_digest(eps)
        self.tick(f"seed {seed}: {rule} {method} {k}-shot accuracy {float(np.mean(accs)):.3f}")

    def seed(self, seed: int) -> None:
        """Every rule's backbone and MAML run on ``seed``'s episodes."""
        plan, data = self.plan, self.data
        episode_sets, device_sets, seed_digests = _draw_episodes(
            data, plan.ways, plan.shots, plan.queries, plan.episodes, seed, plan.sampler,
            plan.device, self.test_classes,
        )  # fmt: skip
        if seed_digests:
            self.digests[str(seed)] = seed_digests
        train_idx, held_idx = _holdout(data.train_y, plan.holdout_fraction, seed)
        for rule in plan.rules:
            if plan.pretrained:
                self._pretrained(rule, seed, train_idx, held_idx, episode_sets, device_sets)
            if "maml" in plan.methods:
                self._maml(rule, seed, train_idx, episode_sets, device_sets)

    def _pretrained(self, rule, seed, train_idx, held_idx, episode_sets, device_sets) -> None:
        plan, data = self.plan, self.data
        model, features, readout = _make_model(
            plan.arch, data.input_shape, plan.hidden, self.n_train_classes, seed, rule
        )
        model.to(plan.device)  # in place: features and readout are its sub-modules
        with self.stages("pretrain"):
            run = _pretrain(model, rule, data, train_idx, held_idx, plan.epochs, plan.batch_size,
                            seed, plan.optimizer_kwargs.get(rule, {}), plan.device)  # fmt: skip
        self.backbones[rule].append(run)
        self.tick(f"seed {seed}: pre-trained {rule} (clean accuracy {run['clean_accuracy']:.3f})")
        _evaluate_backbone(
            features, readout, rule, seed, plan.methods, plan.shots, self.test_x, episode_sets,
            device_sets, plan.finetune_steps, plan.finetune_lrs[rule], self.record,
            self.proto_times, self.stages,
        )  # fmt: skip

    def _maml(self, rule, seed, train_idx, episode_sets, device_sets) -> None:
        plan = self.plan
        model, _, _ = _make_model(
            plan.arch, self.data.input_shape, plan.hidden, plan.ways, seed, rule
        )
        model.to(plan.device)
        with self.stages("maml"):
            self._maml_run(model, rule, seed, train_idx, episode_sets, device_sets)

    def _maml_run(self, model, rule, seed, train_idx, episode_sets, device_sets) -> None:
        plan = self.plan
        self.maml_runs[rule].append(
            _maml_rule(
                model, rule, seed, self.data, train_idx, plan.ways, plan.shots, plan.queries,
                self.test_x, episode_sets, device_sets, self.record, device=plan.device,
                first_order=plan.maml_first_order,
                outer_kwargs=plan.optimizer_kwargs.get(rule), iterations=plan.maml_iterations,
                meta_batch=plan.maml_meta_batch, inner_steps=plan.maml_inner_steps,
                tick=self.tick, inner=plan.maml_inner if rule in ("bio", "eg") else {},
            )
        )  # fmt: skip

    def results(self, load_s: float) -> dict[str, Any]:
        """The JSON-serialisable results (see :func:`run_fewshot_benchmark`)."""
        plan, times = self.plan, self.proto_times
        return {
            "config": plan.config(),
            "data": {**self.data.summary(), "load_s": load_s},
            "episodes": self.digests,
            "backbones": {r: _summarise_runs(v) for r, v in self.backbones.items() if v},
            "maml": {r: _summarise_runs(v) for r, v in self.maml_runs.items() if v},
            "accuracy": _accuracy_rows(self.acc, self.used, plan.methods, plan.shots, plan.rules),
            "paired": _paired_rows(self.acc, plan.methods, plan.shots, plan.rules),
            "timing": {
                "stages_s": dict(self.stages.seconds),
                "proto_eval_s": {
                    "median": float(np.median(times)) if times else None,
                    "max": float(np.max(times)) if times else None,
                    "episodes": plan.episodes,
                    "note": "embedding all meta-test inputs once + prototype classification of "
                    "all episodes, per backbone and shot",
                },
            },
        }
