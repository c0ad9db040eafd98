"""The few-shot benchmark: bio-trained vs backprop-trained backbones on held-out classes.

:func:`run_fewshot_benchmark` does the whole loop for one dataset and returns a JSON-serialisable
dict; :func:`format_markdown` renders it. Per seed and rule:

1. **Pre-training** (methods ``proto``, ``finetune``): a backbone (the same architecture and the
   same Dale-typed initialisation for every rule; only the learning rule differs) is trained by
   ordinary classification over all meta-train classes with ``bioplastic.make_optimizer(rule)``
   on 1 - ``holdout_fraction`` of each class's instances; its *clean accuracy* is measured on
   the held-out instances of those classes, and its connectivity, Dale violations and sign
   flips since initialisation with :mod:`bioplastic.probes`.
2. **Evaluation** on meta-test classes (disjoint from meta-train, checked), on the same
   seeded ``ways``-way episodes for every rule (episode seed = run seed; digests are reported):
   ``proto``, nearest prototype of frozen features; ``finetune``, a fresh readout trained for
   ``finetune_steps`` steps by the same rule (:func:`finetune_readout_features`).
3. **MAML** (method ``maml``): a fresh network with ``ways`` outputs is meta-trained on
   meta-train episodes for ``maml_iterations`` outer steps; ``bio``/``eg`` use
   :class:`BioMAML` with a sign-preserving outer optimizer, ``adam``/``sgd`` learn2learn's
   ``MAML`` (see :mod:`bioplastic.experiments.metatrain`); then evaluated on the same test episodes.

Accuracies are reported as mean and 95 % CI over all seed x episode evaluations (the usual
few-shot interval, which ignores training variability; the per-seed means are listed next to
it), and the paired difference ``bio - other`` on the shared episodes with its 95 % CI.

Example::

    results = run_fewshot_benchmark("digits", shots=(1, 5), episodes=600, seeds=3)
    print(format_markdown(results))
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from bioplastic import BioConvNet, BioMLP, make_optimizer
from bioplastic.experiments.metatrain import evaluate_maml, make_maml, meta_train
from bioplastic.probes import weight_report
from bioplastic.train import accuracy, train_epochs
from strategies.fewshot.finetune import FINETUNE_DEFAULT_LR, finetune_readout_features
from strategies.fewshot.proto import ProtoEvaluator, embed, mean_ci
from strategies.fewshot.tasksets import (
    SAMPLERS,
    episode_classes,
    episodes_digest,
    index_episodes,
)

__all__ = [
    "DATASETS",
    "FewShotData",
    "METHODS",
    "format_markdown",
    "load_fewshot_data",
    "run_fewshot_benchmark",
]

DATASETS = ("digits", "mnist1d", "glyphs", "omniglot")
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


class FewShotData:
    """Meta-train and meta-test examples of one dataset, with disjoint class sets.

    Attributes:
        train_x, train_y: meta-train inputs and labels ``0..n_train_classes-1``.
        test_x, test_y: meta-test inputs and labels (any integers).
        train_classes, test_classes: class names (strings) of each side.
        input_shape: shape of one input.
    """

    def __init__(
        self,
        name: str,
        train_x: Tensor,
        train_y: Tensor,
        test_x: Tensor,
        test_y: Tensor,
        train_classes: Sequence[str],
        test_classes: Sequence[str],
    ) -> None:
        overlap = set(train_classes) & set(test_classes)
        if overlap:
            raise ValueError(f"meta-train and meta-test share classes: {sorted(overlap)[:5]}")
        self.name = name
        self.train_x, self.train_y = train_x.float(), _dense_labels(train_y)
        self.test_x, self.test_y = test_x.float(), test_y.long()
        self.train_classes = list(train_classes)
        self.test_classes = list(test_classes)
        self.input_shape = tuple(train_x.shape[1:])

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "input_shape": list(self.input_shape),
            "meta_train_classes": len(self.train_classes),
            "meta_train_instances": len(self.train_y),
            "meta_test_classes": len(self.test_classes),
            "meta_test_instances": len(self.test_y),
        }


def _dense_labels(y: Tensor) -> Tensor:
    _, dense = torch.unique(y.long(), return_inverse=True)
    return dense


def load_fewshot_data(
    dataset: str,
    root: str | None = None,
    cache_dir: str | None = None,
    max_classes: int | None = None,
    eval_split: str = "test",
) -> FewShotData:
    """Meta-train / meta-test (or meta-val) data of ``dataset`` (see :data:`DATASETS`).

    ``digits`` and ``mnist1d``: digits 0-4 / 5-9 (:mod:`bioplastic.data.episodes`; no
    meta-val); ``glyphs``: the fixed class split of :func:`bioplastic.data.glyphs.load_glyphs`
    (20 instances per class; ``max_classes`` keeps a fixed subset for quick runs);
    ``omniglot``: the 1100/100/423 class split of
    :func:`strategies.fewshot.omniglot.load_omniglot` from ``root``. ``eval_split="val"``
    returns the meta-val classes in place of meta-test (for choosing hyper-parameters).
    """
    if eval_split not in ("test", "val"):
        raise ValueError(f"eval_split must be 'test' or 'val', got {eval_split!r}")
    if eval_split == "val" and dataset in ("digits", "mnist1d"):
        raise ValueError(f"{dataset} has no meta-val classes; use eval_split='test'")
    if dataset == "digits":
        from bioplastic.data.episodes import digits_fewshot_splits

        tr, te = digits_fewshot_splits()
        return FewShotData(
            dataset,
            tr.x,
            tr.y,
            te.x,
            te.y,
            [str(c) for c in tr.classes],
            [str(c) for c in te.classes],
        )
    if dataset == "mnist1d":
        from bioplastic.data.episodes import mnist1d_fewshot_splits

        tr, te = mnist1d_fewshot_splits(cache_dir=cache_dir)
        return FewShotData(
            dataset,
            tr.x,
            tr.y,
            te.x,
            te.y,
            [str(c) for c in tr.classes],
            [str(c) for c in te.classes],
        )
    if dataset == "glyphs":
        from bioplastic.data.glyphs import load_glyphs

        tr = load_glyphs("train", cache_dir=cache_dir, max_classes=max_classes)
        te = load_glyphs(eval_split, cache_dir=cache_dir, max_classes=max_classes)
        (trx, try_), (tex, tey) = tr.tensors(), te.tensors()
        return FewShotData(
            dataset,
            trx,
            try_,
            tex,
            tey,
            [f"U+{c:04X}" for c in tr.class_codepoints],
            [f"U+{c:04X}" for c in te.class_codepoints],
        )
    if dataset == "omniglot":
        if root is None:
            raise ValueError("dataset='omniglot' needs root (the folder holding omniglot-py/)")
        from strategies.fewshot.omniglot import load_omniglot

        tr, te = load_omniglot(root, "train"), load_omniglot(root, eval_split)
        (trx, try_), (tex, tey) = tr.tensors(), te.tensors()
        return FewShotData(
            dataset, trx, try_, tex, tey, [c.name for c in tr.classes], [c.name for c in te.classes]
        )
    raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")


def _make_model(
    arch: str, input_shape: tuple[int, ...], hidden: tuple[int, ...], n_out: int, seed: int
) -> tuple[nn.Module, nn.Module, nn.Module]:
    """``(model, features, readout)``; the same seed gives the same initial weights."""
    if arch == "mlp":
        model = BioMLP(int(np.prod(input_shape)), hidden, n_out, seed=seed)
        return model, model.net[:-1], model.net[-1]
    if arch == "conv":
        if len(input_shape) != 3:
            raise ValueError(f"arch='conv' needs [C, H, W] inputs, got shape {input_shape}")
        channels = hidden if len(hidden) == 2 else (32, 64)
        model = BioConvNet(input_shape[0], n_out, channels=channels, seed=seed)
        return model, model.features, model.readout
    raise ValueError(f"arch must be 'mlp' or 'conv', got {arch!r}")


def _holdout(y: Tensor, fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Per class, hold out ``round(fraction * n)`` (at least 1) instances: (train, held-out)."""
    gen = torch.Generator().manual_seed(seed)
    train, held = [], []
    for c in torch.unique(y):
        idx = torch.nonzero(y == c).reshape(-1)
        idx = idx[torch.randperm(len(idx), generator=gen)]
        k = max(1, round(fraction * len(idx)))
        held.append(idx[:k])
        train.append(idx[k:])
    return torch.cat(train).sort().values, torch.cat(held).sort().values


