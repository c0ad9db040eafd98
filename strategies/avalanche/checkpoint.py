"""Checkpoint and resume an Avalanche strategy between experiences.

Avalanche 0.6's ``save_checkpoint``/``maybe_load_checkpoint`` pickle the whole strategy with
dill. That fails for the built-in torch optimizers (dill cannot pickle the classes of
``torch.optim``: "Can't pickle sentinel") and, where it works, drops tensor hooks (PackNet masks
gradients with a hook on each weight; an unpickled PackNet model trains its frozen weights).

:func:`save_checkpoint` stores *state* instead, with ``torch.save``: the model's
``state_dict`` and the structure added by Avalanche's model adaptation (new heads), the
optimizer's ``state_dict`` with the names of its parameters, the state of every plugin and
metric and of the loggers that have one, the strategy's clock and the random generators
(torch, CUDA, NumPy, Python). :func:`load_checkpoint` rebuilds the strategy with your factory
(so hooks and optimizers are made by their own code), restores all of it, and returns the index
of the next training experience. Files are written atomically (temporary file + rename); a
truncated or foreign file gives a one-line ``ValueError`` naming it.

Loading is safe: the file holds only tagged plain values and loads with
``torch.load(weights_only=True)``; Avalanche objects (EWC's importances, replay buffers,
metric accumulators) are re-created only from an allow-list of packages' classes, and nothing
in the file is called, so a planted file cannot run code. The archive's CRCs are checked
before loading, and a :class:`bioplastic.BioRule` state whose weights disagree in sign with
their presynaptic types is refused. ``load_checkpoint(..., trusted=True)`` reads with pickle
(dill) instead: unsafe, only for version-1 files you wrote yourself.

Example::

    def build():
        torch.manual_seed(0)
        return make_strategy("ewc", make_model(stream), evaluator=make_evaluator())

    strategy, start = load_checkpoint(build, "run.ckpt") if os.path.exists("run.ckpt") \\
        else (build(), 0)
    for experience in benchmark.train_stream[start:]:
        strategy.train(experience)
        strategy.eval(benchmark.test_stream)
        save_checkpoint(strategy, "run.ckpt")
"""

from __future__ import annotations

import io
import logging
import os
import pickle
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dill
import torch
from avalanche.models import IncrementalClassifier, MultiHeadClassifier
from avalanche.models.dynamic_modules import DynamicModule, avalanche_model_adaptation
from avalanche.training.templates import BaseTemplate
from torch import nn
from torch.optim import Optimizer

from bioplastic._io import write_atomic_bytes
from bioplastic.distributed import rng_state, set_rng_state, verify_archive, verify_rule_state
from strategies.avalanche.plugins import BioRulePlugin
from strategies.avalanche.safe_format import KEEP, TAG, Decoder, Encoder

__all__ = ["load_checkpoint", "save_checkpoint"]

logger = logging.getLogger(__name__)

_FORMAT = "bioplastic-avalanche-checkpoint"
#: 2: tagged plain values, loaded with ``weights_only=True``; 1: dill (read only when trusted).
_VERSION = 2
# Strategy attributes a plugin may point to; they are restored on their own.
_OWN = ("model", "optimizer")


def _param_names(model: nn.Module) -> dict[int, str]:
    return {id(p): name for name, p in model.named_parameters()}


def _public_attributes(module: nn.Module) -> dict[str, Any]:
    """Plain Python attributes of a dynamic module (known task labels, class counts...)."""
    simple = (int, float, str, bool, type(None), set, frozenset, list, tuple, dict)
    return {
        k: v
        for k, v in vars(module).items()
        if not k.startswith("_") and k != "training" and isinstance(v, simple)
    }


def _plugin_state(plugin: Any, strategy: Any) -> dict[str, Any]:
    """A plugin's ``__dict__`` (or ``__getstate__``) with the strategy's own objects left out.

    Optimizers and LR schedulers are stored as state dicts (``("__state_dict__", ...)``),
    modules are pickled as they are (e.g. LwF's copy of the previous model).
    """
    getstate = getattr(plugin, "__getstate__", None)
    state = getstate() if callable(getstate) else None
    if not isinstance(state, dict):
        state = dict(getattr(plugin, "__dict__", {}))
    own = {id(getattr(strategy, a, None)) for a in _OWN}
    out = {}
    for key, value in state.items():
        if id(value) in own:
            continue
        if isinstance(value, Optimizer) or (
            hasattr(value, "state_dict") and hasattr(value, "optimizer")
        ):
            out[key] = ("__state_dict__", value.state_dict())
        else:
            out[key] = value
    return out


