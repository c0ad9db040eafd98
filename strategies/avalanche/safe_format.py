"""The safe checkpoint format: Avalanche state as tagged plain values.

Plugin, metric and logger state holds Avalanche objects (EWC's importances, replay buffers,
LwF's previous model, metric accumulators). They are stored as tagged plain values --
tensors, lists, numbers, strings, bytes and dicts of ``{"__t__": kind, ...}`` -- so that the
file loads with ``torch.load(weights_only=True)``. Decoding re-creates an object only when
its class comes from an allowed package (``cls.__new__`` plus its ``__dict__``, or its own
``__setstate__``), and refers to a function only from an explicit list: nothing in the file
is ever called.
"""

from __future__ import annotations

import functools
import importlib
import types
from collections import OrderedDict, defaultdict
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["KEEP", "TAG", "Decoder", "Encoder"]

TAG = "__t__"
_PLAIN = (type(None), bool, int, float, str, bytes, torch.Tensor, nn.Parameter)
_ALLOWED_PACKAGES = (
    "avalanche.", "strategies.avalanche.", "bioplastic.", "torch.nn.modules.",
    "torch.utils.data.",
)  # fmt: skip
_ALLOWED_FUNCTIONS = frozenset(
    {
        "torch.utils.data._utils.collate:default_collate",
        "avalanche.benchmarks.utils.transform_groups:identity",
        "torch:zeros",
        "torch:ones",
        "torch:empty",
    }
)
_BUILTIN_TYPES = {t.__name__: t for t in (int, float, str, bool, list, dict, set, tuple)}
_DICTS = {"dict": dict, "OrderedDict": OrderedDict, "defaultdict": defaultdict}


class _Keep:
    """Stands for a lambda or closure a constructor made: the rebuilt plugin keeps its own."""

    def __repr__(self) -> str:
        return "<kept from the factory>"


KEEP = _Keep()


def _name_of(obj: Any) -> str:
    if isinstance(obj, types.BuiltinFunctionType):  # torch.zeros: qualname _VariableFunctions...
        return f"{obj.__module__}:{obj.__name__}"
    return f"{obj.__module__}:{obj.__qualname__}"