def _probe_summary(model: nn.Module, reference: Mapping[str, Tensor]) -> dict[str, Any]:
    report = weight_report(model, reference_state=reference)
    n_syn = sum(row["n_synapses"] for row in report.values())
    n_present = sum(row["n_present"] for row in report.values())
    return {
        "connectivity": n_present / n_syn,
        "connectivity_per_layer": {k: row["connectivity"] for k, row in report.items()},
        "dale_violations": int(sum(row["dale_violations"] for row in report.values())),
        "sign_flips": int(sum(row.get("sign_flips", 0) for row in report.values())),
        "log_mag_skewness": {k: row["log_mag_skewness"] for k, row in report.items()},
    }


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
    arch = arch or defaults["arch"]
    hidden = tuple(hidden or defaults["hidden"])
    epochs = defaults["epochs"] if pretrain_epochs is None else pretrain_epochs
    batch_size = batch_size or defaults["batch_size"]
    maml_iterations = defaults["maml_iterations"] if maml_iterations is None else maml_iterations
    maml_inner_steps = maml_inner_steps or defaults["maml_inner_steps"]
    finetune_lrs = {**FINETUNE_DEFAULT_LR, **(finetune_lr or {})}
    optimizer_kwargs = optimizer_kwargs or {}
    device = torch.device(device)

    t_load = time.perf_counter()
    data = load_fewshot_data(dataset, root, cache_dir, max_classes, eval_split)
    load_s = time.perf_counter() - t_load
    if len(data.test_classes) < ways:
        raise ValueError(f"ways={ways} but meta-test has {len(data.test_classes)} classes")

    pretrained = any(m in methods for m in ("proto", "finetune"))
    eval_methods = [m for m in methods if m != "maml"]
    units_per_seed = len(rules) * (
        (1 + len(eval_methods) * len(shots) if pretrained else 0)
        + (1 + len(shots) if "maml" in methods else 0)
    )
    total, done = units_per_seed * len(seed_list), 0

    def record(method: str, k: int, rule: str, seed: int, accs: list[float], eps) -> None:
        acc.setdefault((method, k, rule), {})[seed] = accs
        used.setdefault((method, k, rule), {})[seed] = episodes_digest(eps)
        tick(f"seed {seed}: {rule} {method} {k}-shot accuracy {float(np.mean(accs)):.3f}")

    def tick(message: str) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total, message)

    acc: dict[tuple[str, int, str], dict[int, list[float]]] = {}
    # digest of the episodes each evaluation actually used: (method, shots, rule) -> seed -> hex
    used: dict[tuple[str, int, str], dict[int, str]] = {}
    digests: dict[str, dict[str, str]] = {}
    backbones: dict[str, list[dict[str, Any]]] = {r: [] for r in rules}
    maml_runs: dict[str, list[dict[str, Any]]] = {r: [] for r in rules}
    proto_times: list[float] = []
    test_classes = set(data.test_y.tolist())
    train_class_ids = set(data.train_y.tolist())
    test_x = data.test_x.to(device)  # the same tensor (no copy) on the CPU

    for seed in seed_list:
        episode_sets, device_sets, seed_digests = _draw_episodes(
            data, ways, shots, queries, episodes, seed, sampler, device, test_classes
        )
        if seed_digests:
            digests[str(seed)] = seed_digests
        train_idx, held_idx = _holdout(data.train_y, holdout_fraction, seed)
        for rule in rules:
            if pretrained:
                model, features, readout = _make_model(
                    arch, data.input_shape, hidden, len(train_class_ids), seed
                )
                model.to(device)  # in place: features and readout are its sub-modules
                run = _pretrain(model, rule, data, train_idx, held_idx, epochs, batch_size, seed,
                                optimizer_kwargs.get(rule, {}), device)  # fmt: skip
                backbones[rule].append(run)
                tick(
                    f"seed {seed}: pre-trained {rule} (clean accuracy {run['clean_accuracy']:.3f})"
                )
                _evaluate_backbone(
                    features, readout, rule, seed, methods, shots, test_x, episode_sets,
                    device_sets, finetune_steps, finetune_lrs[rule], record, proto_times,
                )  # fmt: skip
            if "maml" in methods:
                model, _, _ = _make_model(arch, data.input_shape, hidden, ways, seed)
                model.to(device)
                maml_runs[rule].append(
                    _maml_rule(
                        model, rule, seed, data, train_idx, ways, shots, queries, test_x,
                        episode_sets, device_sets, record, device=device,
                        first_order=maml_first_order, outer_kwargs=optimizer_kwargs.get(rule),
                        iterations=maml_iterations, meta_batch=maml_meta_batch,
                        inner_steps=maml_inner_steps, tick=tick,
                    )
                )  # fmt: skip

    return {
        "config": {
            "dataset": dataset,
            "ways": ways,
            "shots": list(shots),
            "episodes": episodes,
            "queries": queries,
            "rules": list(rules),
            "methods": list(methods),
            "seeds": seed_list,
            "arch": arch,
            "hidden": list(hidden),
            "pretrain_epochs": epochs,
            "batch_size": batch_size,
            "holdout_fraction": holdout_fraction,
            "optimizer_kwargs": {k: dict(v) for k, v in optimizer_kwargs.items()},
            "finetune_steps": finetune_steps,
            "finetune_lr": finetune_lrs,
            "maml_iterations": maml_iterations,
            "maml_meta_batch": maml_meta_batch,
            "maml_inner_steps": maml_inner_steps,
            "maml_first_order": maml_first_order,
            "sampler": sampler,
            "max_classes": max_classes,
            "eval_split": eval_split,
        },
        "data": {**data.summary(), "load_s": load_s},
        "episodes": digests,
        "backbones": {r: _summarise_runs(v) for r, v in backbones.items() if v},
        "maml": {r: _summarise_runs(v) for r, v in maml_runs.items() if v},
        "accuracy": _accuracy_rows(acc, used, methods, shots, rules),
        "paired": _paired_rows(acc, methods, shots, rules),
        "timing": {
            "proto_eval_s": {
                "median": float(np.median(proto_times)) if proto_times else None,
                "max": float(np.max(proto_times)) if proto_times else None,
                "episodes": episodes,
                "note": "embedding all meta-test inputs once + prototype classification of "
                "all episodes, per backbone and shot",
            },
        },
    }