def _restore_plugin(plugin: Any, state: dict[str, Any]) -> None:
    for key, value in state.items():
        if isinstance(value, tuple) and len(value) == 2 and value[0] == "__state_dict__":
            target = getattr(plugin, key, None)
            if target is None or not hasattr(target, "load_state_dict"):
                raise RuntimeError(
                    f"plugin {type(plugin).__name__} has no {key!r} to load a state into"
                )
            target.load_state_dict(value[1])
        elif value is not KEEP:
            setattr(plugin, key, value)


def save_checkpoint(strategy: BaseTemplate, path: str | os.PathLike[str]) -> None:
    """Save everything needed to resume ``strategy`` after the experience it just trained.

    Call it between experiences (not inside the training loop). Writes ``path`` atomically.

    Args:
        strategy: an Avalanche ``SupervisedTemplate`` (``BioPlastic``, ``Naive``, ``EWC``, ...).
        path: the checkpoint file.

    Raises:
        TypeError: ``strategy`` is not an Avalanche strategy.
    """
    if not isinstance(strategy, BaseTemplate):
        raise TypeError(f"strategy must be an Avalanche strategy, got {type(strategy).__name__}")
    model, optimizer = strategy.model, strategy.optimizer
    names = _param_names(model)
    groups = []
    for group in optimizer.param_groups:
        missing = [p for p in group["params"] if id(p) not in names]
        if missing:
            raise ValueError("the optimizer holds parameters that are not in the model")
        groups.append([names[id(p)] for p in group["params"]])
    optimized = getattr(strategy, "optimized_param_id", None)
    evaluator = strategy.evaluator
    plugins = [
        (type(p).__qualname__, _plugin_state(p, strategy))
        for p in strategy.plugins
        if p is not evaluator
    ]
    metrics = [(type(m).__qualname__, _plugin_state(m, strategy)) for m in evaluator.metrics]
    loggers = [
        (type(lg).__qualname__, lg.state_dict()) if hasattr(lg, "state_dict") else None
        for lg in evaluator.loggers
    ]
    dynamic = {
        name: _public_attributes(m)
        for name, m in model.named_modules()
        if isinstance(m, DynamicModule)
    }
    checkpoint = {
        "format": _FORMAT,
        "version": _VERSION,
        "strategy": type(strategy).__qualname__,
        "exp_counter": int(strategy.clock.train_exp_counter),
        "model": model.state_dict(),
        "dynamic_modules": dynamic,
        # not in state_dict, but strategies freeze parameters with it (PackNet's biases)
        "requires_grad": {name: p.requires_grad for name, p in model.named_parameters()},
        "optimizer_class": f"{type(optimizer).__module__}.{type(optimizer).__qualname__}",
        "optimizer": optimizer.state_dict(),
        "optimizer_param_names": groups,
        "optimized_param_names": None if optimized is None else list(optimized),
        "plugins": plugins,
        "metrics": metrics,
        "evaluator": {
            "all_metric_results": dict(evaluator.all_metric_results),
            "last_metric_results": dict(evaluator.last_metric_results),
        },
        "loggers": loggers,
        "rng": rng_state(all_generators=True),
    }
    buffer = io.BytesIO()
    torch.save(Encoder()(checkpoint), buffer)
    write_atomic_bytes(path, buffer.getvalue())
    logger.info("saved checkpoint after %d experiences to %s", checkpoint["exp_counter"], path)


def _read(path: Path, map_location: Any, trusted: bool = False) -> dict[str, Any]:
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.is_dir():
        raise ValueError(f"{path}: a folder, not a checkpoint file")
    verify_archive(path)  # torch.load does not check the CRCs: flipped bytes would load
    try:
        with warnings.catch_warnings():  # foreign pickles make torch warn before it fails
            warnings.simplefilter("ignore")
            if trusted:
                logger.warning("%s: loading with pickle (trusted=True): it can run code", path)
                data = torch.load(path, map_location, pickle_module=dill, weights_only=False)
            else:
                data = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise ValueError(
            f"{path}: refused: it holds objects other than tensors and plain values (loading "
            "it could run code); only if you wrote it yourself, load it with trusted=True "
            "(--trust-checkpoint)"
        ) from None
    except Exception as err:  # truncated, corrupted or not a torch file at all
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{path}: not a readable checkpoint ({reason[:200]})") from None
    if isinstance(data, dict) and data.get(TAG) == "dict":
        try:
            data = Decoder()(data)
        except (ValueError, TypeError, KeyError) as err:
            raise ValueError(f"{path}: refused: {str(err)[:200]}") from None
    if not isinstance(data, dict) or data.get("format") != _FORMAT:
        raise ValueError(f"{path}: not a bioplastic Avalanche checkpoint")
    if data.get("version") != _VERSION and not (trusted and data.get("version") == 1):
        raise ValueError(
            f"{path}: checkpoint version {data.get('version')!r}, this code reads {_VERSION}"
        )
    return data


