"""Progress bars and stage timing for the long-running commands; one copy, used everywhere.

Bars are tqdm's, written to stderr, and shown only while stderr is a terminal, so logs, pipes
and tests get the plain lines alone. ``BIOPLASTIC_PROGRESS=0`` turns them off everywhere, as
does ``--no-progress`` on the commands (:func:`set_progress`) and tqdm's own
``TQDM_DISABLE=1``. Lines printed while a bar is drawn go through :func:`say` so they do not
break it. :class:`Stages` adds up the wall time of named stages for the summary lines
("train 12.3 s, eval 1.1 s").

Example::

    stages = Stages()
    for epoch in bar(range(epochs), desc="epochs", unit="epoch"):
        with stages("train"):
            train_one_epoch()
    say(f"done ({stages})")
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TextIO

from tqdm import tqdm

__all__ = [
    "ENV",
    "Stages",
    "bar",
    "format_stages",
    "progress_enabled",
    "say",
    "set_progress",
]

#: Environment variable: ``0``/``false``/``no``/``off`` turns the bars off.
ENV = "BIOPLASTIC_PROGRESS"

_override: bool | None = None


def set_progress(enabled: bool | None) -> None:
    """``False`` turns the bars off in this process (``--no-progress``); ``None`` restores the
    automatic choice (a terminal on stderr, :data:`ENV` not off)."""
    global _override
    if enabled is not None and not isinstance(enabled, bool):
        raise ValueError(f"enabled must be True, False or None, got {enabled!r}")
    _override = enabled


def progress_enabled(stream: TextIO | None = None) -> bool:
    """Whether bars are drawn: not turned off (:func:`set_progress`, :data:`ENV`) and
    ``stream`` (default stderr) a terminal. ``set_progress(True)`` forces them on."""
    if _override is not None:
        return _override
    if os.environ.get(ENV, "").strip().lower() in ("0", "false", "no", "off"):
        return False
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def bar(
    iterable: Iterable[Any] | None = None,
    *,
    total: int | None = None,
    desc: str | None = None,
    unit: str = "it",
    leave: bool = False,
    active: bool = True,
    **kwargs: Any,
) -> tqdm:
    """A tqdm bar on stderr, off unless :func:`progress_enabled` (and ``active``: e.g. only
    on rank 0); ``leave=False`` by default (the summary line says what was done). Other
    keyword arguments go to ``tqdm``."""
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        leave=leave,
        file=sys.stderr,
        dynamic_ncols=True,
        disable=not (active and progress_enabled()),
        **kwargs,
    )


def say(line: str, file: TextIO | None = None) -> None:
    """Print ``line`` (default to stdout, flushed) without breaking a bar being drawn."""
    tqdm.write(line, file=sys.stdout if file is None else file)
    (sys.stdout if file is None else file).flush()


def format_stages(seconds: Mapping[str, float]) -> str:
    """``{"train": 12.34, "eval": 1.1}`` as ``"train 12.3 s, eval 1.1 s"`` (the summary lines)."""
    return ", ".join(f"{name} {float(s):.1f} s" for name, s in seconds.items())


class Stages:
    """Wall time added up per named stage, in the order the stages first ran.

    ``with stages("eval"): ...`` times a block; :meth:`add` records a time measured
    elsewhere; ``str(stages)`` is the summary ("train 12.3 s, eval 1.1 s").
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - start)

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + float(seconds)

    def __str__(self) -> str:
        return format_stages(self.seconds)