def _draw_episodes(data, ways, shots, queries, episodes, seed, sampler, device, test_classes):
    """Per shot count, the seed's meta-test episodes (as indices, and with their tensors on
    ``device``) and their digests."""
    episode_sets, device_sets, digests = {}, {}, {}
    for k in shots:
        eps = index_episodes(data.test_y, ways, k, queries, episodes, seed, sampler)
        for episode in eps:  # the meta-test side only (FewShotData checked the names)
            if not episode_classes(episode, data.test_y) <= test_classes:
                raise RuntimeError("an episode drew a class outside meta-test")
        episode_sets[k] = eps
        device_sets[k] = [tuple(t.to(device) for t in episode) for episode in eps]
        digests[str(k)] = episodes_digest(eps)
    return episode_sets, device_sets, digests


def _evaluate_backbone(
    features, readout, rule, seed, methods, shots, test_x, episode_sets, device_sets,
    finetune_steps, finetune_lr, record, proto_times,
) -> None:  # fmt: skip
    """Prototype and fine-tune evaluation of one pre-trained backbone on every shot count."""
    feats = embed(features, test_x) if "finetune" in methods else None
    dale_sign = getattr(readout, "dale_sign", None)
    for k in shots:
        eps, dev_eps = episode_sets[k], device_sets[k]
        if "proto" in methods:
            t0 = time.perf_counter()
            result = ProtoEvaluator(features).evaluate_indexed(test_x, dev_eps)
            proto_times.append(time.perf_counter() - t0)
            record("proto", k, rule, seed, result["accuracies"], eps)
        if "finetune" in methods:
            accs = [
                finetune_readout_features(
                    feats[s], sy, feats[q], qy, rule=rule, steps=finetune_steps,
                    lr=finetune_lr, seed=seed * 100_003 + i,
                    dale_sign=dale_sign if rule in ("bio", "eg") else None,
                )
                for i, (s, sy, q, qy) in enumerate(dev_eps)
            ]  # fmt: skip
            record("finetune", k, rule, seed, accs, eps)


