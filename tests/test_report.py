"""The report renders from small fake results files, without training anything."""

import json
import re

import pytest
import torch

import bioplastic.train
from bioplastic.cli import main as cli_main
from bioplastic.experiments.report import (
    CLAIMS,
    NOT_RUN,
    SECTIONS,
    build_report,
    section_weight_histograms,
)
from bioplastic.experiments.robustness import analyse, summarise
from bioplastic.representation import log_magnitude_histogram

EPS = [0.0, 0.05, 0.1]


def _run(rule: str, seed: int, robust: float, connectivity: float, sparseness: float) -> dict:
    clean = 0.93 + 0.002 * seed
    curve_acc = [clean, robust + 0.1, robust - 0.1]
    attacks = ["fgsm", "pgd", "apgd_dlr", "linf_ensemble"]
    return {
        "rule": rule,
        "seed": seed,
        "training": {"reached": True, "accuracy": 0.935, "epoch": 4 + seed, "steps": 100},
        "clean_accuracy": clean,
        "curve": {
            "attacks": attacks,
            "epsilons": {a: EPS for a in attacks},
            "accuracy": {a: curve_acc for a in attacks},
        },
        "robust_mean": {a: robust for a in attacks},
        "robust_ratio": {a: robust / clean for a in attacks},
        "connectivity": connectivity,
        "connectivity_per_layer": {"net.2": connectivity, "net.4": connectivity},
        "dale_violations": 0 if rule == "bio" else 7,
        "sign_flips": 0,
        "lipschitz_bound": 20.0 + seed,
        "gradients": {
            "ce_grad_l1": 5.0 - robust,
            "logit_margin": 2.0 + seed,
            "linearized_radius_linf": robust / 5 + 0.001 * seed,
        },
        "masking": {
            "masked": False,
            "pgd_weaker_than_fgsm": False,
            "large_eps_not_near_chance": False,
            "zero_or_nan_gradients": False,
            "large_eps_accuracy": 0.0,
        },
        "activity": {
            "net.3": {
                "population_sparseness": sparseness + 0.003 * seed,
                "lifetime_sparseness": sparseness - 0.002 * seed,
                "silent_fraction": 0.01,
                "participation_ratio": 8.0,
                "skewness": 1.5,
            },
            "net.4 (E/I)": {"ei_ratio_median": 1.0, "ei_correlation_mean": 0.6},
        },
    }


def _robustness() -> dict:
    runs = []
    for seed in range(3):
        runs.append(_run("bio", seed, 0.40 + 0.004 * seed, 0.35, 0.70))
        runs.append(_run("adam", seed, 0.52 - 0.003 * seed, 1.0, 0.40))
    pruned = [
        dict(_run("adam", s, 0.51, 0.35, 0.4), kind="adam_pruned_finetuned") for s in range(3)
    ]
    results = {
        "schema": "bioplastic.experiments.robustness/1",
        "command": "python benchmarks/robustness.py",
        "config": {
            "dataset": "digits",
            "model": "BioMLP(64, [256], 10, on_off=True)",
            "rules": ["bio", "adam"],
            "seeds": [0, 1, 2],
            "target_accuracy": 0.93,
            "attacks": ["fgsm", "pgd", "apgd_dlr", "linf_ensemble"],
            "epsilons": {a: EPS for a in ["fgsm", "pgd", "apgd_dlr", "linf_ensemble"]},
        },
        "runs": runs,
        "interventions": pruned,
        "receptive_fields": {
            r: {"image_shape": [8, 8], "filters": torch.randn(4, 64).tolist()}
            for r in ("bio", "adam")
        },
    }
    results["summary"] = summarise(runs, pruned)
    results["analysis"] = analyse(results)
    return results


def _digits_rules() -> dict:
    def summary(acc: float, conn: float, viol: int) -> dict:
        return {
            "test_accuracy": {"mean": acc, "std": 0.004},
            "connectivity": {"mean": conn, "std": 0.01},
            "dale_violations_max": viol,
            "sign_flips_max": 0,
        }

    layers = {"net.2": {"log_mag_skewness": 0.1, "log_mag_excess_kurtosis": -0.3}}
    return {
        "config": {"epochs": 30, "seeds": [0, 1], "hidden": [256], "batch_size": 32},
        "summary": {"biomlp/bio": summary(0.975, 0.2, 0), "biomlp/adam": summary(0.978, 1.0, 90)},
        "runs": [{"model": "biomlp", "rule": "bio", "seed": s, "layers": layers} for s in (0, 1)],
    }


