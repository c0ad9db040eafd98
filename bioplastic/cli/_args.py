"""Helpers shared by every ``bioplastic`` subcommand: argument types, the parser, devices."""

from __future__ import annotations

import argparse

from bioplastic._device import DEVICE_CHOICES, resolve_device

__all__ = [
    "CLIError",
    "DEVICE_CHOICES",
    "Parser",
    "add_device_argument",
    "csv_choices",
    "positive_int",
    "resolve_cli_device",
    "set_threads",
]


class CLIError(Exception):
    """A bad command line: reported as one line on stderr with exit status 2."""


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def csv_choices(choices: tuple[str, ...]):
    def parse(text: str) -> list[str]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        bad = [t for t in items if t not in choices]
        if not items or bad:
            raise argparse.ArgumentTypeError(
                f"unknown {', '.join(map(repr, bad)) or 'empty list'}; choose from "
                f"{', '.join(choices)}"
            )
        return items

    return parse


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not the whole usage text
        raise CLIError(f"{self.prog}: {message}")


def set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def resolve_cli_device(text: str) -> str:
    """Map a ``--device`` value to a torch device string (``auto``: CUDA when available);
    ``cuda`` without CUDA raises a one-line :class:`ValueError`."""
    if text not in DEVICE_CHOICES:
        raise ValueError(f"--device: expected one of {', '.join(DEVICE_CHOICES)}, got {text!r}")
    try:
        return resolve_device(text).type
    except ValueError as err:
        raise ValueError(f"--device {err}") from None


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """The ``--device auto|cpu|cuda`` option every training subcommand shares."""
    parser.add_argument(
        "--device",
        choices=DEVICE_CHOICES,
        default="auto",
        help="auto: CUDA when available, else the CPU",
    )