def _maml_rule(
    model, rule, seed, data, train_idx, ways, shots, queries, test_x, episode_sets, device_sets,
    record, *, device, first_order, outer_kwargs, iterations, meta_batch, inner_steps, tick,
) -> dict[str, Any]:  # fmt: skip
    """Meta-train ``model`` with MAML under ``rule``, evaluate it on every shot count and
    return the run's record."""
    reference = {k: v.clone() for k, v in model.state_dict().items()}
    learner, outer = make_maml(model, rule, first_order, outer_kwargs=outer_kwargs, seed=seed)
    x_train, y_train = data.train_x[train_idx], data.train_y[train_idx]
    # one meta-trained model per rule and seed, trained at the largest shot count
    min_count = int(torch.bincount(y_train).min())
    train_queries = max(1, min(queries, min_count - max(shots)))
    t0 = time.perf_counter()
    losses = meta_train(learner, outer, x_train.to(device), y_train, ways, max(shots),
                        train_queries, iterations, meta_batch, inner_steps, seed)  # fmt: skip
    run = {
        "seed": seed,
        "train_s": time.perf_counter() - t0,
        "first_meta_loss": float(np.mean(losses[:20])) if losses else None,
        "final_meta_loss": float(np.mean(losses[-20:])) if losses else None,
        **_probe_summary(model, reference),
    }
    tick(f"seed {seed}: meta-trained {rule} MAML")
    for k in shots:
        accs = evaluate_maml(learner, test_x, device_sets[k], inner_steps)
        record("maml", k, rule, seed, accs, episode_sets[k])
    return run


