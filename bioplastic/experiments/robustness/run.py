"""The experiment: train every rule to matched accuracy, attack, probe and analyse."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from bioplastic._checks import check_int
from bioplastic._progress import Stages, format_stages
from bioplastic.baselines import (
    OPTIMIZER_NAMES,
    interneurons_for,
    interneurons_on_purpose,
    make_optimizer,
)
from bioplastic.dale import BioMLP
from bioplastic.experiments._common import jsonable
from bioplastic.experiments.robustness.analysis import analyse, summarise
from bioplastic.experiments.robustness.attack import DLR_ATTACK, ENSEMBLE_ATTACK
from bioplastic.experiments.robustness.data import (
    DATASET_DEFAULTS,
    DATASETS,
    SCHEMA,
    _Batches,
    load_robustness_data,
)
from bioplastic.experiments.robustness.interventions import _interventions
from bioplastic.experiments.robustness.measure import _measure, _receptive_fields
from bioplastic.optim import BioRule
from bioplastic.robustness import ATTACKS, train_to_accuracy

#: The interneurons of the network every rule trains: bio's (the interventions move weights
#: between the trained models, so all rules share one network and one initialisation).
INHIBITION = interneurons_for("bio")

# --------------------------------------------------------------------------- the experiment


def _check_config(dataset, rules, seeds, target_accuracy, attacks) -> tuple[list[str], list[int]]:
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    rules = list(rules)
    bad = [r for r in rules if r not in OPTIMIZER_NAMES]
    if not rules or bad or len(set(rules)) != len(rules):
        raise ValueError(f"rules must be distinct names from {OPTIMIZER_NAMES}, got {rules!r}")
    if isinstance(seeds, bool):
        raise ValueError(f"seeds must be a count >= 1 or a sequence of ints, got {seeds!r}")
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list or len(set(seed_list)) != len(seed_list):
        raise ValueError(f"seeds must be a count >= 1 or distinct ints, got {seeds!r}")
    if target_accuracy is not None and not 0 < target_accuracy <= 1:
        raise ValueError(f"target_accuracy must be in (0, 1], got {target_accuracy}")
    bad = [a for a in attacks if a not in ATTACKS]
    if not attacks or bad:
        raise ValueError(f"attacks must be names from {ATTACKS}, got {list(attacks)!r}")
    return rules, seed_list


def run_robustness(
    dataset: str = "digits",
    rules: Sequence[str] = ("bio", "adam", "eg", "enforced"),
    seeds: int | Sequence[int] = 3,
    target_accuracy: float | None = None,
    epsilons: Sequence[float] | None = None,
    l2_epsilons: Sequence[float] | None = None,
    *,
    attacks: Sequence[str] = ATTACKS,
    hidden: tuple[int, ...] = (256,),
    batch_size: int = 32,
    max_epochs: int | None = None,
    eval_every_steps: int = 10,
    val_fraction: float = 0.2,
    pgd_steps: int = 10,
    restarts: int = 1,
    masking_eps: Sequence[float] | None = None,
    masking_steps: int = 20,
    masking_restarts: int = 3,
    dlr: bool = True,
    interventions: bool = True,
    finetune_epochs: int = 5,
    n_receptive_fields: int = 16,
    n_test: int | None = None,
    progress: Callable[[str], None] | None = None,
    device: str | torch.device = "cpu",
    bio_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Train each rule to matched clean accuracy, attack it, probe it, and analyse the result.

    Args:
        dataset: ``"digits"`` or ``"mnist1d"`` (see :func:`load_robustness_data`).
        rules: optimizer names for :func:`bioplastic.optim.make_optimizer` (default settings).
        seeds: number of seeds (0..n-1) or the seeds themselves; each seed fixes the model
            initialisation (shared by all rules), the batch order, the validation split and,
            for digits, the test split.
        target_accuracy: validation accuracy at which training stops (matched-accuracy
            protocol); default per dataset (:data:`DATASET_DEFAULTS`).
        epsilons: L-inf budgets for FGSM and PGD, fractions of the input range (0 = clean).
        l2_epsilons: L2 budgets for ``pgd_l2`` in the input rescaled to [0, 1].
        attacks: attacks to run, from :data:`bioplastic.robustness.ATTACKS`.
        hidden: hidden widths of the BioMLP.
        batch_size, max_epochs, eval_every_steps, val_fraction: training protocol.
        pgd_steps, restarts: PGD strength for the curves (step size ``2.5 * eps / steps``).
        masking_eps, masking_steps, masking_restarts: gradient-masking checks (stronger PGD
            than the curves, compared with FGSM at ``masking_eps``; PGD at eps = 1 must reach
            chance); see :func:`bioplastic.robustness.gradient_masking_checks`.
        dlr: also attack with APGD-DLR (L-inf, the ``epsilons`` grid; see
            :func:`apgd_dlr_accuracy`), whose loss ignores logit scale, reported as attack
            ``"apgd_dlr"``, and with the per-sample worst case of PGD and APGD-DLR, reported
            as ``"linf_ensemble"`` (in ``curve`` and ``robust_mean``); the analysis then uses
            the ensemble as its reference attack.
        interventions: run the pruning / rescaling interventions (needs ``bio`` and ``adam``).
        finetune_epochs: epoch budget of the masked fine-tune of the pruned adam model.
        n_receptive_fields: effective first-layer filters kept per rule (seed ``seeds[0]``).
        n_test: evaluate on the first ``n_test`` test samples only (default: all; the test
            splits are shuffled, so this is a random subset); for quick runs.
        progress: called with one line per finished run.
        device: where models and data live for training, attacks and probes (``"cpu"``,
            ``"cuda"``, ...); models are initialised on the CPU and then moved, so every
            device starts from the same weights. Results are plain Python numbers.
        bio_options: hyper-parameters of bio's :class:`~bioplastic.BioRule` that replace its
            defaults (a setting under test; checked before any work, and recorded with the
            others in ``config["rule_settings"]``).

    Returns:
        A JSON-ready dict: ``schema``, ``config``, ``runs`` (one per rule and seed: ``rule``,
        ``seed``, ``training`` (``reached``, ``accuracy`` = validation accuracy at the stop,
        ``epoch``, ``steps``), ``clean_accuracy`` (test), ``curve`` (a
        :func:`~bioplastic.robustness.robustness_curve`), ``robust_mean`` (per attack, mean
        robust accuracy over eps > 0), ``connectivity``, ``connectivity_per_layer``,
        ``dale_violations``, ``sign_flips``, ``lipschitz_bound``, ``weight_scale``,
        ``gradients``, ``masking``, ``activity``, ``log_magnitude``, ``seconds``),
        ``interventions`` (list of runs with ``kind``, ``seed`` and the same measurements),
        ``config["rule_settings"]`` (each optimizer's class and resolved hyper-parameters),
        ``summary`` (per rule and per intervention kind: mean/std over seeds),
        ``receptive_fields`` (per rule), ``analysis`` (see :func:`analyse`) and ``seconds``.
        Robust accuracies count a sample only if it is also classified correctly when clean,
        so they never exceed the clean accuracy of the same run.
    """
    # ~80 lines: resolving 24 arguments into cfg/protocol is most of it; the steps are helpers.
    rules, seed_list = _check_config(dataset, rules, seeds, target_accuracy, attacks)
    BioRule.validate_options(**dict(bio_options or {}))
    defaults = DATASET_DEFAULTS[dataset]
    target = defaults["target_accuracy"] if target_accuracy is None else float(target_accuracy)
    max_epochs = defaults["max_epochs"] if max_epochs is None else int(max_epochs)
    linf = list(defaults["epsilons"] if epsilons is None else epsilons)
    l2 = list(defaults["l2_epsilons"] if l2_epsilons is None else l2_epsilons)
    eps_map = _epsilon_grids(attacks, linf, l2)
    _check_protocol(
        batch_size=batch_size,
        max_epochs=max_epochs,
        eval_every_steps=eval_every_steps,
        pgd_steps=pgd_steps,
        restarts=restarts,
        masking_steps=masking_steps,
        masking_restarts=masking_restarts,
        finetune_epochs=finetune_epochs,
        n_test=n_test,
        hidden=hidden,
    )
    cfg = {
        "attacks": list(attacks),
        "epsilons": eps_map,
        "pgd_steps": pgd_steps,
        "restarts": restarts,
        "masking_eps": list(defaults["masking_eps"] if masking_eps is None else masking_eps),
        "masking_steps": masking_steps,
        "masking_restarts": masking_restarts,
        "dlr_epsilons": linf if dlr else None,
    }
    device = torch.device(device)
    protocol = {
        "hidden": tuple(hidden),
        "batch_size": batch_size,
        "target": target,
        "max_epochs": max_epochs,
        "eval_every_steps": eval_every_steps,
        "device": device,
        "bio_options": dict(bio_options or {}),
    }
    do_interventions = interventions and "bio" in rules and "adam" in rules
    start_all = time.perf_counter()
    runs: list[dict[str, Any]] = []
    extra: list[dict[str, Any]] = []
    receptive: dict[str, Any] = {}
    rule_settings: dict[str, Any] = {}
    data = None
    for seed in seed_list:
        data = _seed_data(dataset, seed, val_fraction, n_test, device)
        init = BioMLP(
            data["n_features"], tuple(hidden), 10, on_off=True, seed=seed, interneurons=INHIBITION
        ).state_dict()
        trained = _train_rules(
            dataset, rules, seed, data, init, cfg, protocol, progress, runs, rule_settings,
            receptive if seed == seed_list[0] else None, n_receptive_fields,
        )  # fmt: skip
        if do_interventions:
            extra += _interventions(trained, data, cfg, seed, target, batch_size, finetune_epochs,
                                    eval_every_steps, progress, dataset)  # fmt: skip
    config = _results_config(
        dataset=dataset,
        data=data,
        rules=rules,
        seed_list=seed_list,
        protocol=protocol,
        val_fraction=val_fraction,
        attacks=attacks,
        eps_map=eps_map,
        linf=linf,
        dlr=dlr,
        cfg=cfg,
        do_interventions=do_interventions,
        finetune_epochs=finetune_epochs,
        rule_settings=rule_settings,
    )
    results = {
        "schema": SCHEMA,
        "config": config,
        "runs": runs,
        "interventions": extra,
        "receptive_fields": receptive,
    }
    results["summary"] = summarise(runs, extra)
    results["analysis"] = analyse(results)
    results["seconds"] = time.perf_counter() - start_all
    return jsonable(results)


