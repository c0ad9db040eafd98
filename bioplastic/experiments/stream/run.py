"""The stream comparison's driver: arguments, streams and the loop over seeds and strategies."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from bioplastic._checks import check_int
from bioplastic._device import resolve_device
from bioplastic._io import lock_folder, remove_stale_temporaries, write_atomic
from bioplastic.data import SCENARIOS, Stream, available_streams, make_stream
from bioplastic.experiments._common import write_json
from bioplastic.experiments.stream.markdown import format_markdown
from bioplastic.experiments.stream.one_run import (
    AfterExperience,
    Progress,
    _Comparison,
    _normal,
    _run_one,
)
from bioplastic.experiments.stream.real import (
    AVALANCHE_STREAMS,
    AvalancheStream,
    check_avalanche_stream,
    make_avalanche_stream,
)
from bioplastic.experiments.stream.summary import _aggregate, check_targets
from strategies.avalanche.config import COMMON, STRATEGY_NAMES, strategy_defaults

__all__ = ["DEFAULT_STRATEGIES", "QUICK", "run_stream_comparison"]

logger = logging.getLogger("bioplastic.experiments.stream")  # the name it had as one module

#: The strategies compared by default (``bio+replay`` is for the class-incremental table).
DEFAULT_STRATEGIES: tuple[str, ...] = (
    "bio", "naive", "ewc", "si", "mas", "lwf", "replay", "packnet", "eg", "enforced",
)  # fmt: skip

#: What ``quick=True`` changes: fewer epochs and samples (stream keyword arguments win).
QUICK: dict[str, int] = {
    "epochs": 3,
    "max_train_per_experience": 128,
    "max_test_per_experience": 64,
}

_FORMAT = "bioplastic-stream-comparison"


def _seed_list(seeds: int | Sequence[int]) -> list[int]:
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        return list(range(check_int("seeds", seeds)))
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence):
        raise ValueError(f"seeds must be a positive int or a sequence of ints >= 0, got {seeds!r}")
    out = list(seeds)
    if not out or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in out):
        raise ValueError(f"seeds must be a positive int or a sequence of ints >= 0, got {seeds!r}")
    if len(set(out)) != len(out):
        raise ValueError(f"seeds must be distinct, got {out}")
    return out


def _strategy_list(strategies: Sequence[str]) -> list[str]:
    if isinstance(strategies, str):
        strategies = [s.strip() for s in strategies.split(",") if s.strip()]
    names = list(strategies)
    if not names:
        raise ValueError("strategies must name at least one strategy")
    unknown = [n for n in names if n not in STRATEGY_NAMES]
    if unknown:
        raise ValueError(
            f"unknown strategies {', '.join(map(repr, unknown))}; choose from "
            f"{', '.join(STRATEGY_NAMES)}"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"strategies must be distinct, got {names}")
    return names


def run_stream_comparison(
    stream: str = "split-digits",
    scenario: str = "task",
    strategies: Sequence[str] = DEFAULT_STRATEGIES,
    seeds: int | Sequence[int] = 5,
    epochs: int | None = None,
    logdir: str | Path = "runs/",
    resume: bool = False,
    quick: bool = False,
    progress: Progress | None = None,
    stream_kwargs: Mapping[str, Any] | None = None,
    device: str | torch.device | None = None,
    after_experience: AfterExperience | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    overwrite: bool = False,
    trust_checkpoint: bool = False,
) -> dict[str, Any]:
    """Train ``strategies`` on the same stream and seeds; aggregate and write the results.

    Args:
        stream: a name of :func:`bioplastic.data.available_streams`.
        scenario: ``"class"``, ``"task"`` or ``"domain"``.
        strategies: names of :data:`strategies.avalanche.STRATEGY_NAMES` (or one comma list).
        seeds: a number ``n`` (seeds ``0..n-1``) or the seeds themselves (ints >= 0). Seed ``k``
            seeds the stream (class order, split), the model and the training.
        epochs: epochs per experience; default :data:`COMMON` ``["train_epochs"]`` (10), or 3
            with ``quick``.
        logdir: results go to ``logdir/<stream>-<scenario>/`` (module docstring).
        resume: reuse finished runs and continue interrupted ones from their checkpoints; the
            settings must match those in the folder's ``manifest.json``.
        quick: a short version (:data:`QUICK`: 3 epochs, at most 128 training and 64 test
            samples per experience).
        progress: called with one line per experience and per run (default: logged at INFO).
        stream_kwargs: more arguments of :func:`make_stream` (``n_experiences``, ``root`` for
            MNIST files, ``max_train_per_experience``, ...); a ``seed`` here fixes the stream
            for all seeds.
        device: ``None``: CUDA when available, else the CPU.
        after_experience: called as ``(strategy, seed, experience)`` after each experience is
            trained, evaluated and checkpointed; an exception raised there stops the comparison
            as a kill would (tests use it to check resuming).
        overrides: per strategy name, keyword arguments of :func:`make_strategy` that replace
            the defaults of :mod:`strategies.avalanche.config` (``optimizer_kwargs``,
            ``consolidate``, ``ewc_lambda``, ...) and ``model`` (arguments of
            :func:`make_model`, e.g. ``{"on_off": True}``), e.g. ``{"bio": {"optimizer_kwargs":
            {"noise": 0.1}}}``; for tuning scripts. Recorded with each run.
        overwrite: replace a previous comparison in the folder (its runs are deleted as they
            start again). Without it (or ``resume``) a folder holding one is refused: a
            previous run is never deleted silently.
        trust_checkpoint: **unsafe**: resume from checkpoints with pickle, which runs any
            code a planted file holds (:func:`strategies.avalanche.load_checkpoint`'s
            ``trusted``); only for checkpoints you wrote with an older bioplastic. By default
            they are read with ``torch.load(weights_only=True)``.

    The folder ``logdir/<stream>-<scenario>`` is locked while the comparison runs
    (:func:`bioplastic._io.lock_folder`): a second comparison writing there is refused.

    Returns:
        ``{"format", "config", "runs": [...], "summary": {strategy: ...}, "targets": ...}``,
        also written to ``results.json`` (and :func:`format_markdown` to ``results.md``).

    Raises:
        ValueError: an unknown stream, scenario or strategy, a bad number, a folder holding
            a previous comparison without ``resume``/``overwrite``, or (with ``resume``) one
            with other settings, or a corrupted or unsafe checkpoint. Nothing is written
            before the arguments are checked.
        bioplastic._io.FolderLocked: another comparison writes to the folder.
    """
    names, seed_list, epochs, kwargs, overrides = _check_arguments(
        stream, scenario, strategies, seeds, epochs, logdir, quick, stream_kwargs, overrides
    )
    device = resolve_device(device)
    report: Progress = progress if progress is not None else logger.info

    def build_stream(seed: int) -> Stream | AvalancheStream:
        if stream in AVALANCHE_STREAMS:
            return make_avalanche_stream(stream, scenario, seed, **kwargs)
        return make_stream(stream, scenario=scenario, **{"seed": seed, **kwargs})

    streams = {seed_list[0]: build_stream(seed_list[0])}  # checks the stream arguments
    config = _normal(
        {
            "stream": stream,
            "scenario": scenario,
            "n_experiences": streams[seed_list[0]].n_experiences,
            "epochs": epochs,
            "quick": bool(quick),
            "stream_kwargs": {k: str(v) if isinstance(v, Path) else v for k, v in kwargs.items()},
        }
    )
    root = Path(logdir) / f"{stream}-{scenario}"
    _check_previous(root, resume, overwrite)
    with lock_folder(root):
        if resume:
            remove_stale_temporaries(root)
        comparison = _Comparison(root, config, resume=bool(resume))
        options = {
            "epochs": epochs,
            "resume": bool(resume),
            "device": device,
            "progress": report,
            "after_experience": after_experience,
            "trusted": bool(trust_checkpoint),
        }
        runs = _run_all(comparison, names, seed_list, streams, build_stream, overrides, options)
        return _write_results(root, config, names, seed_list, runs)


def _check_previous(root: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to start over in a folder holding a comparison unless told to overwrite it."""
    if resume and overwrite:
        raise ValueError("resume and overwrite exclude each other")
    if resume or overwrite or not root.is_dir():
        return
    previous = [p.name for p in sorted(root.iterdir()) if not p.name.startswith(".")]
    if previous:
        raise ValueError(
            f"{root} holds a previous comparison ({', '.join(previous[:4])}); pass --resume "
            "(resume=True) to continue it or --overwrite (overwrite=True) to replace it"
        )


