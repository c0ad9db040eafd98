"""Validation of ``BioRule``'s hyper-parameters, and the sets of values its options accept.

One place for the allowed ranges: the constructor, ``add_param_group`` and
``BioRule.validate_options`` all call :func:`validate_group`.
"""

from __future__ import annotations

import math
import warnings

from bioplastic._checks import check_number

__all__ = ["CONSOLIDATE_BY", "GROUP_KEYS", "LATER_OPTIONS", "validate_group"]

_GROW_MODES = ("random", "gradient")
_PRUNE_MODES = ("unit", "relative", "absolute")
_NORMALIZE_BY = ("tensor", "row", "factored")
_DEPENDENCE_ON = ("both", "potentiation")
_OTHER_RULES = ("adam", "sgd")
#: Accepted values of ``BioRule.consolidate(by=...)`` (also ``BioRule.CONSOLIDATE_BY``).
CONSOLIDATE_BY = ("magnitude", "importance")
_MAX_ADDITIVE = 1e6  # bound of other_lr and weight_decay
_MIN_SATURATION, _MAX_SATURATION = 1e-6, 1e6  # bounds of a saturation level above 0


#: Every key a ``BioRule`` param group may hold: its hyper-parameters (a test keeps this equal
#: to ``BioRule``'s defaults) and the keys torch itself uses.
GROUP_KEYS = frozenset(
    """lr momentum grad_beta decay cost weight_dependence weight_dependence_on saturation
    fan_in_exponent
    normalize_by noise noise_halflife total_steps
    noise_reuse max_step prune_threshold prune_mode budget_rate warmup grow_every grow_fraction
    grow_mode grow_scale max_connectivity other other_lr betas eps weight_decay synapse
    normalize homeostasis track_importance protect_consolidated foreach fused""".split()
)
_TORCH_GROUP_KEYS = frozenset({"params", "param_names", "initial_lr"})
#: Options added after rule v2, each with the value that is the rule without it: a state dict
#: saved before one existed loads with that value (``BioRule.load_state_dict``), so a resumed
#: run goes on with the rule it was trained with even where the default has changed since
#: (``saturation``). Any other missing option is left missing (an older rule's are not guessed).
LATER_OPTIONS: dict[str, object] = {
    "fused": False, "weight_dependence": 1.0, "weight_dependence_on": "both",
    "saturation": 0.0, "total_steps": None,
}  # fmt: skip


def _check_choice(group: dict, key: str, choices: tuple[str, ...]) -> None:
    if group[key] not in choices:
        raise ValueError(f"{key} must be one of {choices}, got {group[key]!r}")


def validate_group(group: dict) -> None:
    """Raise a ValueError naming the first hyper-parameter of ``group`` out of its range,
    or the keys of ``group`` that are no hyper-parameter (a typo would be silently ignored)."""
    unknown = sorted(set(group) - GROUP_KEYS - _TORCH_GROUP_KEYS)
    if unknown:
        raise ValueError(
            f"unknown BioRule param group keys {unknown}; allowed: {sorted(GROUP_KEYS)}"
        )
    check_number("lr", group["lr"], 0.0, math.inf, lo_open=True, hi_open=True)
    check_number("momentum", group["momentum"], 0.0, 1.0, hi_open=True)
    check_number("grad_beta", group["grad_beta"], 0.0, 1.0, hi_open=True)
    check_number("decay", group["decay"], 0.0, math.inf, hi_open=True)
    check_number("cost", group["cost"], 0.0, math.inf, hi_open=True)
    check_number("fan_in_exponent", group["fan_in_exponent"], 0.0, 2.0)
    check_number("weight_dependence", group["weight_dependence"], 0.0, 1.0)
    _check_choice(group, "weight_dependence_on", _DEPENDENCE_ON)
    # 0 (none), or a level whose scalars stay within float32's range: the fast path divides
    # the cost by it (inf, and 0 * inf on absent synapses, below ~1e-38)
    check_number("saturation", group["saturation"], 0.0, _MAX_SATURATION)
    if 0 < group["saturation"] < _MIN_SATURATION:
        raise ValueError(
            f"saturation must be 0 (none) or in [{_MIN_SATURATION:g}, {_MAX_SATURATION:g}], "
            f"got {group['saturation']!r}"
        )
    _check_choice(group, "normalize_by", _NORMALIZE_BY)
    check_number("noise", group["noise"], 0.0, math.inf, hi_open=True)
    check_number("noise_halflife", group["noise_halflife"], 0.0, math.inf, hi_open=True)
    nr = group["noise_reuse"]
    if not isinstance(nr, int) or isinstance(nr, bool) or nr < 1:
        raise ValueError(
            f"noise_reuse must be an int >= 1 (1: a fresh draw per synapse), got {nr!r}"
        )
    if group["max_step"] is not None:
        check_number("max_step", group["max_step"], 0.0, math.inf, lo_open=True, hi_open=True)
    check_number("prune_threshold", group["prune_threshold"], 0.0, math.inf, hi_open=True)
    _check_choice(group, "prune_mode", _PRUNE_MODES)
    check_number("budget_rate", group["budget_rate"], 0.0, 1.0)
    wu = group["warmup"]
    if not isinstance(wu, int) or isinstance(wu, bool) or wu < 0:
        raise ValueError(f"warmup must be an int >= 0 (0: no warm-up), got {wu!r}")
    ts = group["total_steps"]
    if ts is not None and (not isinstance(ts, int) or isinstance(ts, bool) or ts < 1):
        raise ValueError(f"total_steps must be None (a constant rate) or an int >= 1, got {ts!r}")
    ge = group["grow_every"]
    if not isinstance(ge, int) or isinstance(ge, bool) or ge < 0:
        raise ValueError(f"grow_every must be an int >= 0 (0 disables growth), got {ge!r}")
    check_number("grow_fraction", group["grow_fraction"], 0.0, 1.0)
    if ge and not group["grow_fraction"]:
        warnings.warn(
            f"BioRule: grow_every={ge} with grow_fraction=0 grows nothing; set grow_fraction "
            "(the fraction of absent synapses grown per growth event) to enable growth",
            UserWarning,
            stacklevel=4,
        )
    _check_choice(group, "grow_mode", _GROW_MODES)
    check_number("grow_scale", group["grow_scale"], 0.0, math.inf, lo_open=True, hi_open=True)
    check_number("max_connectivity", group["max_connectivity"], 0.0, 1.0, lo_open=True)
    _check_choice(group, "other", _OTHER_RULES)
    # An additive step beyond these is a divergence, and torch's float32 kernels cannot take
    # much larger scalars (they raise); the bio rule's own lr has no such bound.
    check_number("other_lr", group["other_lr"], 0.0, _MAX_ADDITIVE)
    betas = group["betas"]
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"betas must be a pair of numbers in [0, 1), got {betas!r}")
    check_number("betas[0]", betas[0], 0.0, 1.0, hi_open=True)
    check_number("betas[1]", betas[1], 0.0, 1.0, hi_open=True)
    check_number("eps", group["eps"], 0.0, math.inf, lo_open=True, hi_open=True)
    check_number("weight_decay", group["weight_decay"], 0.0, _MAX_ADDITIVE)
    if not (group["synapse"] is None or isinstance(group["synapse"], bool)):
        raise ValueError(f"synapse must be None, True or False, got {group['synapse']!r}")
    for key in (
        "normalize",
        "homeostasis",
        "track_importance",
        "protect_consolidated",
        "foreach",
        "fused",
    ):
        if not isinstance(group[key], bool):
            raise ValueError(f"{key} must be a bool, got {group[key]!r}")
