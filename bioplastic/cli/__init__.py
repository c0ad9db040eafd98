"""The ``bioplastic`` command line: one module per subcommand.

Each subcommand imports the experiment drivers (and through them Avalanche or learn2learn)
only when it runs, so ``bioplastic --help`` and ``bioplastic compare`` work with the core alone.
"""

from __future__ import annotations

import argparse
import sys

from bioplastic._progress import set_progress
from bioplastic.cli import compare, fewshot, report, stream, train
from bioplastic.cli._args import CLIError, Parser, error_line

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="bioplastic",
        description="A sign-preserving, structurally plastic learning rule: benchmarks and "
        "comparisons.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for module in (compare, stream, train, fewshot, report):
        module.add_parser(sub)
    return parser


def _prog_of(parser: argparse.ArgumentParser, argv: list[str]) -> str:
    """``bioplastic <command>`` when the first word of ``argv`` names a subcommand."""
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    command = next((word for word in argv if not word.startswith("-")), None)
    return f"bioplastic {command}" if command in commands else "bioplastic"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``bioplastic`` command; returns the exit status.

    Every bad input (a bad argument, a bad value found by the library, a missing data folder)
    is one line on stderr, ``bioplastic <command>: error: <message>``, and exit status 2.
    """
    parser = build_parser()
    prog = _prog_of(parser, sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(argv)
        set_progress(False if getattr(args, "no_progress", False) else None)
        return args.run(args)
    except CLIError as err:
        print(
            error_line(prog if err.prog in (None, "bioplastic") else err.prog, err), file=sys.stderr
        )
        return 2
    except (ValueError, FileNotFoundError, NotADirectoryError) as err:  # found by the library
        print(error_line(prog, err), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