def _train_rules(
    dataset: str, rules: Sequence[str], seed: int, data: dict[str, Any],
    init: Mapping[str, Any], cfg: dict[str, Any], protocol: dict[str, Any],
    progress: Callable[[str], None] | None, runs: list[dict[str, Any]],
    rule_settings: dict[str, Any], receptive: dict[str, Any] | None, n_receptive_fields: int,
) -> dict[str, nn.Module]:  # fmt: skip
    """Train and measure every rule on one seed from the shared ``init``: append each run to
    ``runs``, the first settings per rule to ``rule_settings`` and, unless ``receptive`` is
    ``None``, the receptive fields; return the trained models by rule."""
    trained: dict[str, nn.Module] = {}
    for rule in rules:
        row, model, settings = _train_and_measure(rule, seed, data, init, cfg, protocol)
        rule_settings.setdefault(rule, settings)
        runs.append(row)
        trained[rule] = model
        if receptive is not None:
            receptive[rule] = _receptive_fields(model, data["image_shape"], n_receptive_fields)
        if progress is not None:
            progress(_progress_line(dataset, row))
    return trained


def _epsilon_grids(
    attacks: Sequence[str], linf: list[float], l2: list[float]
) -> dict[str, list[float]]:
    """Each attack's epsilon grid (L2 budgets for ``pgd_l2``), checked."""
    eps_map = {a: (l2 if a == "pgd_l2" else linf) for a in attacks}
    for a, grid in eps_map.items():
        if not grid or any(not (math.isfinite(e) and e >= 0) for e in grid):
            raise ValueError(f"epsilons for {a} must be a non-empty list of budgets >= 0")
        if not any(e > 0 for e in grid):
            raise ValueError(f"epsilons for {a} must contain at least one budget > 0")
    return eps_map