def _histograms() -> dict:
    gen = torch.Generator().manual_seed(0)
    return {
        "config": {
            "model": "biomlp",
            "hidden": [256],
            "epochs": 30,
            "batch_size": 32,
            "seed": 0,
            "dataset": "digits",
            "interneurons": {"bio": 0.1, "eg": 0.0, "adam": 0.0, "enforced": 0.0},
        },
        "histograms": {
            r: log_magnitude_histogram(
                torch.exp(0.5 * torch.randn(500, generator=gen) - 3),
                bins=20,
                log10_range=(-6.0, 0.5),
            )
            for r in ("bio", "eg", "adam", "enforced")
        },
    }


def _fewshot() -> dict:
    acc = [
        {"method": "proto", "shots": k, "rule": r, "mean": m, "ci95": 0.01, "n": 600}
        for k in (1, 5)
        for r, m in (("bio", 0.7 + 0.05 * k), ("adam", 0.6 + 0.05 * k))
    ]
    paired = [
        {
            "method": "proto",
            "shots": k,
            "rule": "bio",
            "baseline": "adam",
            "mean_diff": 0.1,
            "ci95": 0.02,
            "n": 600,
        }
        for k in (1, 5)
    ]
    return {
        "config": {"dataset": "digits", "ways": 5, "episodes": 600, "seeds": [0, 1]},
        "accuracy": acc,
        "paired": paired,
        "command": "python benchmarks/fewshot.py",
    }


def _stream() -> dict:
    return {
        "strategies": {
            "bio": {
                "accuracy_matrix": [[0.9, 0.1], [0.8, 0.9]],
                "allocation": [[1, 1, 0, 0], [0, 0, 1, 1]],
            },
            "naive": {
                "accuracy_matrix": [[0.9, 0.1], [0.2, 0.95]],
                "allocation": [[1, 1, 1, 0], [1, 1, 1, 0]],
            },
        }
    }


