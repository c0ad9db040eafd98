"""Quiet imports of optional third-party libraries, shared by the integrations.

The core never needs these libraries; ``strategies`` calls the helpers here so that the
workarounds for their import-time noise are written once.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import sys
import warnings
from types import ModuleType

__all__ = ["import_learn2learn"]


def import_learn2learn() -> ModuleType:
    """Import and return ``learn2learn`` without gym's deprecation banner.

    learn2learn 0.2.0 imports ``gym``, whose ``__init__`` prints a multi-line "Gym has been
    unmaintained" notice to stderr (a ``print``, not a warning, so warning filters cannot stop
    it). Importing gym first with stderr captured hides that notice only; errors raised by
    learn2learn itself still propagate. The import goes through :mod:`importlib` so that the
    core has no static dependency on learn2learn (SPEC section 2).

    Raises:
        ImportError: learn2learn is not installed (``pip install 'bioplastic[fewshot]'``).

    Example::

        >>> l2l = import_learn2learn()          # doctest: +SKIP
        >>> l2l.algorithms.MAML                 # doctest: +SKIP
    """
    if "gym" not in sys.modules:
        with contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"gym(\.|$)")
            with contextlib.suppress(ImportError):
                importlib.import_module("gym")
    try:
        return importlib.import_module("learn2learn")
    except ImportError as err:
        raise ImportError(
            "this feature needs learn2learn: pip install 'bioplastic[fewshot]' "
            "(see scripts/setup.sh for building it on Python >= 3.11)"
        ) from err
