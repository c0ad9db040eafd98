"""``bioplastic train``: one rule, one Dale MLP, one process or many (``torchrun``).

    bioplastic train --rule bio --epochs 10 --out runs/train
    torchrun --standalone --nproc_per_node 2 -m bioplastic.cli train --rule bio --out runs/ddp
    bioplastic train --rule bio --epochs 10 --out runs/train --resume   # after a kill

The loop is :func:`bioplastic.experiments.train.train`; see that module for how ranks split the
global batch, why they stay identical (we seed, not broadcast) and how checkpoints work. Rank 0
prints one line per epoch and writes ``<out>/train.json`` (final accuracy, per-epoch history,
connectivity, Dale violations, and a checksum of weights and optimizer state); every epoch it
writes ``<out>/checkpoint.pt``. ``train.json`` is strict JSON: a NaN or infinite number (e.g.
the loss of a diverged run) is written as ``null``. The output folder is checked before any
training (a file, under a file, read-only: one line, exit status 2) and locked while the run
writes; a folder holding a previous run needs ``--resume`` or ``--overwrite``. SIGTERM: the
current step finishes, a checkpoint is written and the command exits with status 143. Under
torchrun, a rank that does not answer within ``--timeout`` seconds (frozen, deadlocked, gone)
makes the others stop with one line naming it, ``bioplastic train: error: rank 1 of 2 did not
answer within 300 s in epoch 3, batch 7 (...)``, and exit status 1.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import sys
from pathlib import Path
from typing import Any

from bioplastic._io import (
    FolderLocked,
    check_writable_folder,
    json_text,
    lock_folder,
    write_atomic,
)
from bioplastic.cli._args import (
    MAX_SEED,
    CLIError,
    add_progress_argument,
    bounded_int,
    clip,
    error_line,
    out_path,
    positive_int,
    rule_option,
    set_threads,
    threads,
)
from bioplastic.dale import INTERNEURONS

__all__ = ["EXIT_SIGTERM", "add_parser"]

#: Exit status after SIGTERM (128 + 15, as a shell reports a process killed by it).
EXIT_SIGTERM = 143


#: Widest hidden layer, and most weights between hidden layers, ``--hidden`` accepts: a
#: bound far above any useful MLP here, and far below what would exhaust memory.
MAX_WIDTH = 65536
MAX_HIDDEN_WEIGHTS = 10**8


def _widths(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(t) for t in text.split(","))
    except ValueError:
        widths = ()
    if not widths or any(w < 1 for w in widths):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive integers (e.g. 64 or 128,64), got {clip(text)}"
        )
    weights = sum(a * b for a, b in zip(widths, widths[1:], strict=False))
    if max(widths) > MAX_WIDTH or weights > MAX_HIDDEN_WEIGHTS:
        raise argparse.ArgumentTypeError(
            f"at most {MAX_WIDTH} units a layer and {MAX_HIDDEN_WEIGHTS:,} weights between "
            f"hidden layers, got {clip(text)}"
        )
    return widths


def _fraction(lo_open: bool):
    interval = "(0, 1]" if lo_open else "[0, 1]"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not (0 < value <= 1 if lo_open else 0 <= value <= 1):
            raise argparse.ArgumentTypeError(f"expected a number in {interval}, got {clip(text)}")
        return value

    return parse


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {clip(text)}")
    return value


def add_parser(subparsers: Any) -> None:
    """Register ``bioplastic train`` on the ``bioplastic`` subcommand parsers."""
    from bioplastic.baselines import OPTIMIZER_NAMES
    from bioplastic.experiments.train import BACKENDS, DATASETS, DEVICES

    p = subparsers.add_parser(
        "train",
        help="train a Dale MLP with one rule, on one process or under torchrun (DDP)",
        description="Train a Dale MLP on digits or MNIST-1D with one rule, as a plain process "
        "or under 'torchrun --nproc_per_node N' (DistributedDataParallel; the global batch is "
        "split over the ranks). Checkpoints every epoch; --resume continues after a kill.",
    )
    p.add_argument("--dataset", choices=DATASETS, default="digits", help="training data")
    p.add_argument("--rule", choices=OPTIMIZER_NAMES, default="bio", help="learning rule")
    p.add_argument(
        "--rule-option",
        dest="rule_options",
        type=rule_option,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a hyper-parameter of the rule, e.g. noise=0.1 or grow_every=10; repeatable "
        "(default: the rule's defaults; bio anneals its rate over the run, total_steps = "
        "epochs x batches per epoch, unless total_steps is given: total_steps=None for a "
        "constant rate)",
    )
    p.add_argument("--hidden", type=_widths, default=(64,), help="comma-separated hidden widths")
    p.add_argument(
        "--interneurons",
        type=_fraction(lo_open=False),
        default=None,
        help="feedforward inhibition: this fraction of interneurons in every layer after the "
        f"first (default: {INTERNEURONS} for --rule bio, whose homeostasis keeps them "
        "balanced; 0, the plain Dale MLP, for the other rules)",
    )
    p.add_argument("--epochs", type=positive_int, default=10, help="total epochs")
    p.add_argument(
        "--batch-size", type=positive_int, default=32, help="global batch size, split over ranks"
    )
    p.add_argument(
        "--seed", type=bounded_int(0, MAX_SEED), default=0, help="model, rule and data-order seed"
    )
    p.add_argument(
        "--consolidate",
        type=_fraction(lo_open=False),
        default=0.0,
        help="fraction of synapses consolidated after each epoch (bio, eg; 0: off)",
    )
    p.add_argument(
        "--consolidate-factor",
        type=_fraction(lo_open=True),
        default=0.5,
        help="plasticity factor in (0, 1] of a consolidation",
    )
    p.add_argument(
        "--device", choices=DEVICES, default="auto", help="auto: CUDA when available, else the CPU"
    )
    p.add_argument(
        "--backend", choices=BACKENDS, default="auto", help="process-group backend under torchrun"
    )
    p.add_argument(
        "--timeout",
        type=_seconds,
        default=300,
        metavar="SECONDS",
        help="under torchrun: how long a rank waits for the others before it stops with an "
        "error naming the rank that did not answer",
    )
    p.add_argument("--out", type=out_path, default=Path("runs/train"), help="output folder")
    p.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint.pt")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a previous run in --out (its checkpoint.pt and train.json)",
    )
    p.add_argument(
        "--save-rank-states",
        action="store_true",
        help="every rank also writes its final state to <out>/rank-<r>.pt (to compare ranks)",
    )
    p.add_argument("--threads", type=threads, default=1, help="torch threads per rank")
    add_progress_argument(p)
    p.set_defaults(run=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from bioplastic.experiments.train import RankTimeout

    try:
        return _run(args)
    except (FolderLocked, OSError) as err:
        if isinstance(err, FolderLocked) or err.errno == errno.ENOSPC:
            raise CLIError(f"{err.strerror}") from None
        raise
    except RankTimeout as err:  # every rank that waited says which rank did not answer
        print(error_line("bioplastic train", err), file=sys.stderr, flush=True)
        return 1
    except (ValueError, CLIError):
        if os.environ.get("RANK", "0") != "0":
            return 2  # under torchrun, rank 0 reports the same error once
        raise


def _run(args: argparse.Namespace) -> int:
    from bioplastic.distributed import TrainingInterrupted, init_distributed, shutdown
    from bioplastic.experiments.train import TrainConfig

    if args.resume and args.overwrite:
        raise CLIError("--resume and --overwrite exclude each other")
    config = TrainConfig(
        dataset=args.dataset,
        rule=args.rule,
        rule_options=dict(args.rule_options),
        hidden=args.hidden,
        interneurons=args.interneurons,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        consolidate=args.consolidate,
        consolidate_factor=args.consolidate_factor,
        out=args.out,
        resume=args.resume,
        save_rank_states=args.save_rank_states,
        overwrite=args.overwrite,
        timeout=args.timeout,
    )
    config.validate()
    set_threads(args.threads)
    info = init_distributed(args.device, args.backend, timeout_s=config.timeout)
    try:
        if info.is_main:  # only rank 0 writes: check its folder before any compute
            check_writable_folder(args.out)
        with lock_folder(args.out) if info.is_main else contextlib.nullcontext():
            _train_and_report(config, info)
    except TrainingInterrupted as stop:
        if info.is_main:
            print(f"bioplastic train: {stop}", file=sys.stderr, flush=True)
        return EXIT_SIGTERM
    finally:
        shutdown(info)
    return 0


def _train_and_report(config: Any, info: Any) -> dict[str, Any]:
    from bioplastic._progress import format_stages, say
    from bioplastic.experiments.train import train

    result = train(config, info, progress=say)
    if info.is_main:
        path = config.out / "train.json"
        write_atomic(path, json_text(result))
        print(
            f"test accuracy {result['test_accuracy']:.4f}, connectivity "
            f"{result['connectivity']:.3f}, Dale violations {result['dale_violations']}, "
            f"checksum {result['checksum'][:16]} "
            f"({format_stages(result.get('stages_s', {}))})",
            flush=True,
        )
        print(f"wrote {path} and {config.out / 'checkpoint.pt'}", flush=True)
    return result