@pytest.fixture
def results_dir(tmp_path, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("the report must not train when weight_histograms.json fits")

    monkeypatch.setattr(bioplastic.train, "train_epochs", no_training)
    folder = tmp_path / "results"
    folder.mkdir()
    files = {
        "digits_rules.json": _digits_rules(),
        "robustness_digits.json": _robustness(),
        "weight_histograms.json": _histograms(),
        "fewshot_digits.json": _fewshot(),
        "stream_split_digits.json": _stream(),
    }
    for name, data in files.items():
        (folder / name).write_text(json.dumps(data))
    return folder


def _claims_rows(text: str) -> dict[str, str]:
    rows = {}
    for claim in CLAIMS.values():
        line = next(l for l in text.splitlines() if l.startswith(f"| {claim} |"))
        rows[claim] = line.split("|")[2].strip().strip("*")
    return rows


def test_report_opens_with_claims_table_and_links_existing_pngs(results_dir, capsys):
    assert cli_main(["report", "--results", str(results_dir)]) == 0
    assert "wrote" in capsys.readouterr().out
    out = results_dir / "REPORT.md"
    text = out.read_text()
    claims_at = text.index("## Claims and verdicts")
    assert claims_at < text.index("## Sparsity") < text.index("## Adversarial robustness")
    verdicts = _claims_rows(text)
    assert verdicts[CLAIMS["sparsity"]] == "supported"
    assert verdicts[CLAIMS["lognormal"]] == "supported"
    assert verdicts[CLAIMS["dale"]] == "supported (by construction)"
    assert verdicts[CLAIMS["robustness"]] == "contradicted"  # bio 0.40 vs adam 0.52
    assert verdicts[CLAIMS["fewshot"]] == "supported"
    assert verdicts[CLAIMS["representation"]] == "supported"  # bio sparser
    assert verdicts[CLAIMS["allocation"]] == "supported"  # disjoint task units for bio
    assert "python benchmarks/robustness.py" in text and "python benchmarks/fewshot.py" in text
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(links) >= 8
    for link in links:
        png = out.parent / link
        assert png.is_file() and png.read_bytes()[:4] == b"\x89PNG", link


def test_missing_results_render_as_not_run_yet(tmp_path):
    sections = [s for s in SECTIONS if s is not section_weight_histograms]
    out = build_report(tmp_path, tmp_path / "page" / "REPORT.md", sections=sections)
    verdicts = _claims_rows(out.read_text())
    assert set(verdicts.values()) == {NOT_RUN}


def test_unexpected_schemas_are_reported_not_fatal(tmp_path):
    (tmp_path / "fewshot_x.json").write_text(json.dumps({"foo": 1}))
    (tmp_path / "stream_y.json").write_text(json.dumps({"bar": [1, 2]}))
    (tmp_path / "stream_z.json").write_text("{not json")
    sections = [s for s in SECTIONS if s is not section_weight_histograms]
    text = build_report(tmp_path, sections=sections).read_text()
    assert "No `accuracy` rows found; keys: foo" in text
    assert "No accuracy matrix or allocation array found; top-level keys: bar" in text
    assert "could not read `stream_z.json`" in text


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["report", "--results", "{tmp}/missing"], "does not exist"),
        (["report", "--quick", "--results", "{tmp}", "--out", "{tmp}/REPORT.md"], "overwrite"),
        (["report", "--results", "{tmp}", "--out", "{tmp}/report.txt"], ".md"),
        (["report", "--threads", "0"], "positive integer"),
        (["robustness", "--seeds", "0"], "positive integer"),
        (["robustness", "--datasets", "cifar"], "'cifar'"),
        (["robustness", "--epsilons", "a,b"], "comma-separated"),
        (["robustness", "--target", "2"], "(0, 1]"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_cli_input_gives_one_line_error_and_exit_2(tmp_path, capsys, argv, needle):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1
    assert not (tmp_path / "REPORT.md").exists()


def test_stream_forgetting_columns_read_old_and_new_results(tmp_path):
    """Issue 11: Avalanche's forgetting beside "F (max)"; files written before the rename
    (``average_forgetting``, no Avalanche value) still read."""
    from pathlib import Path

    from bioplastic.experiments.report import section_continual

    committed = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
    old = json.loads((committed / "stream_split-digits_task.json").read_text())
    new = {"summary": {
        "bio": {"accuracy_matrix": [[0.9, 0.1], [0.8, 0.9]],
                "avalanche_forgetting": {"mean": 0.1, "std": 0.0},
                "forgetting_max": {"mean": 0.125, "std": 0.0}},
    }}  # fmt: skip
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "stream_old.json").write_text(json.dumps(old))
    (folder / "stream_new.json").write_text(json.dumps(new))
    text = build_report(folder, tmp_path / "REPORT.md", sections=[section_continual]).read_text()
    assert "| Avalanche forgetting | F (max) |" in text
    assert "| bio | 0.850 | 0.100 | 0.125 |" in text
    bio_old = old["summary"]["bio"]
    f_max = bio_old.get("forgetting_max", bio_old.get("average_forgetting"))["mean"]
    row = next(l for l in text.splitlines() if l.startswith("| bio |") and "0.850" not in l)
    assert row.endswith(f"| {f_max:.3f} |")


def test_learn2learn_loop_results_enter_the_fewshot_verdict(tmp_path):
    from bioplastic.experiments.report import section_fewshot
    from bioplastic.experiments.report._context import ReportContext

    def entry(mean, ci):
        return {"mean": mean, "ci95": ci, "n": 600}

    table = {"maml": entry(0.80, 0.01), "biomaml": entry(0.65, 0.01),
             "metasgd": entry(0.82, 0.01), "biometasgd": entry(0.66, 0.01),
             "biomaml - maml": entry(-0.15, 0.01),
             "biometasgd - metasgd": entry(-0.16, 0.01)}  # fmt: skip
    data = {"config": {"episodes": 600, "seed": 0, "command": "python benchmarks/fewshot_l2l.py"},
            "results": {"1-shot": table}, "runs": []}  # fmt: skip
    (tmp_path / "fewshot_l2l.json").write_text(json.dumps(data))
    section = section_fewshot(ReportContext(tmp_path, tmp_path / "REPORT.md"))
    assert "| l2l-maml | 1 | bio | 0.650 |" in section.body
    (claim,) = section.claims
    assert claim.verdict == "contradicted"  # both paired rows are losses with CIs below 0
    assert "l2l-maml 1-shot: -0.150" in claim.evidence