def _check_protocol(*, n_test: int | None, hidden: tuple[int, ...], **counts: int) -> None:
    """ValueError unless every count is an int >= 1, ``n_test`` None or >= 10, ``hidden``
    non-empty positive ints."""
    for name, value in counts.items():
        check_int(name, value)
    if n_test is not None and (
        isinstance(n_test, bool) or not isinstance(n_test, int) or n_test < 10
    ):
        raise ValueError(f"n_test must be an int >= 10 or None, got {n_test!r}")
    if not hidden or any(not isinstance(h, int) or h < 1 for h in hidden):
        raise ValueError(f"hidden must be a non-empty tuple of positive ints, got {hidden!r}")


def _seed_data(
    dataset: str, seed: int, val_fraction: float, n_test: int | None, device: torch.device
) -> dict[str, Any]:
    """The seed's splits on ``device`` (the test set cut to ``n_test``)."""
    data = load_robustness_data(dataset, seed, val_fraction)
    if n_test is not None:
        data["test"] = tuple(t[:n_test] for t in data["test"])
    for split in ("train", "val", "test"):  # the same tensors (no copy) on the CPU
        data[split] = tuple(t.to(device) for t in data[split])
    return data


def _train_and_measure(
    rule: str,
    seed: int,
    data: Mapping[str, Any],
    init: Mapping[str, Tensor],
    cfg: Mapping[str, Any],
    protocol: Mapping[str, Any],
) -> tuple[dict[str, Any], nn.Module, dict[str, Any]]:
    """Train ``rule`` from ``init`` to the target, then measure it: (row, model, settings)."""
    t0 = time.perf_counter()
    device = protocol["device"]
    torch.manual_seed(seed)
    model = BioMLP(
        data["n_features"], protocol["hidden"], 10, on_off=True, seed=seed, interneurons=INHIBITION
    )
    model.load_state_dict(init)
    model.to(device)
    loader = _Batches(*data["train"], protocol["batch_size"], seed)
    options = protocol["bio_options"] if rule == "bio" else {}
    with interneurons_on_purpose():  # every rule trains bio's network here
        optimizer = make_optimizer(rule, model.parameters(), **options)
    stages = Stages()
    with stages("train"):
        training = train_to_accuracy(
            model,
            optimizer,
            loader,
            data["val"],
            protocol["target"],
            protocol["max_epochs"],
            eval_every_steps=protocol["eval_every_steps"],
            device=device,
        )
    model.eval()
    row = {"rule": rule, "seed": seed}
    row["training"] = {k: v for k, v in training.as_dict().items() if k != "history"}
    row.update(_measure(model, data, cfg, init, probes=True, stages=stages))
    row["seconds"] = time.perf_counter() - t0
    row["stages_s"] = dict(stages.seconds)
    return row, model, _optimizer_settings(optimizer)


