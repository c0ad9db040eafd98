"""Task-encoding probes: recruited synapses and units, selectivity, overlap, capacity.

Conventions: see :mod:`bioplastic.probes`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from bioplastic.probes._validation import (
    _check_acts,
    _check_tensor,
)

# --------------------------------------------------------------------------------------------
# task-encoding probes
# --------------------------------------------------------------------------------------------


def recruited_synapses(
    before_weight: Tensor | Mapping[str, Tensor],
    after_weight: Tensor | Mapping[str, Tensor],
    rel_threshold: float = math.log(2.0),
    grown_counts: bool = True,
) -> Tensor | dict[str, Tensor]:
    """Synapses a task recruited: those it grew or strengthened (bool mask, weight-shaped).

    With ``b`` the weight before the task (e.g. at ``before_training_exp``) and ``a`` after it:

    * grown: ``b == 0`` and ``a != 0`` (counted if ``grown_counts``);
    * strengthened: ``b != 0``, ``a != 0`` and ``ln|a| - ln|b| > rel_threshold``
      (``rel_threshold`` in nats of log-magnitude, ``>= 0``; default ``ln 2``: at least doubled).

    Synapses consolidated during the task (an optimizer state) can be OR-ed into the mask by the
    caller. Dicts of per-layer weights (same keys) give a dict of per-layer masks.
    """
    if not rel_threshold >= 0:
        raise ValueError(f"rel_threshold must be >= 0 (nats of log-magnitude), got {rel_threshold}")
    if isinstance(before_weight, Mapping) or isinstance(after_weight, Mapping):
        if not (isinstance(before_weight, Mapping) and isinstance(after_weight, Mapping)):
            raise ValueError("before_weight and after_weight must both be tensors or both dicts")
        if set(before_weight) != set(after_weight):
            raise ValueError(
                "before_weight and after_weight must have the same keys, got "
                f"{sorted(before_weight)} and {sorted(after_weight)}"
            )
        return {
            k: recruited_synapses(before_weight[k], after_weight[k], rel_threshold, grown_counts)
            for k in before_weight
        }
    before = _check_tensor(before_weight, "before_weight")
    after = _check_tensor(after_weight, "after_weight").to(before.device)
    if before.shape != after.shape:
        raise ValueError(
            f"after_weight must have the shape of before_weight {tuple(before.shape)}, "
            f"got {tuple(after.shape)}"
        )
    was, now = before != 0, after != 0
    both = was & now
    # ln|a| - ln|b| > t  <=>  |a| > |b| e^t (both present): no logarithms needed
    mask = both & (after.abs().double() > before.abs().double() * math.exp(rel_threshold))
    if grown_counts:
        mask = mask | (~was & now)
    return mask


class TaskSelectivity(NamedTuple):
    """Result of :func:`task_selectivity`: per-unit index in [0, 1] and preferred task."""

    index: Tensor
    preferred: Tensor


def _check_task_acts(mean_activity_per_task: object) -> Tensor:
    acts = _check_acts(mean_activity_per_task, "mean_activity_per_task", non_negative=True)
    if acts.shape[0] < 2:
        raise ValueError(
            f"mean_activity_per_task must have at least 2 tasks (rows), got {acts.shape[0]}"
        )
    return acts


def task_selectivity(mean_activity_per_task: Tensor) -> TaskSelectivity:
    """Task-selectivity index of each unit and the task it prefers.

    For unit ``u`` with non-negative mean activities ``r_1..r_T`` over ``T >= 2`` tasks,
    ``p = argmax_t r_t`` and ``SI = (r_p - mean_{t != p} r_t) / (r_p + mean_{t != p} r_t)`` in
    ``[0, 1]``: 0 if the unit is equally active in all tasks, 1 if only one task drives it.

    Args:
        mean_activity_per_task: ``[n_tasks, n_units]`` non-negative.

    Returns:
        ``TaskSelectivity(index, preferred)``: ``index`` ``[n_units]`` float64 (NaN for units
        silent in every task), ``preferred`` ``[n_units]`` int64 task index (-1 if silent).
    """
    acts = _check_task_acts(mean_activity_per_task).to(torch.float64)
    n_tasks = acts.shape[0]
    best, preferred = acts.max(dim=0)
    others = (acts.sum(dim=0) - best) / (n_tasks - 1)
    index = (best - others) / (best + others)  # 0/0 = NaN for silent units
    silent = best <= 0
    preferred = torch.where(silent, torch.full_like(preferred, -1), preferred)
    return TaskSelectivity(index=index, preferred=preferred)


def recruited_units(
    mean_activity_per_task: Tensor, rel_activity: float = 0.5, min_activity: float = 0.0
) -> Tensor:
    """Which units each task drives, as a ``[n_tasks, n_units]`` bool mask.

    Task ``t`` recruits unit ``u`` iff ``r[t, u] > min_activity`` and
    ``r[t, u] >= rel_activity * max_t' r[t', u]``, with ``rel_activity`` in ``(0, 1]``
    (1: only the preferred task; smaller values let units be shared). ``r`` is the
    non-negative mean activity per task, ``[n_tasks >= 2, n_units]``.
    """
    acts = _check_task_acts(mean_activity_per_task)
    if not 0 < rel_activity <= 1:
        raise ValueError(f"rel_activity must be in (0, 1], got {rel_activity}")
    if not min_activity >= 0:
        raise ValueError(f"min_activity must be >= 0, got {min_activity}")
    best = acts.amax(dim=0, keepdim=True)
    return (acts > min_activity) & (acts >= rel_activity * best)


def _flatten_mask(mask: object, name: str, keys: list[str] | None) -> Tensor:
    """One flat bool vector from a mask, or from a dict of per-layer masks concatenated in
    the order of ``keys`` (``keys`` is None exactly when a plain tensor is expected)."""
    if isinstance(mask, Mapping):
        if keys is None:
            raise ValueError(f"{name} must be a tensor mask like the others, got a dict")
        if set(mask) != set(keys):
            raise ValueError(f"{name} must have the keys {sorted(keys)}, got {sorted(mask)}")
        if not keys:
            raise ValueError(f"{name} must not be an empty dict")
        parts = [_check_tensor(mask[k], f"{name}[{k!r}]").reshape(-1) for k in keys]
        flat = torch.cat([p.to(parts[0].device) for p in parts])
    else:
        if keys is not None:
            raise ValueError(f"{name} must be a dict of per-layer masks like the others")
        flat = _check_tensor(mask, name).reshape(-1)
    if flat.dtype != torch.bool:
        raise ValueError(f"{name} must be a bool mask, got dtype {flat.dtype}")
    return flat


def _flatten_masks(masks: object, name: str, keys: list[str] | None = None) -> list[Tensor]:
    """Flatten a list of masks (dicts: concatenated in ``keys`` order, default the first
    dict's), all to the same length, on the first mask's device."""
    if isinstance(masks, (Tensor, Mapping, str)) or not isinstance(masks, Sequence):
        raise ValueError(f"{name} must be a list of bool masks (or of dicts of masks)")
    if keys is None and masks and isinstance(masks[0], Mapping):
        keys = list(masks[0])
    flat = [_flatten_mask(m, f"{name}[{i}]", keys) for i, m in enumerate(masks)]
    for i, f in enumerate(flat[1:], start=1):
        if f.shape != flat[0].shape:
            raise ValueError(
                f"{name}[{i}] has {f.numel()} entries but {name}[0] has {flat[0].numel()}"
            )
    return [f.to(flat[0].device) for f in flat]


def jaccard_matrix(masks: Sequence[Tensor | Mapping[str, Tensor]]) -> Tensor:
    """Pairwise overlap ``J[a, b] = |A & B| / |A | B|`` of ``T`` same-shaped bool masks.

    Returns a symmetric ``[T, T]`` float64 tensor with entries in ``[0, 1]`` and a unit
    diagonal; two empty masks count as identical (``J = 1``). Masks may be dicts of per-layer
    masks with the same keys (compared over all layers together).
    """
    flat = _flatten_masks(masks, "masks")
    if not flat:
        raise ValueError("masks must hold at least one mask")
    stacked = torch.stack([f.to(flat[0].device) for f in flat]).to(torch.float64)
    inter = stacked @ stacked.T
    sizes = stacked.sum(dim=1)
    union = sizes[:, None] + sizes[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(inter))


def capacity(
    masks_so_far: Sequence[Tensor | Mapping[str, Tensor]],
    weight: Tensor | Mapping[str, Tensor],
) -> dict[str, float]:
    """How much of the potential synapses the tasks so far have claimed.

    Potential synapses are all entries of ``weight`` (present or not; a dict of per-layer
    weights counts all layers, and the masks must then be dicts with the same keys).
    Returns ``used_fraction`` = ``|union of masks| / #potential`` and
    ``free_fraction = 1 - used_fraction`` (both in ``[0, 1]``),
    ``free_present_fraction``: present synapses (``w != 0``) no task has claimed yet, as a
    fraction of the potential ones, and the counts ``n_potential`` and ``n_used``.
    """
    if isinstance(masks_so_far, (Tensor, Mapping, str)) or not isinstance(masks_so_far, Sequence):
        raise ValueError("masks_so_far must be a list of bool masks (or of dicts of masks)")
    if isinstance(weight, Mapping):
        if not weight:
            raise ValueError("weight must not be an empty dict")
        layers = {}
        for i, mask in enumerate(masks_so_far):
            if not isinstance(mask, Mapping) or set(mask) != set(weight):
                raise ValueError(
                    f"masks_so_far[{i}] must be a dict with the keys of weight {sorted(weight)}"
                )
        for k, w in weight.items():
            layer_masks = [mask[k] for mask in masks_so_far]
            layers[k] = _capacity_counts(
                layer_masks, w, f"masks_so_far[*][{k!r}]", f"weight[{k!r}]"
            )
        n_potential, n_used, n_free_present = (sum(c[j] for c in layers.values()) for j in range(3))
    else:
        n_potential, n_used, n_free_present = _capacity_counts(
            masks_so_far, weight, "masks_so_far", "weight"
        )
    return {
        "used_fraction": n_used / n_potential,
        "free_fraction": 1.0 - n_used / n_potential,
        "free_present_fraction": n_free_present / n_potential,
        "n_potential": n_potential,
        "n_used": n_used,
    }


def _capacity_counts(
    masks: Sequence[object], weight: object, masks_name: str, weight_name: str
) -> tuple[int, int, int]:
    """(#potential, #claimed by some mask, #present and unclaimed) for one layer."""
    weight = _check_tensor(weight, weight_name)
    used = torch.zeros_like(weight, dtype=torch.bool)
    for i, mask in enumerate(masks):
        name = masks_name.replace("[*]", f"[{i}]") if "[*]" in masks_name else f"{masks_name}[{i}]"
        mask = _check_tensor(mask, name)
        if mask.dtype != torch.bool:
            raise ValueError(f"{name} must be a bool mask, got dtype {mask.dtype}")
        if mask.shape != weight.shape:
            raise ValueError(
                f"{name} has shape {tuple(mask.shape)}, {weight_name} has {tuple(weight.shape)}"
            )
        used |= mask.to(weight.device)
    return weight.numel(), int(used.sum()), int(((weight != 0) & ~used).sum())


def allocation_matrix(unit_masks: Sequence[Tensor | Mapping[str, Tensor]] | Tensor) -> Tensor:
    """Task x unit allocation heatmap: ``A[t, u] = 1.0`` if task ``t`` recruited unit ``u``.

    ``unit_masks`` is a list of ``T`` bool masks over units (dicts of per-layer masks are
    concatenated in the first dict's key order), or a ``[T, n_units]`` bool tensor such as
    :func:`recruited_units` returns. Returns ``[T, n_units]`` float32 in ``{0, 1}``, ready for
    ``SummaryWriter.add_image`` (with ``dataformats="HW"``).
    """
    if isinstance(unit_masks, Tensor):
        masks = _check_tensor(unit_masks, "unit_masks", dim=2)
        if masks.dtype != torch.bool:
            raise ValueError(f"unit_masks must be a bool mask, got dtype {masks.dtype}")
        return masks.to(torch.float32)
    flat = _flatten_masks(unit_masks, "unit_masks")
    if not flat:
        raise ValueError("unit_masks must hold at least one mask")
    return torch.stack([f.to(flat[0].device) for f in flat]).to(torch.float32)
