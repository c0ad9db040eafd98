"""``bioplastic stream``: continual-learning strategies side by side on an offline task stream.

Trains each strategy (the bio rule and the Avalanche baselines) on the same stream and seeds,
prints one progress line per experience and the final table (final average accuracy,
Avalanche's forgetting, the max-based forgetting "F (max)", BWT, connectivity, Dale violations;
mean ± std over seeds), and writes
``results.json``/``results.md``, TensorBoard logs and checkpoints under
``<logdir>/<stream>-<scenario>/``. ``--resume`` picks up an interrupted comparison;
``--overwrite`` replaces a previous one (without either, a folder holding one is refused, so
a previous run is never deleted silently). The folder is locked while the comparison runs.
Checkpoints are read with ``torch.load(weights_only=True)``: a planted file cannot run code.
``--trust-checkpoint`` reads them with pickle instead (unsafe: only for checkpoints you wrote
yourself with an older bioplastic).

The work is done by :func:`bioplastic.experiments.stream.run_stream_comparison`, imported only
when the command runs: ``bioplastic`` itself imports without Avalanche.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bioplastic._io import FolderLocked, check_writable_folder
from bioplastic.cli._args import (
    CLIError,
    add_device_argument,
    add_progress_argument,
    csv_choices,
    out_path,
    positive_int,
    resolve_cli_device,
    set_threads,
    threads,
)
from bioplastic.data import SCENARIOS, available_streams

__all__ = ["AVALANCHE_STREAMS", "STRATEGY_CHOICES", "add_parser"]

#: The names of ``strategies.avalanche.STRATEGY_NAMES``, repeated here so that parsing (and
#: ``--help``) does not import Avalanche; a test keeps the two equal.
STRATEGY_CHOICES: tuple[str, ...] = (
    "bio", "naive", "ewc", "si", "mas", "lwf", "replay", "packnet", "eg", "enforced",
    "bio+replay",
)  # fmt: skip
DEFAULT_STRATEGIES = "bio,naive,ewc,si,mas,lwf,replay,packnet,eg,enforced"
#: Streams read from local IDX files: they need ``--root``.
_FILE_STREAMS = ("mnist", "fashion-mnist")
#: Avalanche's own benchmarks (``bioplastic.experiments.stream.real.AVALANCHE_STREAMS``),
#: repeated so that parsing does not import Avalanche; a test keeps the two equal. They read
#: torchvision's files from ``--root`` and never download.
AVALANCHE_STREAMS: tuple[str, ...] = (
    "avalanche-permuted-mnist", "avalanche-split-cifar10", "avalanche-split-cifar100",
    "avalanche-split-fmnist", "avalanche-split-mnist",
)  # fmt: skip


def add_parser(subparsers: Any) -> None:
    """Register ``bioplastic stream`` on the ``bioplastic`` subcommand parsers."""
    p = subparsers.add_parser(
        "stream",
        help="continual-learning strategies side by side on a task stream (Avalanche)",
        description="Train the bio strategy and the continual-learning baselines on the same "
        "offline task stream and seeds; print and write final average accuracy, forgetting "
        "(Avalanche's and the max-based one), "
        "BWT, connectivity and Dale violations, with TensorBoard logs.",
    )
    p.add_argument(
        "--stream",
        choices=(*available_streams(), *AVALANCHE_STREAMS),
        default="split-digits",
        help="an offline stream, or avalanche-* for Avalanche's own benchmark classes "
        "(SplitMNIST, PermutedMNIST, SplitFMNIST, SplitCIFAR10/100) read from --root "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--scenario",
        choices=SCENARIOS,
        default="task",
        help="task-, class- or domain-incremental",
    )
    p.add_argument(
        "--strategies",
        type=csv_choices(STRATEGY_CHOICES),
        default=DEFAULT_STRATEGIES,
        help=f"comma-separated, from {','.join(STRATEGY_CHOICES)}",
    )
    p.add_argument(
        "--seeds",
        type=positive_int,
        default=None,
        help="number of seeds (default: 5; 1 with --quick)",
    )
    p.add_argument(
        "--epochs",
        type=positive_int,
        default=None,
        help="epochs per experience (default: 10; 3 with --quick)",
    )
    p.add_argument("--logdir", type=out_path, default=Path("runs"), help="output folder")
    p.add_argument(
        "--resume", action="store_true", help="reuse finished runs, continue interrupted ones"
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a previous comparison in the folder (deletes its runs as they restart)",
    )
    p.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="UNSAFE: resume from checkpoints with pickle, which runs any code a planted file "
        "holds; only for checkpoints you wrote with an older bioplastic",
    )
    p.add_argument(
        "--quick", action="store_true", help="short version: 3 epochs, fewer samples, 1 seed"
    )
    p.add_argument("--threads", type=threads, default=1, help="torch threads")
    p.add_argument(
        "--root",
        type=out_path,
        default=None,
        help="folder of the dataset files (default: none; needed by the MNIST and "
        "Fashion-MNIST streams (IDX files) and the avalanche-* streams (torchvision's layout: "
        "ROOT/MNIST/raw, ROOT/FashionMNIST/raw, ROOT/cifar-10-batches-py, ROOT/cifar-100-python))",
    )
    add_device_argument(p)
    add_progress_argument(p)
    p.set_defaults(run=_run_stream)


def _check(args: argparse.Namespace) -> None:
    needs_root = args.stream in AVALANCHE_STREAMS or (
        args.stream.removeprefix("split-").removeprefix("permuted-") in _FILE_STREAMS
    )
    if needs_root and args.root is None:
        raise CLIError(f"--stream {args.stream} needs --root (the dataset files)")
    if args.stream in AVALANCHE_STREAMS and args.scenario == "domain":
        raise CLIError(f"--stream {args.stream} supports --scenario class or task")
    if not needs_root and args.root is not None:
        raise CLIError(f"--root only applies to MNIST and avalanche-* streams, not {args.stream}")
    if needs_root and not args.root.is_dir():
        raise CLIError(f"--root {args.root} is not a folder")
    if args.resume and args.overwrite:
        raise CLIError("--resume and --overwrite exclude each other")
    resolve_cli_device(args.device)  # CUDA asked for where there is none: before any folder


@contextlib.contextmanager
def _without_avalanche_deprecations() -> Iterator[None]:
    """Hide Avalanche's own DeprecationWarnings from the command's output.

    Avalanche 0.6.0's ``deprecated`` decorator calls ``warnings.simplefilter`` on every call,
    which defeats ordinary filters, so the warnings are dropped where they are shown.
    """
    original = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, DeprecationWarning) and "avalanche" in str(filename):
            return
        original(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = original


def _run_stream(args: argparse.Namespace) -> int:
    with _without_avalanche_deprecations():
        return _run_stream_quietly(args)


def _run_stream_quietly(args: argparse.Namespace) -> int:
    _check(args)
    try:
        from bioplastic._progress import say
        from bioplastic.experiments.stream import format_markdown, run_stream_comparison
        from strategies.avalanche import STRATEGY_NAMES
    except ImportError as err:
        raise CLIError(f"needs Avalanche ({err}); install bioplastic[avalanche]") from None
    if set(STRATEGY_NAMES) != set(STRATEGY_CHOICES):  # pragma: no cover - caught by a test
        raise RuntimeError("cli_stream.STRATEGY_CHOICES is out of date with STRATEGY_NAMES")
    try:
        check_writable_folder(args.logdir, "--logdir")  # before any compute
    except ValueError as err:
        raise CLIError(f"{err}") from None
    set_threads(args.threads)
    strategies = args.strategies.split(",") if isinstance(args.strategies, str) else args.strategies
    seeds = args.seeds if args.seeds is not None else (1 if args.quick else 5)
    n_runs = len(strategies) * seeds
    runs_done = [0]

    def progress(line: str) -> None:
        if ": done" in line or "finished earlier" in line:
            runs_done[0] += 1
        say(f"[{runs_done[0]}/{n_runs}] {line}")

    stream_kwargs = {"root": args.root} if args.root is not None else None
    try:
        results = run_stream_comparison(
            stream=args.stream,
            scenario=args.scenario,
            strategies=strategies,
            seeds=seeds,
            epochs=args.epochs,
            logdir=args.logdir,
            resume=args.resume,
            quick=args.quick,
            progress=progress,
            stream_kwargs=stream_kwargs,
            device=None if args.device == "auto" else args.device,
            overwrite=args.overwrite,
            trust_checkpoint=args.trust_checkpoint,
        )
    except (FileNotFoundError, FolderLocked) as err:
        raise CLIError(err.strerror if isinstance(err, FolderLocked) else str(err)) from None
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
        raise CLIError(err.strerror) from None
    folder = args.logdir / f"{args.stream}-{args.scenario}"
    print()
    print(format_markdown(results))
    print(f"wrote {folder / 'results.json'} and {folder / 'results.md'}")
    print(f"TensorBoard: tensorboard --logdir {args.logdir}", file=sys.stdout)
    return 0