class _StubExperience:
    """Just what Avalanche's dynamic modules read to add a head or grow a classifier."""

    def __init__(self, classes: list[int], task_label: int):
        self.classes_in_this_experience = classes
        self.task_labels = [task_label]
        self.task_label = task_label


def _head_stubs(model: nn.Module, state: dict[str, Any]) -> list[_StubExperience]:
    """Stub experiences for Avalanche to re-create the heads and classifiers in ``state``."""
    stubs: list[_StubExperience] = []
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        if isinstance(module, MultiHeadClassifier):
            heads = {}
            for key, value in state.items():
                rest = key[len(prefix) :] if key.startswith(prefix) else None
                if rest and rest.startswith("classifiers.") and rest.endswith(".classifier.weight"):
                    heads[int(rest.split(".")[1])] = value.shape[0]
            stubs += [_StubExperience(list(range(n)), tid) for tid, n in sorted(heads.items())]
        elif isinstance(module, IncrementalClassifier) and module._auto_adapt:
            weight = state.get(f"{prefix}classifier.weight")
            if weight is not None:
                stubs.append(_StubExperience(list(range(weight.shape[0])), 0))
    return stubs


def _rebuild_structure(model: nn.Module, state: dict[str, Any], dynamic: dict[str, Any]) -> None:
    """Re-create heads and grown classifiers the checkpointed model had, then its attributes."""
    stubs = _head_stubs(model, state)
    if stubs:
        flags = {m: m.training for m in model.modules()}
        model.eval()
        try:
            for stub in stubs:
                avalanche_model_adaptation(model, stub)
        finally:
            for m, flag in flags.items():
                m.training = flag
    modules = dict(model.named_modules())
    for name, attributes in dynamic.items():
        if name in modules:
            for key, value in attributes.items():
                setattr(modules[name], key, value)
    # Layers given Dale types after construction (new heads) need their buffer back first.
    for key, value in state.items():
        if key.endswith("dale_sign"):
            owner = modules.get(key[: -len(".dale_sign")] if "." in key else "")
            if owner is not None and "dale_sign" not in owner._buffers:
                owner.register_buffer("dale_sign", value.clone())


def load_checkpoint(
    strategy_factory: Callable[[], BaseTemplate] | BaseTemplate,
    path: str | os.PathLike[str],
    map_location: str | torch.device | None = None,
    *,
    trusted: bool = False,
) -> tuple[BaseTemplate, int]:
    """Rebuild a strategy and restore the state :func:`save_checkpoint` wrote.

    Safe by default: the file is read with ``torch.load(weights_only=True)`` (tensors, plain
    containers, numbers, strings), objects are re-created only from an allow-list of classes
    and nothing in the file is called, so a planted file cannot run code. The archive's
    checksums are verified first, and a restored :class:`bioplastic.BioRule` whose weights
    disagree in sign with their presynaptic types is refused (a corrupted file).

    Args:
        strategy_factory: a function building the strategy exactly as for the original run
            (same class, model architecture, plugins, metrics and loggers), or such a freshly
            built strategy.
        path: the checkpoint file.
        map_location: as for ``torch.load`` (default: the strategy's device).
        trusted: **unsafe**: read the file with pickle (dill), which runs whatever code the
            file holds. Only for files you wrote yourself, e.g. checkpoints of bioplastic
            before 0.x (format version 1), which the safe reader refuses.

    Returns:
        ``(strategy, next_experience)``: train on ``train_stream[next_experience:]`` next.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is truncated, corrupted, holds objects that are not allowed, or is
            not a checkpoint of this kind (one line naming the file).
        RuntimeError: the checkpoint does not fit the strategy the factory built.
    """
    path = Path(path)
    strategy = (
        strategy_factory if isinstance(strategy_factory, BaseTemplate) else strategy_factory()
    )
    if not isinstance(strategy, BaseTemplate):
        raise TypeError(
            f"strategy_factory must build an Avalanche strategy, got {type(strategy).__name__}"
        )
    device = getattr(strategy, "device", None)
    data = _read(path, map_location if map_location is not None else device, trusted)
    if data["strategy"] != type(strategy).__qualname__:
        raise RuntimeError(
            f"{path}: checkpoint of a {data['strategy']} strategy, the factory built a "
            f"{type(strategy).__qualname__}"
        )
    _load_model(path, strategy, data, device)
    _load_optimizer(path, strategy, data)
    verify_rule_state(path, strategy.model, strategy.optimizer)
    _load_evaluation(path, strategy, data)
    set_rng_state(data["rng"])
    return strategy, int(data["exp_counter"])


