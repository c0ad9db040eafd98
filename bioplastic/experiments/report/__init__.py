"""``bioplastic report``: one page that tests the paper's claims against our results files.

:func:`build_report` writes ``REPORT.md`` (and PNG figures under ``figures/`` next to it). The
page opens with a table of the paper's claims, each with a verdict, the numbers behind it and
the command that produced them, followed by one section per topic. Each section is a function
``section_*(ctx) -> Section`` listed in :data:`SECTIONS`; a section reads its results files
through :class:`ReportContext` (missing files render as *not run yet*, with the command that
would produce them), draws its figures and returns the claims it can judge. Verdicts are
computed from the files by the rules written in each section's docstring and repeated in the
report; no number in the report is typed in.

Results files read from ``--results`` (default :func:`default_results_dir`: the
``benchmarks/results`` folder of the source checkout bioplastic is imported from):

* ``digits_rules.json`` (``benchmarks/digits_rules.py``,
  :func:`bioplastic.experiments.compare.compare_rules`): sparsity, log-magnitude shape, Dale
  violations;
* ``robustness_digits.json``, ``robustness_mnist1d.json`` (``benchmarks/robustness.py``,
  :func:`bioplastic.experiments.robustness.run_robustness`): robustness, activity probes,
  receptive fields;
* ``fewshot_*.json`` (the few-shot benchmark): rows ``accuracy`` and ``paired`` (read
  defensively: any missing key is reported, never fatal);
* ``stream_*.json`` (the continual-learning benchmark): any 2-D numeric array stored under a key
  containing ``acc`` and ``matrix`` is drawn as an accuracy matrix, any under a key containing
  ``alloc`` as a task x unit allocation heatmap.

Weight-magnitude histograms need trained weights: the report trains one model per rule in the
configuration of ``digits_rules.json`` (or :func:`~bioplastic.experiments.compare.compare_rules`'s
defaults), seed 0, and records the histograms in ``weight_histograms.json`` next to the report.

``quick=True`` reruns exactly :data:`QUICK_RERUNS` and writes their results next to the report
(never into ``results_dir``), so the page is produced in a few minutes on 2 cores; every other
section (MNIST-1D robustness, few-shot, continual learning) reads ``results_dir``. The page
says so.

The package: :mod:`._context` (claims, sections, the results context, verdict helpers), one
module per group of sections (:mod:`.emergence`, :mod:`.robustness`, :mod:`.fewshot`,
:mod:`.continual`), and this module, which assembles the page.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import bioplastic
from bioplastic.experiments._common import write_json
from bioplastic.experiments.report._context import CLAIMS, NOT_RUN, Claim, ReportContext, Section
from bioplastic.experiments.report.continual import section_continual
from bioplastic.experiments.report.emergence import section_emergence, section_weight_histograms
from bioplastic.experiments.report.fewshot import section_fewshot
from bioplastic.experiments.report.robustness import section_representation, section_robustness

__all__ = [
    "CLAIMS",
    "Claim",
    "NOT_RUN",
    "ReportContext",
    "SECTIONS",
    "Section",
    "QUICK_RERUNS",
    "build_report",
    "default_results_dir",
    "section_continual",
    "section_emergence",
    "section_fewshot",
    "section_representation",
    "section_robustness",
    "section_weight_histograms",
]

logger = logging.getLogger(__name__)

#: What ``quick=True`` (``bioplastic report --quick``) reruns; nothing else is rerun.
QUICK_RERUNS = (
    "the digits rule comparison (biomlp, 2 seeds, 10 epochs) and the digits robustness "
    "experiment (2 seeds, reduced epsilon grid)"
)


def default_results_dir() -> Path:
    """``benchmarks/results`` of the source checkout bioplastic is imported from, when there is
    one (an editable install or ``PYTHONPATH``), else ``benchmarks/results`` of the working
    directory; so ``bioplastic report`` works from any directory of a checkout."""
    checkout = Path(bioplastic.__file__).resolve().parents[1] / "benchmarks" / "results"
    return checkout if checkout.is_dir() else Path("benchmarks/results")


def _quick_compare(ctx: ReportContext) -> None:
    from bioplastic.experiments.compare import compare_rules

    ctx.say("quick: digits comparison (biomlp, 2 seeds, 10 epochs)")
    results = compare_rules(models=("biomlp",), seeds=(0, 1), epochs=10)
    results["command"] = "bioplastic report --quick"
    write_json(ctx.generated_dir / "digits_rules.json", results)


def _quick_robustness(ctx: ReportContext) -> None:
    from bioplastic.experiments.robustness import run_robustness

    ctx.say("quick: digits robustness (2 seeds, reduced epsilon grid)")
    results = run_robustness(
        "digits",
        seeds=2,
        epsilons=(0.0, 0.02, 0.05, 0.1, 0.2),
        l2_epsilons=(0.0, 0.25, 0.5, 1.0, 2.0),
        masking_restarts=1,
        finetune_epochs=2,
        progress=ctx.progress,
    )
    results["command"] = "bioplastic report --quick"
    write_json(ctx.generated_dir / "robustness_digits.json", results)


#: The report's sections, in page order.
SECTIONS: tuple[Callable[[ReportContext], Section], ...] = (
    section_emergence,
    section_weight_histograms,
    section_robustness,
    section_representation,
    section_fewshot,
    section_continual,
)


# --------------------------------------------------------------------------- the page


def _claims_table(claims: list[Claim]) -> list[str]:
    by_key = {c.key: c for c in claims}
    lines = [
        "| claim of the paper | our verdict | measured | produced by |",
        "|---|---|---|---|",
    ]
    for key, text in CLAIMS.items():
        c = by_key.get(key)
        if c is None:
            lines.append(f"| {text} | not assessed | no section judged it | - |")
            continue
        evidence = c.evidence.replace("|", "/")
        lines.append(f"| {text} | **{c.verdict}** | {evidence} | `{c.command}` |")
    return lines


def _page_head(mode: str, claims: list[Claim]) -> list[str]:
    """The page's opening: what it tests, how it was made, the claims table and its rules."""
    return [
        "# bioplastic: does the bio rule do what the paper claims?",
        "",
        "Inoue, Röhrbein & Knoblauch (2026), arXiv:2603.03234, claim that their learning rule "
        "makes sparsity, lognormal weights and Dale's law emerge and brings robustness, few-shot "
        "generalisation and plausible, task-specific representations. bioplastic implements our "
        "own formulation of those principles (SPEC section 3), not the paper's equations. This "
        f"page was generated by `bioplastic report` in {mode}; every number comes from a results "
        "file or from training run by the report itself, and every verdict from the rule given "
        "below the table.",
        "",
        "## Claims and verdicts",
        "",
        *_claims_table(claims),
        "",
        "Verdict rules: "
        + "; ".join(f"*{CLAIMS.get(c.key, c.key)}*: {c.rule}" for c in claims)
        + ". Combined verdicts: *supported* if every comparison favours bio with a 95% CI "
        "excluding 0, *contradicted* if every one disfavours it, *inconclusive* if none "
        "is detectable, otherwise partly supported / not supported / mixed.",
        "",
    ]


