"""The ``bioplastic`` command line.

Subcommands that need Avalanche or learn2learn import the ``strategies`` package lazily, so
``bioplastic compare`` works with the core library alone.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

__all__ = ["main", "write_atomic"]


class CLIError(Exception):
    """A bad command line: reported as one line on stderr with exit status 2."""


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename (never half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _csv(choices: tuple[str, ...]):
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


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not the whole usage text
        raise CLIError(f"{self.prog}: {message}")


def _set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_cli_device(text: str) -> str:
    """Map a ``--device`` value to a torch device string: ``auto`` picks CUDA when it is
    available, else the CPU; ``cuda`` without CUDA raises a one-line :class:`ValueError`."""
    import torch

    if text not in DEVICE_CHOICES:
        raise ValueError(f"--device: expected one of {', '.join(DEVICE_CHOICES)}, got {text!r}")
    if text == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available")
    if text == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return text


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """The ``--device auto|cpu|cuda`` option every training subcommand shares."""
    parser.add_argument(
        "--device",
        choices=DEVICE_CHOICES,
        default="auto",
        help="auto: CUDA when available, else the CPU",
    )


# ------------------------------------------------------------------------------------ compare
def _add_compare(sub) -> None:
    from bioplastic.compare import MODEL_KINDS
    from bioplastic.optim import OPTIMIZER_NAMES

    p = sub.add_parser(
        "compare",
        help="learning rules side by side on the bundled digits (accuracy, sparsity, Dale)",
        description="Train the same Dale-initialised MLPs on scikit-learn's digits with each "
        "rule and report test accuracy, connectivity, Dale violations and log-weight shape.",
    )
    p.add_argument("--rules", type=_csv(OPTIMIZER_NAMES), default="bio,eg,adam,enforced")
    p.add_argument("--models", type=_csv(MODEL_KINDS), default=",".join(MODEL_KINDS))
    p.add_argument("--seeds", type=_positive_int, default=3, help="number of seeds")
    p.add_argument("--epochs", type=_positive_int, default=30)
    p.add_argument("--batch-size", type=_positive_int, default=32)
    p.add_argument("--threads", type=_positive_int, default=1)
    add_device_argument(p)
    p.add_argument("--out", type=Path, default=Path("runs/compare"), help="output folder")
    p.set_defaults(run=_run_compare)


def _run_compare(args: argparse.Namespace) -> int:
    from bioplastic.compare import compare_rules, format_markdown

    _set_threads(args.threads)
    rules = args.rules if isinstance(args.rules, list) else args.rules.split(",")
    models = args.models if isinstance(args.models, list) else args.models.split(",")
    n = len(rules) * len(models) * args.seeds
    done = [0]

    def progress(line: str) -> None:
        done[0] += 1
        print(f"[{done[0]}/{n}] {line}", flush=True)

    results = compare_rules(
        device=resolve_cli_device(args.device),
        rules=rules,
        models=models,
        seeds=range(args.seeds),
        epochs=args.epochs,
        batch_size=args.batch_size,
        progress=progress,
    )
    table = format_markdown(results)
    print()
    print(table)
    write_atomic(args.out / "compare.json", json.dumps(results, indent=1) + "\n")
    write_atomic(args.out / "compare.md", table)
    print(f"wrote {args.out / 'compare.json'} and {args.out / 'compare.md'}")
    return 0


# ------------------------------------------------------------------------------------ main
def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="bioplastic",
        description="A sign-preserving, structurally plastic learning rule: benchmarks and "
        "comparisons.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_compare(sub)
    from bioplastic import cli_fewshot, cli_report, cli_stream

    cli_stream.add_parser(sub)
    from bioplastic import cli_train

    cli_train.add_parser(sub)
    cli_fewshot.add_parser(sub)
    cli_report.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``bioplastic`` command; returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
        return args.run(args)
    except CLIError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except ValueError as err:  # bad values found by the library
        print(f"bioplastic: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
