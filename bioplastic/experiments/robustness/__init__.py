"""The robustness experiment: learning rules at matched clean accuracy, attacked and analysed.

:func:`run_robustness` trains the same Dale-initialised :class:`~bioplastic.dale.BioMLP` (ON/OFF
input split; one initialisation per seed, shared by every rule, and one batch order per seed)
with each learning rule until its *validation* accuracy first reaches a common target
(:func:`bioplastic.robustness.train_to_accuracy`, checked every ``eval_every_steps`` steps).
This is the matched-accuracy protocol: robustness depends strongly on how well a model fits,
so rules are compared at equal clean accuracy, and the clean *test* accuracy actually reached is
reported next to every robust number. Each model is then attacked on the test set with FGSM,
PGD (L-inf) and PGD (L2) over an epsilon grid (torchattacks, via
:mod:`bioplastic.robustness`), checked for gradient masking, and probed
(:mod:`bioplastic.representation`): connectivity, weight scale, a Lipschitz proxy, input
gradients, linearised distance to the decision boundary, activity statistics, receptive fields.

**Is a robustness difference explained by connectivity or by weight scale?** Two checks
(:func:`analyse`):

(a) *Correlation across runs*: Spearman correlation of the mean PGD accuracy (over eps > 0) with
    connectivity, with the log Lipschitz bound (product of layer spectral norms), with the mean
    L1 norm of the loss gradient with respect to the input, and with the linearised L-inf radius
    (logit margin / L1 norm of its input gradient, a scale-free first-order robustness radius).
(b) *Interventions*, per seed: ``adam_pruned_to_bio``: the adam model magnitude-pruned, layer by
    layer, to the bio model's connectivity, without retraining; ``adam_pruned_finetuned``: the
    same, then fine-tuned with Adam under the pruning mask until validation accuracy is back at
    the target (at most ``finetune_epochs``); ``bio_rescaled_to_adam``: every bio layer
    rescaled to the Frobenius norm of the matching adam layer, with the biases compensated so
    that the logits are only multiplied by a positive constant (a ReLU network's decisions, and
    therefore its clean and robust accuracy under an exact attack, do not change: any change
    measured is the attack's sensitivity to logit scale). Each is attacked like the originals.

Example::

    >>> from bioplastic.experiments.robustness import run_robustness, format_markdown
    >>> results = run_robustness("digits", rules=("bio", "adam"), seeds=3)
    >>> print(format_markdown(results))
"""

from __future__ import annotations

import copy
import logging
import math
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from bioplastic.baselines import OPTIMIZER_NAMES, make_optimizer
from bioplastic.dale import BioMLP
from bioplastic.probes import synaptic_layers, weight_report
from bioplastic.representation import (
    activity_profile,
    effective_filters,
    first_layer,
    input_gradient_stats,
    lipschitz_upper_bound,
    receptive_field_grid,
    weight_scale_stats,
)
from bioplastic.robustness import (
    ATTACKS,
    gradient_masking_checks,
    robustness_curve,
    train_to_accuracy,
)

__all__ = [
    "DATASETS",
    "DATASET_DEFAULTS",
    "INTERVENTIONS",
    "SCHEMA",
    "DLR_ATTACK",
    "ENSEMBLE_ATTACK",
    "analyse",
    "apgd_dlr_accuracy",
    "format_markdown",
    "load_robustness_data",
    "magnitude_prune_",
    "plot_robustness_analysis",
    "PREDICTORS",
    "plot_robustness_curves",
    "receptive_field_grids",
    "reference_attack",
    "rescale_layers_",
    "run_robustness",
    "summarise",
    "write_results",
]

logger = logging.getLogger(__name__)

SCHEMA = "bioplastic.experiments.robustness/1"
DATASETS = ("digits", "mnist1d")
INTERVENTIONS = ("adam_pruned_to_bio", "adam_pruned_finetuned", "bio_rescaled_to_adam")

#: Per-dataset defaults. Targets sit a little below the validation plateau of the weakest rule
#: with default settings (digits: every rule passes 0.93 within ~10 epochs; MNIST-1D: bio
#: plateaus near 0.35-0.40 with a BioMLP(40, (256,), 10), the other rules near 0.50-0.55).
#: L-inf budgets are fractions of the input range; L2 budgets are norms in the input rescaled
#: to [0, 1] (see :mod:`bioplastic.robustness`).
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "digits": {
        "target_accuracy": 0.93,
        "epsilons": (0.0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3),
        "l2_epsilons": (0.0, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0),
        "masking_eps": (0.05, 0.1),
        "image_shape": (8, 8),
        "max_epochs": 60,
    },
    "mnist1d": {
        "target_accuracy": 0.33,
        "epsilons": (0.0, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1),
        "l2_epsilons": (0.0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3),
        "masking_eps": (0.01, 0.02),
        "image_shape": (40,),
        "max_epochs": 60,
    },
}


# --------------------------------------------------------------------------- data


