"""Helpers shared by every ``bioplastic`` subcommand: argument types, the parser, devices."""

from __future__ import annotations

import argparse
import ast
from pathlib import Path
from typing import Any

from bioplastic._device import DEVICE_CHOICES, resolve_device

__all__ = [
    "CLIError",
    "DEVICE_CHOICES",
    "HelpFormatter",
    "MAX_SEED",
    "MAX_THREADS",
    "Parser",
    "add_device_argument",
    "add_bio_inner_argument",
    "add_progress_argument",
    "bounded_int",
    "clip",
    "csv_choices",
    "error_line",
    "out_path",
    "positive_int",
    "resolve_cli_device",
    "rule_option",
    "set_threads",
    "threads",
]

#: Largest ``--seed``: seeds also feed NumPy and derived per-epoch seeds, which need 32 bits.
MAX_SEED = 2**32 - 1
#: Largest ``--threads`` (torch takes a C int; more threads than this is a typo).
MAX_THREADS = 1024
#: Longest user text quoted in an error message; longer text is cut in the middle.
_MAX_SHOWN = 80
_MAX_MESSAGE = 800  # room for a list of allowed options (BioRule has ~40)


class CLIError(Exception):
    """A bad command line: reported as one line on stderr with exit status 2.

    ``prog`` is the command that failed (``bioplastic stream``); ``None``: the one running.
    """

    def __init__(self, message: str, prog: str | None = None) -> None:
        super().__init__(message)
        self.prog = prog


def clip(text: object, limit: int = _MAX_SHOWN) -> str:
    """``repr(text)`` for an error message, cut in the middle when longer than ``limit``."""
    shown = repr(text)
    if len(shown) <= limit:
        return shown
    half = (limit - 5) // 2
    return f"{shown[:half]}...{shown[-half:]} ({len(str(text))} characters)"


def error_line(prog: str, message: object) -> str:
    """The one error line every ``bioplastic`` command prints: ``<prog>: error: <message>``.

    The message is flattened to one line and cut to a bounded length, so a huge argument
    echoed by a library check cannot flood the terminal.
    """
    text = " ".join(str(message).split())
    if len(text) > _MAX_MESSAGE:
        half = (_MAX_MESSAGE - 5) // 2
        text = f"{text[:half]} ... {text[-half:]}"
    return f"{prog}: error: {text}"


def bounded_int(minimum: int, maximum: int):
    """An argparse type: an integer in ``[minimum, maximum]`` (the message gives the range)."""

    allowed = (
        f"a positive integer (at most {maximum})"
        if minimum == 1
        else f"an integer >= {minimum} (at most {maximum})"
    )

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(f"expected {allowed}, got {clip(text)}")
        return value

    return parse


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {clip(text)}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {clip(text)}")
    return value


#: ``--threads``: torch threads, 1 to :data:`MAX_THREADS`.
threads = bounded_int(1, MAX_THREADS)


def out_path(text: str) -> Path:
    """An argparse type for a folder or file: refuses ``""`` (it would silently mean ``.``)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a path, got an empty string")
    return Path(text)


def csv_choices(choices: tuple[str, ...]):
    def parse(text: str) -> list[str]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        bad = [t for t in items if t not in choices]
        if not items or bad:
            raise argparse.ArgumentTypeError(
                f"unknown {', '.join(clip(b) for b in bad[:5]) or 'empty list'}; choose from "
                f"{', '.join(choices)}"
            )
        repeated = sorted({t for t in items if items.count(t) > 1})
        if repeated:  # a repeated name would run (and count) the same thing twice
            raise argparse.ArgumentTypeError(f"{', '.join(map(repr, repeated))} listed twice")
        return items

    return parse


def _shown(default: object) -> str:
    """A default as a user would type it: ``bio,adam`` for a list, ``runs`` for a path."""
    if isinstance(default, (list, tuple)):
        return ",".join(map(str, default))
    return str(default)


class HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default, ``(default: 64)``, written as the user would
    type it; flags, options without a default (``None``, ``{}``) and help texts that already
    state it (``%(default)s`` or "default:") get no suffix."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            not action.option_strings
            or default is None
            or default is argparse.SUPPRESS
            or isinstance(default, bool)
            or default in ({}, [], ())
            or "%(default)" in text
            or "default:" in text
        ):
            return text
        return f"{text} (default: {_shown(default).replace('%', '%%')})"


class Parser(argparse.ArgumentParser):
    """The parser of ``bioplastic`` and its subcommands: one-line errors, defaults in help."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # one line, not the whole usage text
        raise CLIError(message, prog=self.prog)


def set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def resolve_cli_device(text: str) -> str:
    """Map a ``--device`` value to a torch device string (``auto``: CUDA when available);
    ``cuda`` without CUDA raises a one-line :class:`ValueError`."""
    if text not in DEVICE_CHOICES:
        raise ValueError(f"--device: expected one of {', '.join(DEVICE_CHOICES)}, got {clip(text)}")
    try:
        return resolve_device(text).type
    except ValueError as err:
        message = str(err)  # "device cuda: ..." -> "--device cuda: ..."
        raise ValueError("--" + message if message.startswith("device ") else message) from None


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """The ``--device auto|cpu|cuda`` option every training subcommand shares."""
    parser.add_argument(
        "--device",
        choices=DEVICE_CHOICES,
        default="auto",
        help="auto: CUDA when available, else the CPU",
    )


def add_progress_argument(parser: argparse.ArgumentParser) -> None:
    """``--no-progress``: no progress bars (:mod:`bioplastic._progress`; they are drawn only
    when stderr is a terminal, and ``BIOPLASTIC_PROGRESS=0`` also turns them off)."""
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bars (drawn only on a terminal; BIOPLASTIC_PROGRESS=0 also turns "
        "them off)",
    )


#: Longest rule option value (``KEY=VALUE``): no hyper-parameter needs more.
_MAX_OPTION_LENGTH = 200


def add_bio_inner_argument(parser: argparse.ArgumentParser, who: str) -> None:
    """``--bio-inner KEY=VALUE`` (repeatable) of the few-shot benchmarks: ``who``'s inner step
    over the defaults (``bioplastic.experiments.metatrain.split_inner`` checks the keys)."""
    parser.add_argument(
        "--bio-inner", action="append", default=[], type=rule_option, metavar="KEY=VALUE",
        help=f"{who} inner step: inner_lr, normalize, fan_in_exponent or max_step over the "
        "defaults (repeatable; to study the inner step)",
    )  # fmt: skip


def rule_option(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` of a rule's hyper-parameter: the value as a Python literal, or a bare word."""
    key, sep, raw = text.partition("=")
    key = key.strip().replace("-", "_")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (e.g. noise=0.1), got {clip(text)}")
    if len(raw) > _MAX_OPTION_LENGTH:
        raise argparse.ArgumentTypeError(
            f"the value of {clip(key)} is {len(raw)} characters long (at most {_MAX_OPTION_LENGTH})"
        )
    try:
        value = ast.literal_eval(raw.strip())
    except (ValueError, SyntaxError):
        value = raw.strip()  # a bare word, e.g. grow_mode=random
    return key, value