class Encoder:
    """Turns a checkpoint into tagged plain values (see the comment above)."""

    def __init__(self) -> None:
        self.seen: dict[int, tuple[Any, int]] = {}  # id -> (object kept alive, number)

    def __call__(self, value: Any, where: str = "checkpoint") -> Any:  # noqa: C901 - a dispatch
        kind = type(value)
        if kind in _PLAIN:
            return value
        if kind is list:
            return [self(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if kind in (tuple, set, frozenset, torch.Size):
            return {TAG: kind.__name__, "items": [self(v, where) for v in value]}
        if kind in _DICTS.values():
            return self._dict(value, where)
        if isinstance(value, np.ndarray) or isinstance(value, np.generic):
            array = np.asarray(value)
            if array.dtype.hasobject:
                raise TypeError(f"cannot checkpoint {where}: a NumPy array of objects")
            return {TAG: "ndarray" if isinstance(value, np.ndarray) else "npscalar",
                    "dtype": array.dtype.str, "shape": list(array.shape),
                    "data": array.tobytes()}  # fmt: skip
        if kind in (torch.dtype, torch.device):
            return {TAG: kind.__name__, "name": str(value)}
        if isinstance(value, (type, types.FunctionType, types.BuiltinFunctionType)):
            return self._reference(value, where)
        if kind is functools.partial:  # Avalanche's transform groups: partial(identity, ...)
            func, args = self._reference(value.func, where), self(value.args, where)
            return {TAG: "partial", "func": func, "args": args,
                    "keywords": self(value.keywords, where)}  # fmt: skip
        return self._object(value, where)

    @staticmethod
    def _reference(value: Any, where: str) -> dict[str, Any]:
        name = _name_of(value)
        if "<" in name:  # a lambda or closure set up by a constructor: the factory's is kept
            return {TAG: "keep"}
        if not isinstance(value, type) and name not in _ALLOWED_FUNCTIONS:
            raise TypeError(f"cannot checkpoint {where}: the function {name.replace(':', '.')}")
        return {TAG: "ref", "name": name}

    def _dict(self, value: dict, where: str) -> dict[str, Any]:
        out = {
            TAG: type(value).__name__,
            "items": [[self(k, where), self(v, f"{where}[{k!r}]")] for k, v in value.items()],
        }
        if isinstance(value, defaultdict):
            out["factory"] = self(value.default_factory, where)
        return out

    def _object(self, value: Any, where: str) -> dict[str, Any]:
        known = self.seen.get(id(value))
        if known is not None:
            return {TAG: "seen", "id": known[1]}
        cls = type(value)
        if not cls.__module__.startswith(_ALLOWED_PACKAGES) or not hasattr(value, "__dict__"):
            raise TypeError(f"cannot checkpoint {where}: a {cls.__module__}.{cls.__qualname__}")
        number = len(self.seen)
        self.seen[id(value)] = (value, number)
        own = cls.__getstate__ is not object.__getstate__
        state = value.__getstate__() if own else value.__dict__
        return {TAG: "obj", "id": number, "cls": _name_of(cls), "setstate": own,
                "state": self(state, f"{where}.{cls.__qualname__}")}  # fmt: skip


def _resolve(name: str, what: str) -> Any:
    """The class or function ``module:qualname`` if allowed, else a ``ValueError``."""
    module, _, qualname = name.partition(":")
    allowed = name in _ALLOWED_FUNCTIONS or (
        f"{module}.".startswith(_ALLOWED_PACKAGES) and "<" not in qualname
    )
    if module == "builtins" and qualname in _BUILTIN_TYPES:
        return _BUILTIN_TYPES[qualname]
    if not allowed:
        raise ValueError(f"refers to {module}.{qualname}, which is not allowed in a checkpoint")
    try:
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        raise ValueError(f"refers to {module}.{qualname}, which does not exist") from None
    if what == "class" and not isinstance(obj, type):
        raise ValueError(f"refers to {module}.{qualname}, which is not a class")
    if name not in _ALLOWED_FUNCTIONS and not isinstance(obj, type):
        raise ValueError(f"refers to the function {module}.{qualname}, which is not allowed")
    return obj


class Decoder:
    """Inverse of :class:`Encoder`; raises ``ValueError`` on anything it does not allow."""

    def __init__(self) -> None:
        self.objects: dict[int, Any] = {}

    def __call__(self, value: Any) -> Any:  # noqa: C901 - a dispatch
        if isinstance(value, list):
            return [self(v) for v in value]
        if not isinstance(value, dict):
            return value
        tag = value.get(TAG)
        if tag in ("tuple", "set", "frozenset", "Size"):
            items = [self(v) for v in value["items"]]
            return {"tuple": tuple, "set": set, "frozenset": frozenset, "Size": torch.Size}[tag](
                items
            )
        if tag in _DICTS:
            out = _DICTS[tag]()
            if tag == "defaultdict":
                out.default_factory = self(value["factory"])
            out.update((self(k), self(v)) for k, v in value["items"])
            return out
        if tag in ("ndarray", "npscalar"):
            array = np.frombuffer(value["data"], dtype=np.dtype(value["dtype"]))
            array = array.reshape(value["shape"]).copy()
            return array if tag == "ndarray" else array[()]
        if tag == "dtype":
            dtype = getattr(torch, str(value["name"]).removeprefix("torch."), None)
            if not isinstance(dtype, torch.dtype):
                raise ValueError(f"unknown dtype {value['name']!r}")
            return dtype
        if tag == "device":
            return torch.device(str(value["name"]))
        if tag == "ref":
            return _resolve(str(value["name"]), "reference")
        if tag == "keep":
            return KEEP
        if tag == "partial":  # builds the partial object; calls nothing
            return functools.partial(self(value["func"]), *self(value["args"]),
                                     **self(value["keywords"]))  # fmt: skip
        if tag == "seen":
            return self.objects[int(value["id"])]
        if tag == "obj":
            return self._object(value)
        raise ValueError(f"unknown entry {str(tag)[:40]!r}")

    def _object(self, value: dict[str, Any]) -> Any:
        cls = _resolve(str(value["cls"]), "class")
        obj = cls.__new__(cls)
        self.objects[int(value["id"])] = obj
        state = self(value["state"])
        if value["setstate"] and hasattr(obj, "__setstate__"):
            obj.__setstate__(state)
        else:
            obj.__dict__.update(state)
        return obj