def build_report(
    results_dir: str | Path | None = None,
    out: str | Path | None = None,
    *,
    quick: bool = False,
    sections: Sequence[Callable[[ReportContext], Section]] = SECTIONS,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Write the one-page report and its figures; returns the path of ``REPORT.md``.

    Args:
        results_dir: folder with the committed results files (see the module docstring);
            default :func:`default_results_dir`.
        out: the markdown file to write; default ``<results_dir>/REPORT.md``. Figures go to
            ``<out folder>/figures/``.
        quick: rerun :data:`QUICK_RERUNS` first (nothing else),
            writing their results next to ``out`` (which must then not be in ``results_dir``,
            whose committed results would otherwise be overwritten).
        sections: section functions to render, in order (default :data:`SECTIONS`).
        progress: called with a line per step (the CLI prints them).
    """
    results_dir = default_results_dir() if results_dir is None else Path(results_dir)
    out = Path(out) if out is not None else results_dir / "REPORT.md"
    if out.suffix.lower() != ".md":
        raise ValueError(f"out must be a .md file, got {str(out)!r}")
    if not quick and not results_dir.is_dir():
        raise ValueError(
            f"results folder {str(results_dir)!r} does not exist; pass --results with the "
            "folder holding the benchmark results (digits_rules.json, stream_*.json, ...: "
            "benchmarks/results in a bioplastic source checkout)"
        )
    if quick and out.parent.resolve() == results_dir.resolve():
        raise ValueError(
            f"--quick would overwrite the committed results in {str(results_dir)!r}; "
            "write the quick report elsewhere with --out"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    ctx = ReportContext(
        results_dir=results_dir, out=out, quick=quick, progress=progress, generated_dir=out.parent
    )
    start = time.perf_counter()
    if quick:
        _quick_compare(ctx)
        _quick_robustness(ctx)
    rendered: list[Section] = []
    for section in sections:
        ctx.say(f"section: {section.__name__}")
        rendered.append(section(ctx))
    claims = [c for s in rendered for c in s.claims]
    mode = (
        f"quick mode (`bioplastic report --quick`: reruns only {QUICK_RERUNS}; every other "
        f"section reads the committed results in `{results_dir}`)"
        if quick
        else "full mode (`bioplastic report`: reads the committed results)"
    )
    lines = _page_head(mode, claims)
    for s in rendered:
        lines += [f"## {s.title}", "", s.body, ""]
    if ctx.notes:
        lines += ["## Notes", "", *[f"- {n}" for n in ctx.notes], ""]
    lines.append(f"*Generated in {time.perf_counter() - start:.0f} s.*")
    from bioplastic._io import write_atomic

    write_atomic(out, "\n".join(lines) + "\n")
    return out
