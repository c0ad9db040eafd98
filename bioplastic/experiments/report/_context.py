"""The report's building blocks: claims, sections, the results context and the small
readers and verdict helpers every section uses."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The paper's claims, in the order of the claims table (key: short text).
CLAIMS: dict[str, str] = {
    "sparsity": "Sparsity emerges without explicit enforcement",
    "lognormal": "Lognormal weight distributions emerge without enforcement",
    "dale": "Dale's law holds without enforcement",
    "robustness": "Better adversarial robustness",
    "fewshot": "Better few-shot generalisation",
    "representation": "Biologically plausible representations",
    "allocation": "Task-specific encoding and neural resource allocation",
}

NOT_RUN = "not run yet"
RULE_ORDER = ("bio", "eg", "adam", "enforced", "sgd")


@dataclass
class Claim:
    """One row of the claims table."""

    key: str
    verdict: str
    evidence: str
    command: str
    rule: str

    @property
    def claim(self) -> str:
        return CLAIMS.get(self.key, self.key)


@dataclass
class Section:
    """A rendered section: markdown body (figures already linked) and the claims it judged."""

    title: str
    body: str
    claims: list[Claim] = field(default_factory=list)


@dataclass
class ReportContext:
    """Where results are read and the report and figures written, plus a cache of files.

    ``generated_dir`` holds results produced by this report run (quick mode, weight
    histograms); files there take precedence over ``results_dir``.
    """

    results_dir: Path
    out: Path
    quick: bool = False
    progress: Callable[[str], None] | None = None
    generated_dir: Path | None = None
    notes: list[str] = field(default_factory=list)
    _cache: dict[str, Any] = field(default_factory=dict)

    @property
    def figures_dir(self) -> Path:
        return self.out.parent / "figures"

    def say(self, message: str) -> None:
        if self.progress is not None:
            self.progress(message)

    def path_of(self, name: str) -> Path | None:
        """The file ``name`` from ``generated_dir`` if there, else from ``results_dir``."""
        for folder in (self.generated_dir, self.results_dir):
            if folder is not None and (folder / name).is_file():
                return folder / name
        return None

    def load(self, name: str) -> dict[str, Any] | None:
        """Parsed JSON ``name``, or None when absent; an unreadable file is noted, not fatal."""
        if name in self._cache:
            return self._cache[name]
        path = self.path_of(name)
        data = None
        if path is not None:
            try:
                data = json.loads(path.read_text())
                if not isinstance(data, dict):
                    raise ValueError("top level is not an object")
            except (OSError, ValueError) as err:
                self.notes.append(f"could not read `{path.name}`: {err}")
                data = None
        self._cache[name] = data
        return data

    def glob(self, pattern: str) -> list[tuple[str, dict[str, Any]]]:
        """``(name, parsed JSON)`` of every readable file matching ``pattern`` (sorted).

        Files with ``tuning`` in their name are hyper-parameter searches, not results: they
        are skipped (and listed in the report's notes)."""
        names = set()
        for folder in (self.generated_dir, self.results_dir):
            if folder is not None and folder.is_dir():
                names |= {p.name for p in folder.glob(pattern) if p.is_file()}
        skipped = sorted(n for n in names if "tuning" in n)
        if skipped:
            note = "skipped tuning files (not results): " + ", ".join(f"`{n}`" for n in skipped)
            if note not in self.notes:
                self.notes.append(note)
        names -= set(skipped)
        out = []
        for name in sorted(names):
            data = self.load(name)
            if data is not None:
                out.append((name, data))
        return out

    def figure(self, name: str) -> Path:
        self.figures_dir.mkdir(parents=True, exist_ok=True)
        return self.figures_dir / name

    def link(self, path: Path, caption: str) -> str:
        rel = path.resolve().relative_to(self.out.parent.resolve())
        return f"![{caption}]({rel.as_posix()})"


# --------------------------------------------------------------------------- helpers


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _get(data: Any, *keys: Any, default: Any = None) -> Any:
    for key in keys:
        if isinstance(data, Mapping) and key in data:
            data = data[key]
        elif isinstance(data, list) and isinstance(key, int) and -len(data) <= key < len(data):
            data = data[key]
        else:
            return default
    return data


def _ms(ms: Any, digits: int = 3) -> str:
    mean, std = _num(_get(ms, "mean")), _num(_get(ms, "std"))
    if mean is None:
        return "n/a"
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")


def _ordered(keys: Sequence[str]) -> list[str]:
    rank = {r: i for i, r in enumerate(RULE_ORDER)}
    return sorted(keys, key=lambda k: (rank.get(k, len(rank)), k))


def _ci_sign(low: Any, high: Any) -> int:
    low, high = _num(low), _num(high)
    if low is None or high is None:
        return 0
    return 1 if low > 0 else (-1 if high < 0 else 0)


def _combine(signs: Sequence[int]) -> str:
    """Verdict from per-comparison signs (+1 better, -1 worse, 0 no detectable difference)."""
    if not signs:
        return "not assessed"
    if all(s == 1 for s in signs):
        return "supported"
    if all(s == -1 for s in signs):
        return "contradicted"
    if all(s == 0 for s in signs):
        return "inconclusive (no detectable difference)"
    if any(s == 1 for s in signs) and not any(s == -1 for s in signs):
        return "partly supported"
    if any(s == -1 for s in signs) and not any(s == 1 for s in signs):
        return "not supported (worse or equal)"
    return "mixed"


def _not_run(key: str, command: str, what: str) -> Claim:
    return Claim(key, NOT_RUN, f"no {what}", command, "needs the results file")