def _run_all(
    comparison: _Comparison, names: list[str], seed_list: list[int], streams: dict[int, Stream],
    build_stream: Callable[[int], Stream], overrides: dict[str, dict[str, Any]],
    options: dict[str, Any],
) -> list[dict[str, Any]]:  # fmt: skip
    """Every strategy on every seed, in order (:func:`_run_one` with ``options``)."""
    runs = []
    for seed in seed_list:
        data = streams.pop(seed) if seed in streams else build_stream(seed)
        for name in names:
            runs.append(
                _run_one(comparison, name, seed, data, overrides=overrides.get(name, {}), **options)
            )
    return runs


def _write_results(root: Path, config: dict[str, Any], names: list[str], seed_list: list[int],
                   runs: list[dict[str, Any]]) -> dict[str, Any]:  # fmt: skip
    """Aggregate the runs and write ``results.json`` and ``results.md``."""
    results = {
        "format": _FORMAT,
        "version": 1,
        "config": {**config, "strategies": names, "seeds": seed_list},
        "runs": runs,
        "summary": _aggregate(runs, names),
    }
    results["targets"] = check_targets(results)
    write_json(root / "results.json", results)
    write_atomic(root / "results.md", format_markdown(results))
    logger.info("wrote %s and %s", root / "results.json", root / "results.md")
    return results