def _summarise_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {"runs": runs}
    for key in ("clean_accuracy", "connectivity", "dale_violations", "sign_flips", "train_s"):
        values = [r[key] for r in runs if key in r]
        if values:
            summary[key] = {
                "mean": float(np.mean(values)),
                "sd": float(np.std(values, ddof=1)) if len(values) > 1 else None,
            }
    return summary


def _accuracy_rows(acc, used, methods, shots, rules) -> list[dict[str, Any]]:
    rows = []
    for method in methods:
        for k in shots:
            for rule in rules:
                per_seed = acc.get((method, k, rule))
                if not per_seed:
                    continue
                pooled = [a for seed in sorted(per_seed) for a in per_seed[seed]]
                stats = mean_ci(pooled)
                rows.append(
                    {
                        "method": method,
                        "shots": k,
                        "rule": rule,
                        "mean": stats["mean"],
                        "ci95": stats["ci95"],
                        "n": stats["n"],
                        "seed_means": [float(np.mean(per_seed[s])) for s in sorted(per_seed)],
                        "episode_digests": [used[(method, k, rule)][s] for s in sorted(per_seed)],
                    }
                )
    return rows


def _paired_rows(acc, methods, shots, rules) -> list[dict[str, Any]]:
    rows = []
    if "bio" not in rules:
        return rows
    for method in methods:
        for k in shots:
            bio = acc.get((method, k, "bio"))
            if not bio:
                continue
            for rule in rules:
                other = acc.get((method, k, rule))
                if rule == "bio" or not other:
                    continue
                seeds = sorted(set(bio) & set(other))
                diffs = [b - o for s in seeds for b, o in zip(bio[s], other[s], strict=True)]
                stats = mean_ci(diffs)
                rows.append(
                    {
                        "method": method,
                        "shots": k,
                        "rule": "bio",
                        "baseline": rule,
                        "mean_diff": stats["mean"],
                        "ci95": stats["ci95"],
                        "n": stats["n"],
                        "seed_diffs": [float(np.mean(bio[s]) - np.mean(other[s])) for s in seeds],
                    }
                )
    return rows


def _pretrain(model, rule, data, train_idx, held_idx, epochs, batch_size, seed, options, device):
    """Train ``model`` (already on ``device``) by classification with ``make_optimizer(rule)``;
    return its record."""
    reference = {k: v.clone() for k, v in model.state_dict().items()}
    options = dict(options)
    if rule in ("bio", "eg"):
        options.setdefault("seed", seed)
    optimizer = make_optimizer(rule, model.parameters(), **options)
    x, y = data.train_x[train_idx].to(device), data.train_y[train_idx].to(device)
    held_x, held_y = data.train_x[held_idx].to(device), data.train_y[held_idx].to(device)
    t0 = time.perf_counter()
    train_epochs(model, optimizer, x, y, epochs, batch_size=batch_size, seed=seed)
    return {
        "seed": seed,
        "clean_accuracy": accuracy(model, held_x, held_y),
        "train_accuracy": accuracy(model, x, y),
        "train_s": time.perf_counter() - t0,
        **_probe_summary(model, reference),
    }


