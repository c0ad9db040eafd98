"""benchmarks/defaults_sweep.py: one change at a time, compared with the defaults on equal seeds."""

import dataclasses
import json

import pytest
from conftest import load_benchmark


def _script():
    return load_benchmark("defaults_sweep")


def test_changes_are_paired_by_seed_and_the_worst_task_is_reported():
    sweep = _script()
    row = lambda task, seed, test, **options: {  # noqa: E731
        "task": task,
        "seed": seed,
        "test": test,
        "connectivity": 0.5,
        "options": options or None,
    }
    runs = [row("a", 0, 0.5), row("a", 1, 0.7), row("b", 0, 0.4), row("b", 1, 0.4),
            row("a", 1, 0.9, lr=0.16), row("b", 0, 0.3, lr=0.16), row("b", 1, 0.2, lr=0.16),
            row("a+inh0.2", 0, 0.6)]  # fmt: skip
    table = sweep.summarise(runs, ["a", "b"])
    faster = table["lr 0.16"]
    assert faster["tasks"]["a"]["change"] == pytest.approx(0.2)  # seed 1 only: 0.9 - 0.7
    assert faster["tasks"]["a"]["seeds"] == [1]
    assert faster["tasks"]["b"]["change"] == pytest.approx(-0.15)
    assert faster["mean_change"] == pytest.approx(0.025)
    assert faster["worst_change"] == pytest.approx(-0.15)
    assert table["interneurons 0.2"]["tasks"]["a"]["change"] == pytest.approx(0.1)
    assert "b" not in table["interneurons 0.2"]["tasks"]


def test_the_sweep_compares_each_variant_with_the_defaults_on_the_same_seeds(tmp_path, monkeypatch):
    sweep = _script()
    tiny = dataclasses.replace(sweep.TASKS["digits-mlp1x256"], width=(32,), epochs=3)
    monkeypatch.setitem(sweep.TASKS, "digits-mlp1x256", tiny)
    jobs = sweep.jobs_of(["digits-mlp1x256", "glyphs100-conv2"], ["defaults", "interneurons 0.2"],
                         [0, 1])  # fmt: skip
    # interneurons change the MLP only (conv nets have none); options go to the rule
    assert [(j[0].name, j[2]) for j in jobs] == [
        ("digits-mlp1x256", 0), ("digits-mlp1x256", 1), ("digits-mlp1x256+inh0.2", 0),
        ("digits-mlp1x256+inh0.2", 1), ("glyphs100-conv2", 0), ("glyphs100-conv2", 1),
    ]  # fmt: skip
    assert jobs[2][0].interneurons_for("bio") == 0.2 and jobs[2][4] is None
    sweep.main(["--seeds", "1", "--workers", "1", "--tasks", "digits-mlp1x256", "--variants",
                "lr 0.16,interneurons 0.2", "--out", str(tmp_path),
                "--journal", str(tmp_path / "runs.jsonl")])  # fmt: skip
    result = json.loads((tmp_path / "defaults_sweep.json").read_text())
    table = result["table"]
    assert result["variants"][0] == "defaults"  # the baseline always runs
    assert table["defaults"]["tasks"]["digits-mlp1x256"]["change"] == 0
    faster = [r for r in result["runs"] if r.get("options") == {"lr": 0.16}][0]
    base = [r for r in result["runs"] if r["task"] == "digits-mlp1x256" and not r.get("options")]
    entry = table["lr 0.16"]["tasks"]["digits-mlp1x256"]
    assert entry["change"] == pytest.approx(faster["test"] - base[0]["test"])
    assert entry["connectivity"] < table["defaults"]["tasks"]["digits-mlp1x256"]["connectivity"]
    # the worst layer shape over tasks, as the runs measured it, and the command that ran
    skews = [r["worst_abs_skew"] for r in base]
    assert table["defaults"]["worst_shape"][0] == pytest.approx(max(skews))
    text = (tmp_path / "defaults_sweep.md").read_text()
    assert "--variants 'lr 0.16,interneurons 0.2'" in text and "| shape |" in text
    text = (tmp_path / "defaults_sweep.md").read_text()
    assert text.count("\n| ") == 4 and "| interneurons 0.2 |" in text  # header and 3 variants


def test_unknown_variants_and_tasks_are_refused_listing_the_known_ones(capsys):
    sweep = _script()
    for flag, value, known in (("--variants", "defaults,lr 9", "budget_rate 0.1"),
                               ("--tasks", "nope", "glyphs500-mlp")):  # fmt: skip
        with pytest.raises(SystemExit):
            sweep.main([flag, value])
        err = capsys.readouterr().err
        assert "error: unknown" in err and known in err


def test_help_lists_every_variant(capsys):
    sweep = _script()
    with pytest.raises(SystemExit) as exit_:
        sweep.main(["--help"])
    assert exit_.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps the list
    assert "growth (1% every 100 steps)" in out  # a '%' in a name once broke --help
    assert "weight_dependence 0.5 (potentiation) hidden only + cost 0.8" in out
