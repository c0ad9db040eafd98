"""The continual-learning section: accuracy matrices and task allocation."""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from bioplastic.experiments._figures import new_figure
from bioplastic.experiments.report._context import (
    NOT_RUN,
    Claim,
    ReportContext,
    Section,
    _combine,
    _not_run,
    _num,
)


def _matrices(data: Any, pattern: re.Pattern, path: tuple = ()) -> Iterator[tuple[str, list]]:
    """Every 2-D numeric array under a key matching ``pattern``, with its dotted path."""
    if isinstance(data, Mapping):
        for key, value in data.items():
            here = (*path, str(key))
            if pattern.search(str(key).lower()) and _is_matrix(value):
                yield ".".join(here), value
            else:
                yield from _matrices(value, pattern, here)
    elif isinstance(data, list) and not _is_matrix(data):
        for i, value in enumerate(data):
            yield from _matrices(value, pattern, (*path, str(i)))


def _is_matrix(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) > 0
        and all(
            isinstance(row, list) and len(row) == len(value[0]) and len(row) > 0 for row in value
        )
        and all(_num(v) is not None or v is None for row in value for v in row)
    )


def _label(path: str) -> str:
    """Strategy-like label of a matrix path: drop list indices and the last key."""
    parts = [p for p in path.split(".")[:-1] if not p.isdigit()]
    drop = {"strategies", "results", "runs", "experiences", "metrics", "summary"}
    parts = [p for p in parts if p not in drop]
    return "/".join(parts) or "run"


def _mean_offdiag_jaccard(alloc: list[list[float]]) -> float | None:
    sets = [{j for j, v in enumerate(row) if _num(v) and v > 0} for row in alloc]
    vals = []
    for a in range(len(sets)):
        for b in range(a + 1, len(sets)):
            union = sets[a] | sets[b]
            vals.append(len(sets[a] & sets[b]) / len(union) if union else 1.0)
    return statistics.fmean(vals) if vals else None


def _summary_unit_overlaps(data: dict) -> dict[str, float]:
    """``summary[strategy]["task_encoding"][-1]["unit_overlap_mean"]`` per strategy, if present.

    This is the stream benchmark's own measure (mean Jaccard overlap between the units two
    tasks recruited, after the last experience); used when no allocation array is stored.
    """
    summary = data.get("summary")
    out: dict[str, float] = {}
    if not isinstance(summary, dict):
        return out
    for label, entry in summary.items():
        encoding = entry.get("task_encoding") if isinstance(entry, dict) else None
        if isinstance(encoding, list) and encoding and isinstance(encoding[-1], dict):
            value = _num(encoding[-1].get("unit_overlap_mean"))
            if value is not None:
                out[str(label)] = value
    return out


def section_continual(ctx: ReportContext) -> Section:
    """Continual-learning accuracy matrices and task-allocation heatmaps from ``stream_*.json``.

    Read defensively (the stream benchmark's schema may evolve; files named ``*tuning*`` are
    skipped): every 2-D numeric array under
    a key containing ``acc`` and ``matrix`` is drawn as an accuracy matrix (rows: after training
    on experience i; columns: evaluated on experience j) and every one under a key containing
    ``alloc`` as a task x unit allocation heatmap; the last one found per strategy label counts.
    Verdict rule: with allocation heatmaps for bio and at least one other strategy in a file,
    bio gets +1 if its mean pairwise Jaccard overlap between tasks' recruited units is lower
    than every other strategy's (more task-specific), -1 if higher than every other's, else 0;
    combined over files as in ``_combine``.
    """
    title = "Continual learning: accuracy matrices and task allocation"
    files = ctx.glob("stream_*.json")
    cmd_default = "the stream benchmark (stream_*.json)"
    if not files:
        return Section(
            title,
            f"*{NOT_RUN}*: no `stream_*.json` in the results folder.",
            [_not_run("allocation", cmd_default, "stream_*.json")],
        )
    acc_re, alloc_re = re.compile(r"acc.*matrix|matrix.*acc"), re.compile(r"alloc")
    lines, signs, evidence, commands = [], [], [], []
    for name, data in files:
        recorded = data.get("command") or (data.get("benchmark") or {}).get("command")
        command = str(recorded or f"(command not recorded in {name})")
        # per-seed matrices under "runs" are summarised per strategy elsewhere in the file;
        # labelled by path they would all fold into one phantom strategy "run"
        accs = {_label(p): m for p, m in _matrices(data, acc_re) if not p.startswith("runs.")}
        allocs = {_label(p): m for p, m in _matrices(data, alloc_re) if not p.startswith("runs.")}
        lines += [f"### {name}", ""]
        if not accs and not allocs:
            lines += [
                "No accuracy matrix or allocation array found; top-level keys: "
                + ", ".join(sorted(map(str, data))),
                "",
            ]
            continue
        stem = Path(name).stem
        if command not in commands:
            commands.append(command)
        if accs:
            lines += _accuracy_lines(ctx, name, stem, accs, data.get("summary"))
        if allocs:
            path = _plot_matrices(
                ctx,
                allocs,
                f"{stem}_allocation.png",
                f"{name}: task x unit allocation",
                "unit",
                "task",
                "recruited (1) / not (0)",
                None,
            )
            lines += [ctx.link(path, f"{name}: task allocation"), ""]
            overlaps = {k: _mean_offdiag_jaccard(v) for k, v in allocs.items()}
            overlaps = {k: v for k, v in overlaps.items() if v is not None}
        else:
            overlaps = _summary_unit_overlaps(data)
        verdict = _overlap_verdict(name, overlaps)
        if verdict is not None:
            signs.append(verdict[0])
            evidence.append(verdict[1])
    claim = Claim(
        "allocation",
        _combine(signs) if signs else "not assessed (no bio and baseline allocation found)",
        "; ".join(evidence) or "no allocation heatmaps for bio and a baseline",
        "; ".join(commands) or cmd_default,
        "bio's mean Jaccard overlap of units recruited by different tasks lower than every "
        "baseline's",
    )
    return Section(title, "\n".join(lines), [claim])