def load_robustness_data(dataset: str, seed: int, val_fraction: float = 0.2) -> dict[str, Any]:
    """Train / validation / test tensors, the input range and the input shape of ``dataset``.

    ``digits``: scikit-learn's digits in [0, 1], test split stratified by ``seed`` (as in
    :func:`bioplastic.experiments.compare.compare_rules`); ``mnist1d``: 4,000 locally generated
    MNIST-1D signals (standardised; fixed split), input range = min/max over train and test. The
    validation set is a ``val_fraction`` of the training set, stratified, drawn with ``seed``.
    """
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if dataset == "digits":
        from bioplastic.data.sources import load_digits_arrays

        arrays = load_digits_arrays(seed=seed)
        input_range = (0.0, 1.0)
    else:
        from bioplastic.data.sources import load_mnist1d_arrays

        arrays = load_mnist1d_arrays()
    x_train, y_train, x_test, y_test = (torch.as_tensor(a) for a in arrays)
    if dataset == "mnist1d":
        both = torch.cat([x_train, x_test])
        input_range = (float(both.min()), float(both.max()))
    gen = torch.Generator().manual_seed(seed)
    val_idx = []
    for c in torch.unique(y_train):
        idx = (y_train == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        val_idx.append(idx[: max(1, round(val_fraction * len(idx)))])
    val = torch.cat(val_idx)
    keep = torch.ones(len(y_train), dtype=torch.bool)
    keep[val] = False
    return {
        "train": (x_train[keep], y_train[keep]),
        "val": (x_train[val], y_train[val]),
        "test": (x_test, y_test),
        "input_range": input_range,
        "image_shape": DATASET_DEFAULTS[dataset]["image_shape"],
        "n_features": int(x_train.shape[1]),
    }


class _Batches:
    """Shuffled mini-batches; every pass draws its order from one seeded generator, so every
    rule trained with the same seed sees the same batches in the same order."""

    def __init__(self, x: Tensor, y: Tensor, batch_size: int, seed: int):
        self.x, self.y, self.batch_size = x, y, batch_size
        self.gen = torch.Generator().manual_seed(seed)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        order = torch.randperm(len(self.x), generator=self.gen)
        for i in range(0, len(order), self.batch_size):
            idx = order[i : i + self.batch_size].to(self.x.device)  # CPU generator's order
            yield self.x[idx], self.y[idx]


# --------------------------------------------------------------------------- interventions


def magnitude_prune_(model: nn.Module, connectivity: Mapping[str, float]) -> dict[str, Tensor]:
    """Keep, in each named synaptic layer, the ``round(c * numel)`` largest-magnitude weights.

    Args:
        model: modified in place.
        connectivity: ``{layer name: target fraction in [0, 1]}`` (names as in
            :func:`bioplastic.probes.synaptic_layers`); other layers are left alone.

    Returns:
        ``{layer name: bool mask of kept weights}``.
    """
    layers = dict(synaptic_layers(model))
    unknown = set(connectivity) - set(layers)
    if unknown:
        raise ValueError(f"connectivity names unknown layers: {sorted(unknown)}")
    masks = {}
    with torch.no_grad():
        for name, c in connectivity.items():
            if not 0 <= c <= 1:
                raise ValueError(f"connectivity[{name!r}] must be in [0, 1], got {c}")
            w = layers[name].weight
            k = round(c * w.numel())
            mask = torch.zeros(w.numel(), dtype=torch.bool, device=w.device)
            if k > 0:
                mask[torch.topk(w.detach().abs().reshape(-1), k).indices] = True
            mask = mask.reshape(w.shape) & (w != 0)
            w.mul_(mask)
            masks[name] = mask
    return masks


def rescale_layers_(model: nn.Module, factors: Mapping[str, float]) -> float:
    """Multiply each synaptic layer's weight by ``factors[name]`` and compensate the biases.

    For a feed-forward chain of synaptic layers with positively homogeneous activations (ReLU),
    in :func:`~bioplastic.probes.synaptic_layers` order, the bias of layer ``l`` is multiplied
    by the product of the factors of layers ``1..l``; the logits are then the original logits
    times ``prod(factors)`` and every decision is unchanged. Layers not named keep factor 1.
    Returns that overall factor.
    """
    layers = synaptic_layers(model)
    unknown = set(factors) - {n for n, _ in layers}
    if unknown:
        raise ValueError(f"factors names unknown layers: {sorted(unknown)}")
    total = 1.0
    with torch.no_grad():
        for name, m in layers:
            f = float(factors.get(name, 1.0))
            if not (math.isfinite(f) and f > 0):
                raise ValueError(f"factors[{name!r}] must be a finite number > 0, got {f}")
            total *= f
            m.weight.mul_(f)
            if m.bias is not None:
                m.bias.mul_(total)
    return total


def _masked_finetune(
    model: nn.Module,
    masks: Mapping[str, Tensor],
    loader: _Batches,
    val: tuple[Tensor, Tensor],
    target: float,
    max_epochs: int,
    eval_every_steps: int,
) -> dict[str, Any]:
    from torch.nn.utils import prune

    layers = dict(synaptic_layers(model))
    for name, mask in masks.items():
        prune.custom_from_mask(layers[name], "weight", mask)
    try:
        result = train_to_accuracy(
            model,
            make_optimizer("adam", model.parameters()),
            loader,
            val,
            target,
            max_epochs,
            eval_every_steps=eval_every_steps,
        )
    finally:
        for name in masks:
            prune.remove(layers[name], "weight")
    return result.as_dict()


# --------------------------------------------------------------------------- APGD-DLR

#: The scale-invariant check attack: APGD with the DLR loss (Croce & Hein 2020), L-inf.
DLR_ATTACK = "apgd_dlr"
#: Per-sample worst case of L-inf PGD (cross-entropy) and APGD-DLR at the same budget.
ENSEMBLE_ATTACK = "linf_ensemble"


class _UnitInput(nn.Module):
    """``model`` seen by torchattacks: inputs in [0, 1] shaped ``(N, 1, 1, D)``."""

    def __init__(self, model: nn.Module, lo: float, hi: float, sample_shape: Sequence[int]):
        super().__init__()
        self.model, self.lo, self.scale = model, lo, hi - lo
        self.sample_shape = tuple(sample_shape)

    def forward(self, u: Tensor) -> Tensor:
        return self.model(self.lo + self.scale * u.reshape(len(u), *self.sample_shape))


def _survivors(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    *,
    steps: int,
    restarts: int,
    input_range: Sequence[float],
    seed: int,
    with_pgd: bool,
) -> tuple[Tensor, Tensor | None]:
    """Per-sample robustness (bool ``[N]``) under APGD-DLR, and optionally under PGD-CE."""
    try:
        import torchattacks
    except ImportError as err:
        raise ImportError("APGD-DLR needs torchattacks: pip install torchattacks") from err
    from bioplastic.robustness import adversarial_examples

    if not (math.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps must be a finite number >= 0, got {eps}")
    lo, hi = (float(v) for v in input_range)
    if not hi > lo:
        raise ValueError(f"input_range must satisfy lo < hi, got {(lo, hi)}")
    device = next(model.parameters()).device
    x, y = x.to(device), y.to(device)
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            clean = model(x).argmax(1) == y
        dlr = clean.clone()
        pgd = clean.clone() if with_pgd else None
        if eps > 0 and bool(clean.any()):
            idx = clean.nonzero().flatten()
            wrapped = _UnitInput(model, lo, hi, x.shape[1:])
            atk = torchattacks.APGD(
                wrapped,
                norm="Linf",
                eps=eps,
                steps=steps,
                n_restarts=restarts,
                seed=seed,
                loss="dlr",
            )
            u = ((x[idx] - lo) / (hi - lo)).reshape(len(idx), 1, 1, -1)
            with torch.enable_grad():
                adv = atk(u, y[idx])
            with torch.no_grad():
                dlr[idx] = wrapped(adv).argmax(1) == y[idx]
            if with_pgd:
                for _ in range(restarts):
                    live = idx[pgd[idx]]
                    if len(live) == 0:
                        break
                    adv_x = adversarial_examples(
                        model, x[live], y[live], "pgd", eps, steps=steps, input_range=(lo, hi)
                    )
                    with torch.no_grad():
                        pgd[live] = model(adv_x).argmax(1) == y[live]
    finally:
        for m, flag in modes:
            m.training = flag
    return dlr, pgd


def apgd_dlr_accuracy(
    model: nn.Module,
    data: tuple[Tensor, Tensor],
    eps: float,
    *,
    steps: int = 10,
    restarts: int = 1,
    input_range: Sequence[float] = (0.0, 1.0),
    seed: int = 0,
    ensemble_with_pgd: bool = False,
) -> float | tuple[float, float]:
    """Robust accuracy under torchattacks' APGD (L-inf) with the DLR loss.

    The DLR loss ``-(z_y - max_{k != y} z_k) / (z_pi1 - z_pi3)`` (Croce & Hein 2020, "Reliable
    evaluation of adversarial robustness with an ensemble of diverse parameter-free attacks")
    is invariant to shifting and positively rescaling the logits, unlike the cross-entropy
    that FGSM and PGD ascend: the check that a robustness difference is not an artefact of
    logit scale (softmax saturation). ``eps`` is a fraction of ``input_range``; a sample counts
    as robust only if it is correct clean and after the attack. Needs >= 3 classes.

    With ``ensemble_with_pgd`` it returns ``(dlr_accuracy, ensemble_accuracy)``, where the
    ensemble counts a sample as robust only if it also survives L-inf PGD on the cross-entropy
    (``steps`` steps, ``restarts`` random restarts): the per-sample worst case of the two
    attacks, as AutoAttack combines its attacks.
    """
    x, y = data
    if len(x) != len(y) or len(x) == 0:
        raise ValueError("data must be a non-empty (inputs, labels) pair of equal length")
    dlr, pgd = _survivors(
        model,
        x,
        y,
        eps,
        steps=steps,
        restarts=restarts,
        input_range=input_range,
        seed=seed,
        with_pgd=ensemble_with_pgd,
    )
    if not ensemble_with_pgd:
        return float(dlr.float().mean())
    return float(dlr.float().mean()), float((dlr & pgd).float().mean())


# --------------------------------------------------------------------------- measurement


def _jsonable(value: Any) -> Any:
    """Plain JSON: tuples to lists, tensors to numbers, non-finite floats to None."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Tensor):
        return _jsonable(value.tolist())
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value


def _connectivity(model: nn.Module) -> tuple[float, dict[str, float]]:
    per_layer, present, total = {}, 0, 0
    for name, m in synaptic_layers(model):
        n = int(torch.count_nonzero(m.weight))
        per_layer[name] = n / m.weight.numel()
        present += n
        total += m.weight.numel()
    return present / total, per_layer


def _measure(
    model: nn.Module,
    data: Mapping[str, Any],
    cfg: Mapping[str, Any],
    reference_state: Mapping[str, Tensor] | None,
    *,
    probes: bool,
) -> dict[str, Any]:
    """Clean accuracy, robustness curves, masking checks and probes of one trained model."""
    test = data["test"]
    input_range = data["input_range"]
    curve = robustness_curve(
        model,
        test,
        attacks=cfg["attacks"],
        epsilons=cfg["epsilons"],
        steps=cfg["pgd_steps"],
        restarts=cfg["restarts"],
        input_range=input_range,
    )
    grid = cfg.get("dlr_epsilons")
    if grid:
        dlr_acc, ens_acc = [], []
        for e in grid:
            if e > 0:
                d, both = apgd_dlr_accuracy(
                    model,
                    test,
                    e,
                    steps=cfg["pgd_steps"],
                    restarts=cfg["restarts"],
                    input_range=input_range,
                    ensemble_with_pgd=True,
                )
            else:
                d = both = curve["clean_accuracy"]
            dlr_acc.append(d)
            ens_acc.append(both)
        for name, accs in ((DLR_ATTACK, dlr_acc), (ENSEMBLE_ATTACK, ens_acc)):
            curve["attacks"].append(name)
            curve["epsilons"][name] = list(grid)
            curve["accuracy"][name] = accs
    robust_mean = {
        a: statistics.fmean(
            acc for e, acc in zip(curve["epsilons"][a], curve["accuracy"][a], strict=True) if e > 0
        )
        for a in curve["attacks"]
    }
    conn, conn_layers = _connectivity(model)
    report = weight_report(model, reference_state=reference_state)
    clean = curve["clean_accuracy"]
    out: dict[str, Any] = {
        "clean_accuracy": clean,
        "curve": curve,
        "robust_mean": robust_mean,
        "robust_ratio": {a: (v / clean if clean > 0 else None) for a, v in robust_mean.items()},
        "connectivity": conn,
        "connectivity_per_layer": conn_layers,
        "dale_violations": sum(r["dale_violations"] for r in report.values()),
        "sign_flips": sum(r.get("sign_flips", 0) for r in report.values()),
        "lipschitz_bound": lipschitz_upper_bound(model),
        "weight_scale": weight_scale_stats(model),
        "gradients": input_gradient_stats(model, test[0], test[1], input_range=input_range),
    }
    if probes:
        out["masking"] = gradient_masking_checks(
            model,
            test,
            cfg["masking_eps"],
            steps=cfg["masking_steps"],
            restarts=cfg["masking_restarts"],
            large_eps=1.0,
            input_range=input_range,
        )
        out["activity"] = activity_profile(model, test[0])
        out["log_magnitude"] = {
            name: {k: r[f"log_mag_{k}"] for k in ("mean", "std", "skewness", "excess_kurtosis")}
            for name, r in report.items()
        }
    return out


def _receptive_fields(model: nn.Module, image_shape: Sequence[int], n: int) -> dict[str, Any]:
    _, layer, on_off = first_layer(model)
    filters = effective_filters(layer.weight, on_off=on_off)
    norms = filters.norm(dim=1)
    top = torch.argsort(norms, descending=True)[: min(n, len(norms))]
    return {
        "image_shape": list(image_shape),
        "on_off": on_off,
        "units": [int(i) for i in top],
        "filters": [[round(float(v), 5) for v in filters[i]] for i in top],
        "selection": f"the {len(top)} units with the largest effective-filter L2 norm",
    }


# --------------------------------------------------------------------------- statistics


def _mean_std(values: Sequence[float | None]) -> dict[str, float | None]:
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return {"mean": None, "std": None, "n": 0}
    return {
        "mean": statistics.fmean(vals),
        "std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
        "n": len(vals),
    }


def _t_crit(n: int) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.975, n - 1)) if n > 1 else math.inf


def _paired(diffs: Sequence[float]) -> dict[str, Any]:
    """Mean paired difference with a t-based 95% CI over seeds (None if n < 2)."""
    n = len(diffs)
    mean = statistics.fmean(diffs)
    if n < 2:
        return {"mean_diff": mean, "ci95_low": None, "ci95_high": None, "n": n}
    half = _t_crit(n) * statistics.stdev(diffs) / math.sqrt(n)
    return {"mean_diff": mean, "ci95_low": mean - half, "ci95_high": mean + half, "n": n}


def _spearman(x: Sequence[float], y: Sequence[float]) -> dict[str, float | None]:
    pairs = [(a, b) for a, b in zip(x, y, strict=True) if a is not None and b is not None]
    if len(pairs) < 3 or len({a for a, _ in pairs}) < 2 or len({b for _, b in pairs}) < 2:
        return {"rho": None, "p": None, "n": len(pairs)}
    from scipy import stats

    rho, p = stats.spearmanr([a for a, _ in pairs], [b for _, b in pairs])
    return {"rho": float(rho), "p": float(p), "n": len(pairs)}


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
    rules, seed_list = _check_config(dataset, rules, seeds, target_accuracy, attacks)
    defaults = DATASET_DEFAULTS[dataset]
    target = defaults["target_accuracy"] if target_accuracy is None else float(target_accuracy)
    max_epochs = defaults["max_epochs"] if max_epochs is None else int(max_epochs)
    linf = list(defaults["epsilons"] if epsilons is None else epsilons)
    l2 = list(defaults["l2_epsilons"] if l2_epsilons is None else l2_epsilons)
    eps_map = {a: (l2 if a == "pgd_l2" else linf) for a in attacks}
    for a, grid in eps_map.items():
        if not grid or any(not (math.isfinite(e) and e >= 0) for e in grid):
            raise ValueError(f"epsilons for {a} must be a non-empty list of budgets >= 0")
        if not any(e > 0 for e in grid):
            raise ValueError(f"epsilons for {a} must contain at least one budget > 0")
    for name, value in (
        ("batch_size", batch_size),
        ("max_epochs", max_epochs),
        ("eval_every_steps", eval_every_steps),
        ("pgd_steps", pgd_steps),
        ("restarts", restarts),
        ("masking_steps", masking_steps),
        ("masking_restarts", masking_restarts),
        ("finetune_epochs", finetune_epochs),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    if n_test is not None and (
        isinstance(n_test, bool) or not isinstance(n_test, int) or n_test < 10
    ):
        raise ValueError(f"n_test must be an int >= 10 or None, got {n_test!r}")
    if not hidden or any(not isinstance(h, int) or h < 1 for h in hidden):
        raise ValueError(f"hidden must be a non-empty tuple of positive ints, got {hidden!r}")
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
    do_interventions = interventions and "bio" in rules and "adam" in rules
    start_all = time.perf_counter()
    runs: list[dict[str, Any]] = []
    extra: list[dict[str, Any]] = []
    receptive: dict[str, Any] = {}
    rule_settings: dict[str, Any] = {}
    data = None
    for seed in seed_list:
        data = load_robustness_data(dataset, seed, val_fraction)
        if n_test is not None:
            data["test"] = tuple(t[:n_test] for t in data["test"])
        for split in ("train", "val", "test"):  # the same tensors (no copy) on the CPU
            data[split] = tuple(t.to(device) for t in data[split])
        n_in = data["n_features"]
        init = BioMLP(n_in, tuple(hidden), 10, on_off=True, seed=seed).state_dict()
        trained: dict[str, nn.Module] = {}
        for rule in rules:
            t0 = time.perf_counter()
            torch.manual_seed(seed)
            model = BioMLP(n_in, tuple(hidden), 10, on_off=True, seed=seed)
            model.load_state_dict(init)
            model.to(device)
            loader = _Batches(*data["train"], batch_size, seed)
            optimizer = make_optimizer(rule, model.parameters())
            rule_settings.setdefault(rule, _optimizer_settings(optimizer))
            training = train_to_accuracy(
                model,
                optimizer,
                loader,
                data["val"],
                target,
                max_epochs,
                eval_every_steps=eval_every_steps,
                device=device,
            )
            model.eval()
            row = {"rule": rule, "seed": seed}
            row["training"] = {k: v for k, v in training.as_dict().items() if k != "history"}
            row.update(_measure(model, data, cfg, init, probes=True))
            row["seconds"] = time.perf_counter() - t0
            runs.append(row)
            trained[rule] = model
            if seed == seed_list[0]:
                receptive[rule] = _receptive_fields(model, data["image_shape"], n_receptive_fields)
            if progress is not None:
                progress(
                    f"{dataset} {rule:8s} seed {seed}: epochs {training.epoch:3d} "
                    f"val {training.accuracy:.3f} test {row['clean_accuracy']:.3f} "
                    f"pgd-mean {row['robust_mean'].get('pgd', math.nan):.3f} "
                    f"conn {row['connectivity']:.3f} ({row['seconds']:.1f}s)"
                )
        if do_interventions:
            extra += _interventions(
                trained,
                data,
                cfg,
                seed,
                target,
                batch_size,
                finetune_epochs,
                eval_every_steps,
                progress,
                dataset,
            )
    results = {
        "schema": SCHEMA,
        "config": {
            "dataset": dataset,
            "model": f"BioMLP({data['n_features']}, {list(hidden)}, 10, on_off=True)",
            "rules": rules,
            "seeds": seed_list,
            "target_accuracy": target,
            "protocol": "train each rule from the same initialisation until validation accuracy "
            f"first reaches the target (checked every {eval_every_steps} steps and every epoch, "
            f"at most {max_epochs} epochs); attack the test set",
            "max_epochs": max_epochs,
            "eval_every_steps": eval_every_steps,
            "batch_size": batch_size,
            "hidden": list(hidden),
            "val_fraction": val_fraction,
            "input_range": list(data["input_range"]),
            "n_test": len(data["test"][1]),
            "attacks": list(attacks) + ([DLR_ATTACK, ENSEMBLE_ATTACK] if dlr else []),
            "epsilons": {**eps_map, **({DLR_ATTACK: linf, ENSEMBLE_ATTACK: linf} if dlr else {})},
            "eps_units": "L-inf: fraction of the input range; L2: norm of the input rescaled "
            "to [0, 1]",
            "pgd_steps": pgd_steps,
            "pgd_step_size": "2.5 * eps / steps",
            "restarts": restarts,
            "apgd_dlr": "torchattacks.APGD(norm='Linf', loss='dlr', steps=pgd_steps, "
            "n_restarts=restarts, seed=0)"
            if dlr
            else None,
            "masking": {k: cfg[k] for k in ("masking_eps", "masking_steps", "masking_restarts")},
            "interventions": do_interventions,
            "finetune_epochs": finetune_epochs,
            "rule_settings": rule_settings,
            "torch": torch.__version__,
        },
        "runs": runs,
        "interventions": extra,
        "receptive_fields": receptive,
    }
    results["summary"] = summarise(runs, extra)
    results["analysis"] = analyse(results)
    results["seconds"] = time.perf_counter() - start_all
    return _jsonable(results)


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


def _interventions(
    trained: Mapping[str, nn.Module],
    data: Mapping[str, Any],
    cfg: Mapping[str, Any],
    seed: int,
    target: float,
    batch_size: int,
    finetune_epochs: int,
    eval_every_steps: int,
    progress: Callable[[str], None] | None,
    dataset: str,
) -> list[dict[str, Any]]:
    bio, adam = trained["bio"], trained["adam"]
    _, bio_conn = _connectivity(bio)
    out = []

    pruned = copy.deepcopy(adam)
    masks = magnitude_prune_(pruned, bio_conn)
    out.append(
        {
            "kind": "adam_pruned_to_bio",
            "seed": seed,
            **_measure(pruned, data, cfg, None, probes=False),
        }
    )

    tuned = copy.deepcopy(pruned)
    torch.manual_seed(seed)
    loader = _Batches(*data["train"], batch_size, seed + 10_000)
    training = _masked_finetune(
        tuned, masks, loader, data["val"], target, finetune_epochs, eval_every_steps
    )
    training.pop("history", None)
    out.append(
        {
            "kind": "adam_pruned_finetuned",
            "seed": seed,
            "training": training,
            **_measure(tuned, data, cfg, None, probes=False),
        }
    )

    scaled = copy.deepcopy(bio)
    adam_scale = weight_scale_stats(adam)
    bio_scale = weight_scale_stats(bio)
    factors = {
        name: adam_scale[name]["frobenius"] / bio_scale[name]["frobenius"]
        for name in bio_scale
        if bio_scale[name]["frobenius"] > 0
    }
    overall = rescale_layers_(scaled, factors)
    row = {
        "kind": "bio_rescaled_to_adam",
        "seed": seed,
        "factors": factors,
        "logit_factor": overall,
        **_measure(scaled, data, cfg, None, probes=False),
    }
    with torch.no_grad():
        same = torch.equal(scaled(data["test"][0]).argmax(1), bio(data["test"][0]).argmax(1))
    row["decisions_unchanged"] = bool(same)
    out.append(row)
    if progress is not None:
        for r in out:
            progress(
                f"{dataset} {r['kind']:22s} seed {seed}: test {r['clean_accuracy']:.3f} "
                f"pgd-mean {r['robust_mean'].get('pgd', math.nan):.3f} "
                f"conn {r['connectivity']:.3f}"
            )
    return out


def summarise(runs: list[dict], extra: Sequence[dict] = ()) -> dict[str, Any]:
    """Mean ± std over seeds per rule (``runs``) and per intervention kind (``extra``): clean
    and robust accuracy per attack and epsilon, ``robust_mean``, ``robust_ratio``,
    connectivity, Lipschitz bound, gradient statistics and, where present, training epochs,
    masking flags and activity statistics (the ``summary`` of :func:`run_robustness`)."""
    groups: dict[str, list[dict]] = {}
    for r in runs:
        groups.setdefault(r["rule"], []).append(r)
    for r in extra:
        groups.setdefault(r["kind"], []).append(r)
    summary = {}
    for key, group in groups.items():
        first = group[0]
        s: dict[str, Any] = {
            "n_runs": len(group),
            "clean_accuracy": _mean_std([g["clean_accuracy"] for g in group]),
            "accuracy": {
                a: [
                    _mean_std([g["curve"]["accuracy"][a][i] for g in group])
                    for i in range(len(first["curve"]["epsilons"][a]))
                ]
                for a in first["curve"]["attacks"]
            },
            "epsilons": first["curve"]["epsilons"],
            "robust_mean": {
                a: _mean_std([g["robust_mean"][a] for g in group]) for a in first["robust_mean"]
            },
            "robust_ratio": {
                a: _mean_std([g["robust_ratio"][a] for g in group]) for a in first["robust_ratio"]
            },
            "connectivity": _mean_std([g["connectivity"] for g in group]),
            "dale_violations_max": max(g["dale_violations"] for g in group),
            "lipschitz_bound": _mean_std([g["lipschitz_bound"] for g in group]),
            "gradients": {
                k: _mean_std([g["gradients"][k] for g in group]) for k in first["gradients"]
            },
        }
        if "training" in first:
            s["epochs"] = _mean_std([g["training"]["epoch"] for g in group])
            s["val_accuracy"] = _mean_std([g["training"]["accuracy"] for g in group])
            s["n_reached"] = sum(bool(g["training"]["reached"]) for g in group)
        if "masking" in first:
            s["masked_runs"] = sum(bool(g["masking"]["masked"]) for g in group)
            s["masking_flags"] = {
                flag: sum(bool(g["masking"].get(flag)) for g in group)
                for flag in (
                    "pgd_weaker_than_fgsm",
                    "large_eps_not_near_chance",
                    "zero_or_nan_gradients",
                )
            }
            s["large_eps_accuracy"] = _mean_std([g["masking"]["large_eps_accuracy"] for g in group])
        if "activity" in first:
            s["activity"] = {
                layer: {k: _mean_std([g["activity"][layer].get(k) for g in group]) for k in stats}
                for layer, stats in first["activity"].items()
            }
        summary[key] = s
    return summary


# --------------------------------------------------------------------------- analysis

#: Predictors correlated with robust accuracy across runs in :func:`analyse`.
PREDICTORS: dict[str, str] = {
    "connectivity": "connectivity",
    "log_lipschitz_bound": "log of the product of layer spectral norms",
    "ce_grad_l1": "mean L1 norm of the loss gradient w.r.t. the input",
    "linearized_radius_linf": "median linearised L-inf radius (margin / L1 norm of its gradient)",
    "logit_margin": "mean logit margin of correct samples",
    "clean_accuracy": "clean test accuracy",
}


def _predictor(run: Mapping[str, Any], name: str) -> float | None:
    if name == "log_lipschitz_bound":
        v = run.get("lipschitz_bound")
        return math.log(v) if v else None
    if name in ("connectivity", "clean_accuracy"):
        return run.get(name)
    return run.get("gradients", {}).get(name)


def _ratio(run: Mapping[str, Any], attack: str) -> float:
    """Robust accuracy as a fraction of the run's clean accuracy (NaN if clean is 0)."""
    value = run.get("robust_ratio", {}).get(attack)
    if value is None:
        clean = run["clean_accuracy"]
        return run["robust_mean"][attack] / clean if clean else math.nan
    return value


def _fraction(move: Mapping[str, Any], gap: Mapping[str, Any]) -> float:
    """Signed fraction of the gap that a move covers (0 when the gap is 0)."""
    return move["mean_diff"] / gap["mean_diff"] if gap["mean_diff"] else 0.0


def _ci_text(p: Mapping[str, Any]) -> str:
    if p.get("ci95_low") is None:
        return f"{p['mean_diff']:+.3f} (n={p['n']}, no CI)"
    return f"{p['mean_diff']:+.3f} [95% CI {p['ci95_low']:+.3f}, {p['ci95_high']:+.3f}]"


def _sign(p: Mapping[str, Any]) -> int:
    """+1 / -1 when the 95% CI excludes 0 above / below, else 0."""
    if p.get("ci95_low") is None:
        return 0
    if p["ci95_low"] > 0:
        return 1
    if p["ci95_high"] < 0:
        return -1
    return 0


def reference_attack(results: Mapping[str, Any]) -> str:
    """The attack the analysis is based on: :data:`ENSEMBLE_ATTACK` when it was run, else PGD."""
    attacks = results["config"]["attacks"]
    for name in (ENSEMBLE_ATTACK, "pgd", DLR_ATTACK, "fgsm"):
        if name in attacks:
            return name
    return attacks[0]


def analyse(results: Mapping[str, Any], attack: str | None = None) -> dict[str, Any]:
    """Paired comparisons, correlations and intervention effects, with plain-language findings.

    ``attack`` defaults to :func:`reference_attack` (the per-sample worst case of PGD and
    APGD-DLR when both were run: the strongest, logit-scale-robust evaluation here).
    Scores are ``robust_mean[a]``, the mean robust accuracy over eps > 0 of attack ``a``;
    differences are paired by seed, with a 95% CI from Student's t over seeds. Rules:

    * ``paired[rule][a]``: ``bio - rule`` for every attack ``a`` (and clean accuracy); *bio
      more robust than rule* iff the CI lies above 0, *less robust* iff below, else *no
      detectable difference*. Findings state this for ``attack`` and, when it was run, for the
      scale-invariant :data:`DLR_ATTACK`.
    * ``correlations[p]``: Spearman rho (and p-value) across all main runs between
      ``robust_mean[attack]`` and each predictor in :data:`PREDICTORS`.
    * ``interventions[kind][a]``: paired ``intervention - source`` differences (source: adam
      for the pruned models, bio for the rescaled one) of robust accuracy per attack, of clean
      accuracy, and the largest absolute change over seeds.
    * ``paired[rule]["ratio"][a]``: the same for robust accuracy divided by clean accuracy
      (the fraction of correctly classified samples that survive), which removes what is left
      of a clean-accuracy mismatch.
    * ``connectivity_explains_gap``: ``"explains"`` iff the bio - adam gap under ``attack`` is
      detectable and pruning adam to bio's connectivity and fine-tuning it under the mask back
      to the validation target moves adam's score *and* its robust / clean ratio towards bio's
      with CIs excluding 0, by at least half of the respective gap; ``"partly explains"`` iff
      one of the two moves has the gap's sign with a CI excluding 0 and covers at least a
      fifth of its gap; otherwise ``"does not explain"`` (or ``"no detectable gap"``).
      ``connectivity_gap_fraction`` holds the two covered fractions.
    * ``weight_scale_irrelevant``: rescaling bio's layers (decision-preserving) changes the
      score of the scale-invariant attack by at most 0.01 in every seed (CE-based attacks may
      still move: that is the attack's sensitivity to logit scale, reported separately).
    """
    attack = reference_attack(results) if attack is None else attack
    runs = results["runs"]
    rules = results["config"]["rules"]
    by_rule: dict[str, dict[int, dict]] = {}
    for r in runs:
        by_rule.setdefault(r["rule"], {})[r["seed"]] = r
    out: dict[str, Any] = {
        "attack": attack,
        "paired": {},
        "correlations": {},
        "interventions": {},
        "findings": [],
    }
    findings = out["findings"]
    all_attacks = list(runs[0]["robust_mean"]) if runs else []
    verdict_attacks = [a for a in ("pgd", DLR_ATTACK, attack) if a in all_attacks]
    verdict_attacks = list(dict.fromkeys(verdict_attacks))
    if "bio" in by_rule:
        for rule in rules:
            if rule == "bio":
                continue
            seeds = sorted(set(by_rule["bio"]) & set(by_rule.get(rule, {})))
            if not seeds:
                continue
            bio, other = by_rule["bio"], by_rule[rule]
            paired = {
                a: _paired([bio[s]["robust_mean"][a] - other[s]["robust_mean"][a] for s in seeds])
                for a in all_attacks
            }
            paired["clean_accuracy"] = _paired(
                [bio[s]["clean_accuracy"] - other[s]["clean_accuracy"] for s in seeds]
            )
            paired["ratio"] = {
                a: _paired([_ratio(bio[s], a) - _ratio(other[s], a) for s in seeds])
                for a in all_attacks
            }
            out["paired"][rule] = paired
            parts = []
            for a in verdict_attacks:
                verdict = {
                    1: "more robust than",
                    -1: "less robust than",
                    0: "not detectably different from",
                }[_sign(paired[a])]
                parts.append(f"{verdict} {rule} under {a} (bio - {rule} = {_ci_text(paired[a])})")
            findings.append(
                "bio is " + "; ".join(parts) + f" [mean robust accuracy over eps > 0; clean "
                f"accuracy bio - {rule} = {_ci_text(paired['clean_accuracy'])}; robust / clean "
                f"accuracy under {attack}: bio - {rule} = {_ci_text(paired['ratio'][attack])}]."
            )
    target = [r["robust_mean"].get(attack) for r in runs]
    for name in PREDICTORS:
        out["correlations"][name] = _spearman([_predictor(r, name) for r in runs], target)
    corr_text = ", ".join(
        f"{name} rho={c['rho']:+.2f} (p={c['p']:.2g})"
        for name, c in out["correlations"].items()
        if c["rho"] is not None
    )
    if corr_text:
        findings.append(
            f"Across {len(runs)} runs, Spearman correlation of {attack} robust accuracy with: "
            f"{corr_text}."
        )

    extra = results.get("interventions") or []
    source_of = {
        "adam_pruned_to_bio": "adam",
        "adam_pruned_finetuned": "adam",
        "bio_rescaled_to_adam": "bio",
    }
    for kind, source in source_of.items():
        rows = [r for r in extra if r["kind"] == kind and r["seed"] in by_rule.get(source, {})]
        if not rows:
            continue
        entry: dict[str, Any] = {"source": source}
        for a in all_attacks:
            diffs = [
                r["robust_mean"][a] - by_rule[source][r["seed"]]["robust_mean"][a] for r in rows
            ]
            entry[a] = {**_paired(diffs), "max_abs": max(abs(d) for d in diffs)}
        entry["ratio"] = {
            a: _paired([_ratio(r, a) - _ratio(by_rule[source][r["seed"]], a) for r in rows])
            for a in all_attacks
        }
        entry["clean_accuracy"] = _paired(
            [r["clean_accuracy"] - by_rule[source][r["seed"]]["clean_accuracy"] for r in rows]
        )
        entry["connectivity"] = _mean_std([r["connectivity"] for r in rows])
        if kind == "bio_rescaled_to_adam":
            entry["decisions_unchanged"] = all(r.get("decisions_unchanged") for r in rows)
        out["interventions"][kind] = entry
    gap = out["paired"].get("adam", {}).get(attack)
    tuned = out["interventions"].get("adam_pruned_finetuned")
    raw = out["interventions"].get("adam_pruned_to_bio")
    if gap is not None and tuned is not None:
        gap_r = out["paired"]["adam"]["ratio"][attack]
        move, move_r = tuned[attack], tuned["ratio"][attack]
        if _sign(gap) == 0:
            level = "no detectable gap"
        elif (
            _sign(move) == _sign(gap)
            and _sign(move_r) == _sign(gap_r)
            and abs(move["mean_diff"]) >= 0.5 * abs(gap["mean_diff"])
            and abs(move_r["mean_diff"]) >= 0.5 * abs(gap_r["mean_diff"])
        ):
            level = "explains"
        elif (_sign(move) == _sign(gap) and _fraction(move, gap) >= 0.2) or (
            _sign(gap_r) != 0 and _sign(move_r) == _sign(gap_r) and _fraction(move_r, gap_r) >= 0.2
        ):
            level = "partly explains"
        else:
            level = "does not explain"
        out["connectivity_gap_fraction"] = {
            "robust": _fraction(move, gap),
            "robust_per_clean": _fraction(move_r, gap_r),
        }
        out["connectivity_explains_gap"] = level
        raw_text = (
            f"; without fine-tuning {_ci_text(raw[attack])} at a clean-accuracy change of "
            f"{_ci_text(raw['clean_accuracy'])}"
            if raw
            else ""
        )
        findings.append(
            "Pruning adam to bio's per-layer connectivity "
            f"(mean {tuned['connectivity']['mean']:.3f}) and fine-tuning it under the mask back "
            f"to the target changed adam's {attack} "
            f"robust accuracy by {_ci_text(move)} (clean {_ci_text(tuned['clean_accuracy'])}; "
            f"robust / clean {_ci_text(move_r)}){raw_text}. The bio - adam gap is "
            f"{_ci_text(gap)} (robust / clean {_ci_text(gap_r)}): "
            + (
                "there is no detectable gap for connectivity to explain."
                if _sign(gap) == 0
                else f"the pruning moves cover {_fraction(move, gap):.0%} (robust) and "
                f"{_fraction(move_r, gap_r):.0%} (robust / clean) of the gap, so connectivity "
                f"{level} it (explains: both moves have the gap's sign with CIs excluding 0 and "
                "cover at least half of it; partly: one of them has the gap's sign with a CI "
                "excluding 0 and covers at least a fifth)."
            )
        )
    scaled = out["interventions"].get("bio_rescaled_to_adam")
    if scaled is not None:
        changes = ", ".join(f"{a} by at most {scaled[a]['max_abs']:.3f}" for a in all_attacks)
        text = (
            "Rescaling every bio layer to adam's Frobenius norm with compensated biases (logits "
            "multiplied by a constant; predictions unchanged: "
            f"{'yes' if scaled.get('decisions_unchanged') else 'no'}) changed robust accuracy "
            f"{changes}."
        )
        if DLR_ATTACK in scaled:
            invariant = scaled[DLR_ATTACK]["max_abs"] <= 0.01
            out["weight_scale_irrelevant"] = bool(invariant)
            text += (
                f" Under the scale-invariant {DLR_ATTACK} the change is "
                + ("negligible (<= 0.01)" if invariant else "not negligible (> 0.01)")
                + ": absolute weight scale "
                + ("does not change robustness" if invariant else "changes robustness")
                + "; changes under cross-entropy attacks measure how their strength depends on "
                "logit scale (softmax saturation), not a change of the model's robustness."
            )
        findings.append(text)
    return out


# --------------------------------------------------------------------------- output


def _fmt(ms: Mapping[str, Any] | None, digits: int = 3) -> str:
    if not ms or ms.get("mean") is None:
        return "n/a"
    return f"{ms['mean']:.{digits}f} ± {ms['std']:.{digits}f}"


def format_markdown(results: Mapping[str, Any]) -> str:
    """The results as markdown: protocol, matched-accuracy training, robust accuracy per attack
    and epsilon (mean ± std over seeds, with clean accuracy in every row), masking checks,
    weight scale and gradients, interventions, correlations and findings."""
    cfg = results["config"]
    summary = results["summary"]
    rules = [r for r in cfg["rules"] if r in summary]
    lines = [
        f"# Robustness at matched clean accuracy: {cfg['dataset']}",
        "",
        f"Model {cfg['model']}; rules {', '.join(rules)}; seeds {cfg['seeds']} "
        f"(mean ± std over seeds). Protocol: {cfg['protocol']} (target validation accuracy "
        f"{cfg['target_accuracy']}). Test set: {cfg['n_test']} samples; epsilon units: "
        f"{cfg['eps_units']}; input range {[round(v, 3) for v in cfg['input_range']]}. PGD: "
        f"{cfg['pgd_steps']} steps, step {cfg['pgd_step_size']}, {cfg['restarts']} restart(s). "
        "Robust accuracy counts a sample only if it is also correct when clean.",
        "",
        "## Training to the target",
        "",
        "| rule | reached | epochs | validation acc. | clean test acc. | connectivity | "
        "Dale violations |",
        "|---|---|---|---|---|---|---:|",
    ]
    for rule in rules:
        s = summary[rule]
        lines.append(
            f"| {rule} | {s.get('n_reached', 'n/a')}/{s['n_runs']} | {_fmt(s.get('epochs'), 1)} "
            f"| {_fmt(s.get('val_accuracy'))} | {_fmt(s['clean_accuracy'])} "
            f"| {_fmt(s['connectivity'])} | {s['dale_violations_max']} |"
        )
    for attack in cfg["attacks"]:
        eps = cfg["epsilons"][attack]
        lines += [
            "",
            f"## {attack}: robust accuracy vs epsilon",
            "",
            "| rule | clean | " + " | ".join(f"eps={e:g}" for e in eps) + " | mean (eps>0) |",
            "|---|---|" + "---|" * (len(eps) + 1),
        ]
        for key in rules + [k for k in INTERVENTIONS if k in summary]:
            s = summary[key]
            cells = " | ".join(_fmt(ms) for ms in s["accuracy"][attack])
            lines.append(
                f"| {key} | {_fmt(s['clean_accuracy'])} | {cells} "
                f"| {_fmt(s['robust_mean'][attack])} |"
            )
    lines += [
        "",
        "## Gradient-masking checks (runs flagged / runs)",
        "",
        "| rule | PGD weaker than FGSM | PGD at eps=1 above chance+0.1 | zero/NaN input grads "
        "| PGD accuracy at eps=1 |",
        "|---|---|---|---|---|",
    ]
    for rule in rules:
        s = summary[rule]
        if "masking_flags" not in s:
            continue
        f = s["masking_flags"]
        lines.append(
            f"| {rule} | {f['pgd_weaker_than_fgsm']}/{s['n_runs']} "
            f"| {f['large_eps_not_near_chance']}/{s['n_runs']} "
            f"| {f['zero_or_nan_gradients']}/{s['n_runs']} | {_fmt(s['large_eps_accuracy'])} |"
        )
    lines += [
        "",
        "## Weight scale and input sensitivity",
        "",
        "| model | clean | connectivity | Lipschitz bound | logit margin | loss-gradient L1 "
        "| linearised L-inf radius |",
        "|---|---|---|---|---|---|---|",
    ]
    for key in rules + [k for k in INTERVENTIONS if k in summary]:
        s = summary[key]
        g = s["gradients"]
        lines.append(
            f"| {key} | {_fmt(s['clean_accuracy'])} | {_fmt(s['connectivity'])} "
            f"| {_fmt(s['lipschitz_bound'], 1)} | {_fmt(g['logit_margin'], 2)} "
            f"| {_fmt(g['ce_grad_l1'], 2)} | {_fmt(g['linearized_radius_linf'], 4)} |"
        )
    activity_rows = []
    for rule in rules:
        act = summary[rule].get("activity", {})
        for layer, stats in act.items():
            if "population_sparseness" in stats:
                activity_rows.append(
                    f"| {rule} | {layer} | {_fmt(stats['population_sparseness'])} "
                    f"| {_fmt(stats['lifetime_sparseness'])} | {_fmt(stats['silent_fraction'])} "
                    f"| {_fmt(stats['participation_ratio'], 1)} | {_fmt(stats['skewness'], 2)} |"
                )
    if activity_rows:
        lines += [
            "",
            "## Hidden activity (test set)",
            "",
            "| rule | layer | population sparseness | lifetime sparseness | silent fraction "
            "| participation ratio | skewness |",
            "|---|---|---|---|---|---|---|",
            *activity_rows,
        ]
    analysis = results.get("analysis", {})
    if analysis.get("correlations"):
        lines += [
            "",
            f"## Correlation with {analysis['attack']} robust accuracy across runs (Spearman)",
            "",
            "| predictor | rho | p | n |",
            "|---|---|---|---|",
        ]
        for name, c in analysis["correlations"].items():
            rho = "n/a" if c["rho"] is None else f"{c['rho']:+.2f}"
            p = "n/a" if c["p"] is None else f"{c['p']:.2g}"
            lines.append(f"| {PREDICTORS.get(name, name)} | {rho} | {p} | {c['n']} |")
    if analysis.get("findings"):
        lines += ["", "## Findings (computed by `analyse`, rules in its docstring)", ""]
        lines += [f"- {f}" for f in analysis["findings"]]
    if results.get("command"):
        lines += ["", f"Produced by `{results['command']}` in {results.get('seconds', 0):.0f} s."]
    return "\n".join(lines) + "\n"


_COLORS = {
    "bio": "tab:green",
    "adam": "tab:blue",
    "eg": "tab:orange",
    "enforced": "tab:red",
    "sgd": "tab:purple",
    "adam_pruned_to_bio": "tab:cyan",
    "adam_pruned_finetuned": "tab:gray",
    "bio_rescaled_to_adam": "olive",
}
_ATTACK_TITLES = {
    "fgsm": "FGSM (L-inf)",
    "pgd": "PGD (L-inf)",
    "pgd_l2": "PGD (L2)",
    "apgd_dlr": "APGD-DLR (L-inf, scale-invariant)",
    "linf_ensemble": "worst of PGD and APGD-DLR (L-inf)",
}


def _new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def plot_robustness_curves(
    results: Mapping[str, Any], path: str | Path, *, include_interventions: bool = False
) -> Path:
    """Accuracy vs epsilon per attack: mean over seeds with a ±1 std band per rule; the legend
    gives each rule's clean test accuracy. Writes a PNG and returns its path."""
    cfg = results["config"]
    summary = results["summary"]
    keys = [r for r in cfg["rules"] if r in summary]
    if include_interventions:
        keys += [k for k in INTERVENTIONS if k in summary]
    attacks = cfg["attacks"]
    ncols = min(3, len(attacks))
    nrows = math.ceil(len(attacks) / ncols)
    fig = _new_figure(4.4 * ncols, 3.6 * nrows + 0.4)
    axes = fig.subplots(nrows, ncols, squeeze=False).reshape(-1)
    for ax in axes[len(attacks) :]:
        ax.set_visible(False)
    n_seeds = len(cfg["seeds"])
    clean = [summary[k]["clean_accuracy"]["mean"] or 0.0 for k in keys]
    top = min(1.0, max(0.2, 1.1 * max(clean, default=1.0)))
    from matplotlib.ticker import MaxNLocator

    for ax, attack in zip(axes, attacks, strict=False):
        eps = cfg["epsilons"][attack]
        for key in keys:
            s = summary[key]
            mean = [m["mean"] for m in s["accuracy"][attack]]
            std = [m["std"] for m in s["accuracy"][attack]]
            color = _COLORS.get(key)
            style = "--" if key in INTERVENTIONS else "-"
            label = f"{key} (clean {s['clean_accuracy']['mean']:.3f})"
            ax.plot(eps, mean, style, marker="o", ms=3, color=color, label=label)
            ax.fill_between(
                eps,
                [m - d for m, d in zip(mean, std, strict=True)],
                [m + d for m, d in zip(mean, std, strict=True)],
                color=color,
                alpha=0.18,
                linewidth=0,
            )
        ax.axhline(0.1, color="k", lw=0.8, ls=":", label="chance (0.1)")
        unit = "L2 norm, input scaled to [0, 1]" if attack == "pgd_l2" else "fraction of range"
        ax.set_xlabel(f"epsilon ({unit})")
        ax.set_ylabel("robust test accuracy")
        ax.set_ylim(0, top)
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.set_title(_ATTACK_TITLES.get(attack, attack))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="upper right")
    fig.suptitle(
        f"{cfg['dataset']}: accuracy under attack at matched clean accuracy "
        f"(target {cfg['target_accuracy']}), mean ± std over {n_seeds} seeds"
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def plot_robustness_analysis(results: Mapping[str, Any], path: str | Path) -> Path:
    """Three panels: robust accuracy (mean over eps > 0 of the reference attack) per run against
    connectivity and against the linearised L-inf radius, and the intervention effects."""
    cfg = results["config"]
    attack = results.get("analysis", {}).get("attack") or reference_attack(results)
    fig = _new_figure(13.0, 3.9)
    ax1, ax2, ax3 = fig.subplots(1, 3)
    for rule in cfg["rules"]:
        rows = [r for r in results["runs"] if r["rule"] == rule]
        y = [r["robust_mean"][attack] for r in rows]
        ax1.scatter([r["connectivity"] for r in rows], y, color=_COLORS.get(rule), label=rule)
        ax2.scatter(
            [r["gradients"]["linearized_radius_linf"] for r in rows],
            y,
            color=_COLORS.get(rule),
            label=rule,
        )
    for kind in INTERVENTIONS:
        rows = [r for r in results.get("interventions", []) if r["kind"] == kind]
        if rows:
            y = [r["robust_mean"][attack] for r in rows]
            ax1.scatter(
                [r["connectivity"] for r in rows],
                y,
                marker="x",
                color=_COLORS.get(kind),
                label=kind,
            )
            ax2.scatter(
                [r["gradients"]["linearized_radius_linf"] for r in rows],
                y,
                marker="x",
                color=_COLORS.get(kind),
                label=kind,
            )
    ylab = "robust accuracy, mean over eps > 0"
    ax1.set_xlabel("connectivity (fraction of synapses present)")
    ax1.set_ylabel(ylab)
    ax1.set_title("robustness vs connectivity")
    ax2.set_xlabel("linearised L-inf radius (fraction of input range)")
    ax2.set_ylabel(ylab)
    ax2.set_title("robustness vs margin / input gradient")
    ax1.legend(fontsize=7)
    labels, values, errors, colors = [], [], [], []
    summary = results["summary"]
    for key in ["bio", "adam", *INTERVENTIONS]:
        if key in summary:
            labels.append(key.replace("_", "\n"))
            values.append(summary[key]["robust_mean"][attack]["mean"])
            errors.append(summary[key]["robust_mean"][attack]["std"])
            colors.append(_COLORS.get(key, "k"))
    ax3.bar(range(len(values)), values, yerr=errors, color=colors, capsize=3)
    ax3.set_xticks(range(len(values)), labels, fontsize=7)
    ax3.set_ylabel(ylab)
    ax3.set_title("interventions (mean ± std over seeds)")
    for ax in (ax1, ax2, ax3):
        ax.grid(alpha=0.3)
    fig.suptitle(
        f"{cfg['dataset']}: is robustness explained by connectivity or weight scale? "
        f"(attack: {_ATTACK_TITLES.get(attack, attack)}; one point per run)"
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def receptive_field_grids(results: Mapping[str, Any]) -> dict[str, Tensor]:
    """:func:`~bioplastic.representation.receptive_field_grid` of each rule's stored filters."""
    grids = {}
    for rule, rf in results.get("receptive_fields", {}).items():
        if rf.get("filters"):
            grids[rule] = receptive_field_grid(torch.tensor(rf["filters"]), rf["image_shape"])
    return grids


def write_results(
    results: Mapping[str, Any], folder: str | Path, *, figures: bool = True
) -> dict[str, Path]:
    """Write ``robustness_<dataset>.json`` and ``.md`` to ``folder`` and, with ``figures``,
    ``figures/robustness_<dataset>.png`` (curves), ``figures/robustness_analysis_<dataset>.png``
    (when interventions ran) and ``figures/receptive_fields_<dataset>.png``. Files are written
    atomically. Returns ``{kind: path}``.
    """
    import json

    from bioplastic._io import write_atomic
    from bioplastic.representation import plot_receptive_fields

    folder = Path(folder)
    dataset = results["config"]["dataset"]
    paths = {
        "json": folder / f"robustness_{dataset}.json",
        "md": folder / f"robustness_{dataset}.md",
    }
    write_atomic(paths["json"], json.dumps(_jsonable(results), indent=1, allow_nan=False) + "\n")
    write_atomic(paths["md"], format_markdown(results))
    if figures:
        fig_dir = folder / "figures"
        paths["curves"] = plot_robustness_curves(results, fig_dir / f"robustness_{dataset}.png")
        if results.get("interventions"):
            paths["analysis"] = plot_robustness_analysis(
                results, fig_dir / f"robustness_analysis_{dataset}.png"
            )
        grids = receptive_field_grids(results)
        if grids:
            one_d = len(next(iter(results["receptive_fields"].values()))["image_shape"]) == 1
            paths["receptive_fields"] = plot_receptive_fields(
                grids,
                fig_dir / f"receptive_fields_{dataset}.png",
                title=f"{dataset}: first-layer effective filters (E-copy minus I-copy), strongest "
                "units per rule",
                xlabel="input position (sample index)" if one_d else "pixel column",
                ylabel="unit (one filter per row)" if one_d else "pixel row",
            )
    return paths