def _progress_line(dataset: str, row: Mapping[str, Any]) -> str:
    training = row["training"]
    return (
        f"{dataset} {row['rule']:8s} seed {row['seed']}: epochs {training['epoch']:3d} "
        f"val {training['accuracy']:.3f} test {row['clean_accuracy']:.3f} "
        f"pgd-mean {row['robust_mean'].get('pgd', math.nan):.3f} "
        f"conn {row['connectivity']:.3f} ({row['seconds']:.1f} s: "
        f"{format_stages(row.get('stages_s', {}))})"
    )


def _results_config(
    *,
    dataset: str,
    data: Mapping[str, Any],
    rules: list[str],
    seed_list: list[int],
    protocol: Mapping[str, Any],
    val_fraction: float,
    attacks: Sequence[str],
    eps_map: Mapping[str, list[float]],
    linf: list[float],
    dlr: bool,
    cfg: Mapping[str, Any],
    do_interventions: bool,
    finetune_epochs: int,
    rule_settings: Mapping[str, Any],
) -> dict[str, Any]:
    """The ``config`` record of the results: what ran, in which order of keys it always had."""
    hidden, max_epochs = list(protocol["hidden"]), protocol["max_epochs"]
    eval_every_steps = protocol["eval_every_steps"]
    return {
        "dataset": dataset,
        "model": f"BioMLP({data['n_features']}, {hidden}, 10, on_off=True, "
        f"interneurons={INHIBITION})",
        "rules": rules,
        "seeds": seed_list,
        "target_accuracy": protocol["target"],
        "protocol": "train each rule from the same initialisation until validation accuracy "
        f"first reaches the target (checked every {eval_every_steps} steps and every epoch, "
        f"at most {max_epochs} epochs); attack the test set",
        "max_epochs": max_epochs,
        "eval_every_steps": eval_every_steps,
        "batch_size": protocol["batch_size"],
        "hidden": hidden,
        "val_fraction": val_fraction,
        "input_range": list(data["input_range"]),
        "n_test": len(data["test"][1]),
        "attacks": list(attacks) + ([DLR_ATTACK, ENSEMBLE_ATTACK] if dlr else []),
        "epsilons": {**eps_map, **({DLR_ATTACK: linf, ENSEMBLE_ATTACK: linf} if dlr else {})},
        "eps_units": "L-inf: fraction of the input range; L2: norm of the input rescaled to [0, 1]",
        "pgd_steps": cfg["pgd_steps"],
        "pgd_step_size": "2.5 * eps / steps",
        "restarts": cfg["restarts"],
        "apgd_dlr": "torchattacks.APGD(norm='Linf', loss='dlr', steps=pgd_steps, "
        "n_restarts=restarts, seed=0)"
        if dlr
        else None,
        "masking": {k: cfg[k] for k in ("masking_eps", "masking_steps", "masking_restarts")},
        "interventions": do_interventions,
        "finetune_epochs": finetune_epochs,
        "rule_settings": rule_settings,
        "torch": torch.__version__,
    }


def _optimizer_settings(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimizer's class and resolved hyper-parameters (defaults change between versions;
    results record what they ran with)."""
    settings: dict[str, Any] = {"class": type(optimizer).__name__}
    for key, value in optimizer.defaults.items():
        if isinstance(value, (bool, int, float, str, type(None), tuple, list)):
            settings[key] = list(value) if isinstance(value, tuple) else value
    for key in ("l1", "target_connectivity", "prune_every", "prune_rate"):
        if hasattr(optimizer, key):
            settings[key] = getattr(optimizer, key)
    return settings
