"""The ``bioplastic`` command line: one module per subcommand.

Each subcommand imports the experiment drivers (and through them Avalanche or learn2learn)
only when it runs, so ``bioplastic --help`` and ``bioplastic compare`` work with the core alone.
"""

from __future__ import annotations

import argparse
import sys

from bioplastic.cli import compare, fewshot, report, stream, train
from bioplastic.cli._args import CLIError, Parser

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