def _pct(x: float | None) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def format_markdown(results: Mapping[str, Any]) -> str:
    """A markdown summary of :func:`run_fewshot_benchmark`'s results (accuracies in %)."""
    cfg = results["config"]
    data = results["data"]
    lines = [
        f"# Few-shot benchmark: {cfg['dataset']}",
        "",
        f"{cfg['ways']}-way, shots {cfg['shots']}, {cfg['episodes']} episodes x "
        f"{len(cfg['seeds'])} seeds ({cfg['queries']} queries per class); meta-train "
        f"{data['meta_train_classes']} classes / meta-test {data['meta_test_classes']} classes "
        f"(disjoint); backbone {cfg['arch']} {cfg['hidden']}, {cfg['pretrain_epochs']} "
        "pre-training epochs. Mean accuracy (%) +- 95 % CI over all seed x episode "
        "evaluations; per-seed means in brackets.",
        "",
    ]
    if results.get("backbones"):
        lines += [
            "## Pre-trained backbones",
            "",
            "| rule | clean acc. (held-out, pre-training classes) | connectivity | "
            "Dale violations | sign flips | train s |",
            "|---|---|---|---|---|---|",
        ]
        for rule, b in results["backbones"].items():
            lines.append(
                f"| {rule} | {_pct(b['clean_accuracy']['mean'])} "
                f"({', '.join(_pct(r['clean_accuracy']) for r in b['runs'])}) | "
                f"{b['connectivity']['mean']:.3f} | {b['dale_violations']['mean']:.0f} | "
                f"{b['sign_flips']['mean']:.0f} | {b['train_s']['mean']:.1f} |"
            )
        lines.append("")
    if results.get("maml"):
        lines += [
            "## MAML meta-parameters",
            "",
            "| rule | inner / outer | connectivity | Dale violations | sign flips | meta-train s |",
            "|---|---|---|---|---|---|",
        ]
        pairing = {
            "bio": "bio / BioRule",
            "eg": "bio / EG",
            "adam": "SGD / Adam",
            "sgd": "SGD / SGD",
        }
        for rule, b in results["maml"].items():
            lines.append(
                f"| {rule} | {pairing.get(rule, rule)} | {b['connectivity']['mean']:.3f} | "
                f"{b['dale_violations']['mean']:.0f} | {b['sign_flips']['mean']:.0f} | "
                f"{b['train_s']['mean']:.1f} |"
            )
        lines.append("")
    lines += [
        "## Accuracy on meta-test classes",
        "",
        "| method | shots | rule | accuracy | per seed |",
        "|---|---|---|---|---|",
    ]
    for row in results["accuracy"]:
        lines.append(
            f"| {row['method']} | {row['shots']} | {row['rule']} | {_pct(row['mean'])} +- "
            f"{_pct(row['ci95'])} | {', '.join(_pct(m) for m in row['seed_means'])} |"
        )
    if results.get("paired"):
        lines += [
            "",
            "## Paired difference on the same episodes (bio minus baseline)",
            "",
            "| method | shots | baseline | bio - baseline (points) | per seed |",
            "|---|---|---|---|---|",
        ]
        for row in results["paired"]:
            lines.append(
                f"| {row['method']} | {row['shots']} | {row['baseline']} | "
                f"{100 * row['mean_diff']:+.1f} +- {_pct(row['ci95'])} | "
                f"{', '.join(f'{100 * d:+.1f}' for d in row['seed_diffs'])} |"
            )
    timing = results.get("timing", {}).get("proto_eval_s", {})
    if timing.get("median") is not None:
        lines += [
            "",
            f"Prototype evaluation of {timing['episodes']} episodes (embedding "
            f"included): median {timing['median']:.2f} s, max {timing['max']:.2f} s "
            "per backbone and shot.",
        ]
    return "\n".join(lines) + "\n"