def _check_arguments(
    stream: str,
    scenario: str,
    strategies: Sequence[str],
    seeds: int | Sequence[int],
    epochs: int | None,
    logdir: str | Path,
    quick: bool,
    stream_kwargs: Mapping[str, Any] | None,
    overrides: Mapping[str, Mapping[str, Any]] | None,
) -> tuple[list[str], list[int], int, dict[str, Any], dict[str, dict[str, Any]]]:
    """The checked arguments of :func:`run_stream_comparison`, defaults filled in:
    ``(names, seeds, epochs, stream_kwargs, overrides)``; raises what it documents."""
    if stream not in (*available_streams(), *AVALANCHE_STREAMS):
        valid = ", ".join((*available_streams(), *AVALANCHE_STREAMS))
        raise ValueError(f"unknown stream {stream!r}; valid names: {valid}")
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario must be one of {', '.join(SCENARIOS)}, got {scenario!r}")
    names = _strategy_list(strategies)
    seed_list = _seed_list(seeds)
    if epochs is None:
        epochs = QUICK["epochs"] if quick else COMMON["train_epochs"]
    epochs = check_int("epochs", epochs)
    if "packnet" in names:
        post = strategy_defaults("packnet")["strategy"]["post_prune_epochs"]
        if epochs <= post:
            raise ValueError(f"packnet needs epochs > post_prune_epochs ({post}), got {epochs}")
    if stream_kwargs is not None and not isinstance(stream_kwargs, Mapping):
        raise ValueError(f"stream_kwargs must be a mapping, got {type(stream_kwargs).__name__}")
    kwargs = dict(stream_kwargs or {})
    if "scenario" in kwargs:
        raise ValueError("give the scenario as scenario=, not in stream_kwargs")
    if stream in AVALANCHE_STREAMS:
        check_avalanche_stream(stream, scenario, kwargs)  # quick shortens only the epochs
    elif quick:
        kwargs = {**{k: v for k, v in QUICK.items() if k != "epochs"}, **kwargs}
    if not isinstance(logdir, (str, Path)):
        raise ValueError(f"logdir must be a path, got {type(logdir).__name__}")
    if overrides is not None and not isinstance(overrides, Mapping):
        raise ValueError(f"overrides must be a mapping, got {type(overrides).__name__}")
    overrides = {k: dict(v) for k, v in (overrides or {}).items()}
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise ValueError(f"overrides for strategies not compared: {', '.join(unknown)}")
    return names, seed_list, epochs, kwargs, overrides