def _load_model(path: Path, strategy: BaseTemplate, data: dict[str, Any], device: Any) -> None:
    """The model's structure (heads), weights, frozen flags and Dale types."""
    model = strategy.model
    _rebuild_structure(model, data["model"], data["dynamic_modules"])
    try:
        model.load_state_dict(data["model"])
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        raise RuntimeError(
            f"{path}: the checkpointed model does not fit the factory's model "
            f"({' '.join(first[:2])[:300]})"
        ) from None
    named = dict(model.named_parameters())
    for name, flag in data["requires_grad"].items():
        if name in named:
            named[name].requires_grad_(flag)
    if device is not None:
        model.to(device)
    for module in model.modules():
        if "dale_sign" in module._buffers and isinstance(
            getattr(module, "weight", None), nn.Parameter
        ):
            module.weight.dale_sign = module.dale_sign


def _load_optimizer(path: Path, strategy: BaseTemplate, data: dict[str, Any]) -> None:
    """The optimizer's state over the parameters it had (by name), and Avalanche's mapping."""
    model = strategy.model
    # The optimizer: the factory's (or, for BioRulePlugin(replace_optimizer=True), the rule).
    saved_class = data["optimizer_class"]
    optimizer = strategy.optimizer
    if f"{type(optimizer).__module__}.{type(optimizer).__qualname__}" != saved_class:
        installers = [
            p for p in strategy.plugins if isinstance(p, BioRulePlugin) and p.replace_optimizer
        ]
        if saved_class.endswith(".BioRule") and installers:
            optimizer = installers[0].install(strategy, dalify_model=False)
        else:
            raise RuntimeError(
                f"{path}: checkpoint of a {saved_class} optimizer, the factory built a "
                f"{type(optimizer).__module__}.{type(optimizer).__qualname__}"
            )
    named = dict(model.named_parameters())
    groups = data["optimizer_param_names"]
    if len(groups) != len(optimizer.param_groups):
        raise RuntimeError(
            f"{path}: checkpoint optimizer has {len(groups)} parameter groups, "
            f"the factory's has {len(optimizer.param_groups)}"
        )
    unknown = [n for names in groups for n in names if n not in named]
    if unknown:
        raise RuntimeError(f"{path}: optimizer parameters missing from the model: {unknown[:5]}")
    for group, names in zip(optimizer.param_groups, groups, strict=True):
        group["params"] = [named[n] for n in names]
    optimizer.state.clear()
    optimizer.load_state_dict(data["optimizer"])
    if data["optimized_param_names"] is not None and hasattr(strategy, "optimized_param_id"):
        strategy.optimized_param_id = {n: named[n] for n in data["optimized_param_names"]}


def _load_evaluation(path: Path, strategy: BaseTemplate, data: dict[str, Any]) -> None:
    """The state of plugins, metrics, the evaluator's results and loggers."""
    evaluator = strategy.evaluator
    plugins = [p for p in strategy.plugins if p is not evaluator]
    _restore_list(path, "plugins", plugins, data["plugins"])
    _restore_list(path, "metrics", evaluator.metrics, data["metrics"])
    evaluator.all_metric_results.clear()
    evaluator.all_metric_results.update(data["evaluator"]["all_metric_results"])
    evaluator.last_metric_results = dict(data["evaluator"]["last_metric_results"])
    saved_loggers = data["loggers"]
    if len(saved_loggers) == len(evaluator.loggers):
        for lg, saved in zip(evaluator.loggers, saved_loggers, strict=True):
            if saved is not None and hasattr(lg, "load_state_dict"):
                lg.load_state_dict(saved[1])
    else:
        logger.warning("%s: %d loggers saved, %d now; logger state not restored",
                       path, len(saved_loggers), len(evaluator.loggers))  # fmt: skip


def _restore_list(path: Path, what: str, objects: list[Any], saved: list[Any]) -> None:
    if len(objects) != len(saved):
        raise RuntimeError(
            f"{path}: checkpoint has {len(saved)} {what}, the factory's strategy {len(objects)}"
        )
    for obj, (qualname, state) in zip(objects, saved, strict=True):
        if type(obj).__qualname__ != qualname:
            raise RuntimeError(
                f"{path}: {what} differ: checkpoint has {qualname}, the factory "
                f"{type(obj).__qualname__}"
            )
        _restore_plugin(obj, state)