def _forgetting(entry: Any, key: str) -> str:
    """``entry[key]["mean"]`` (or, for ``forgetting_max``, the ``average_forgetting`` of
    results written before the rename) as text; "n/a" when absent."""
    if not isinstance(entry, Mapping):
        return "n/a"
    value = entry.get(key)
    if value is None and key == "forgetting_max":
        value = entry.get("average_forgetting")
    value = _num(value.get("mean")) if isinstance(value, Mapping) else _num(value)
    return "n/a" if value is None else f"{value:.3f}"


def _accuracy_lines(
    ctx: ReportContext, name: str, stem: str, accs: Mapping[str, list], summary: Any = None
) -> list[str]:
    """The accuracy matrices' figure link and final-average-accuracy table of one file, with
    Avalanche's forgetting and the max-based one where the file's ``summary`` has them."""
    path = _plot_matrices(
        ctx,
        accs,
        f"{stem}_accuracy.png",
        f"{name}: accuracy matrices",
        "evaluated on experience",
        "after training experience",
        "accuracy",
        (0.0, 1.0),
    )
    lines = [ctx.link(path, f"{name}: accuracy matrices"), ""]
    summary = summary if isinstance(summary, Mapping) else {}
    rows = []
    for label, m in accs.items():
        last = [v for v in m[-1] if _num(v) is not None]
        if last:
            entry = summary.get(label)
            rows.append(
                f"| {label} | {statistics.fmean(last):.3f} "
                f"| {_forgetting(entry, 'avalanche_forgetting')} "
                f"| {_forgetting(entry, 'forgetting_max')} |"
            )
    if rows:
        lines += [
            "| strategy | final average accuracy (last row) | Avalanche forgetting | F (max) |",
            "|---|---|---|---|",
            *rows,
            "",
            "Avalanche forgetting: Avalanche's StreamForgetting (accuracy right after training "
            "on a task minus the final one); F (max): from the best accuracy the task had. "
            "n/a: not in the file (results written before Avalanche's value was recorded).",
            "",
        ]
    return lines


def _overlap_verdict(name: str, overlaps: Mapping[str, float]) -> tuple[int, str] | None:
    """``(sign, evidence)``: +1 if bio's unit overlap is below every other strategy's, -1 if
    above every other's, else 0; ``None`` without bio and another strategy."""
    bio = [k for k in overlaps if "bio" in k.lower()]
    others = [k for k in overlaps if k not in bio]
    if not (bio and others):
        return None
    b = overlaps[bio[0]]
    o = [overlaps[k] for k in others]
    return (
        1 if b < min(o) else (-1 if b > max(o) else 0),
        f"{name}: mean task-overlap of recruited units bio {b:.2f} vs "
        + ", ".join(f"{k} {overlaps[k]:.2f}" for k in others),
    )


def _plot_matrices(
    ctx: ReportContext,
    matrices: Mapping[str, list],
    filename: str,
    title: str,
    xlabel: str,
    ylabel: str,
    cbar: str,
    vrange: tuple[float, float] | None,
) -> Path:
    items = list(matrices.items())[:8]
    ncols = min(4, len(items))
    nrows = math.ceil(len(items) / ncols)
    fig = new_figure(3.4 * ncols + 0.6, 3.0 * nrows + 0.4)
    axes = fig.subplots(nrows, ncols, squeeze=False).reshape(-1)
    image = None
    for ax, (label, m) in zip(axes, items, strict=False):
        values = [[math.nan if _num(v) is None else float(v) for v in row] for row in m]
        kwargs = {"vmin": vrange[0], "vmax": vrange[1]} if vrange else {}
        image = ax.imshow(values, cmap="viridis", aspect="auto", interpolation="nearest", **kwargs)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
    for ax in axes[len(items) :]:
        ax.set_visible(False)
    if image is not None:
        fig.colorbar(image, ax=list(axes[: len(items)]), shrink=0.8, label=cbar)
    fig.suptitle(title)
    path = ctx.figure(filename)
    fig.savefig(path)
    return path
