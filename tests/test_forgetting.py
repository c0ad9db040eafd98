"""Issue 11: the stream results report Avalanche's forgetting as Avalanche computes it
(``avalanche_forgetting``), beside the max-based one, named ``forgetting_max`` / "F (max)"."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("avalanche")

from bioplastic.experiments.stream import (  # noqa: E402
    avalanche_metrics,
    forgetting_max,
    format_markdown,
    one_run,
    run_stream_comparison,
)
from bioplastic.experiments.stream.metrics import (  # noqa: E402
    AVALANCHE_BWT_KEY,
    AVALANCHE_FORGETTING_KEY,
)


def test_avalanche_forgetting_is_avalanches_stream_forgetting_of_the_same_run(
    tmp_path, monkeypatch
):
    evaluators = []
    make_evaluator = one_run.make_evaluator

    def keep(*args, **kwargs):
        evaluators.append(make_evaluator(*args, **kwargs))
        return evaluators[-1]

    monkeypatch.setattr(one_run, "make_evaluator", keep)
    results = run_stream_comparison(
        "split-digits", "class", strategies=("naive",), seeds=1, epochs=3, quick=True,
        logdir=tmp_path, device="cpu", progress=lambda line: None,
    )  # fmt: skip
    (run,) = results["runs"]
    last = evaluators[-1].get_last_metrics()  # Avalanche's own metric values, final evaluation
    assert run["avalanche_forgetting"] == last[AVALANCHE_FORGETTING_KEY]
    assert run["bwt"] == last[AVALANCHE_BWT_KEY]
    assert abs(run["avalanche_forgetting"]) > 0.01  # not a trivial 0
    # Avalanche's definition on our matrix: accuracy right after training minus the final one
    r = run["accuracy_matrix"]
    by_hand = sum(r[j][j] - r[-1][j] for j in range(len(r) - 1)) / (len(r) - 1)
    assert run["avalanche_forgetting"] == pytest.approx(by_hand)
    assert run["bwt"] == pytest.approx(-by_hand)
    # the max-based one subtracts from the best accuracy a task had: here (naive SGD learns a
    # new class-incremental task slowly, its best comes later) it is far above Avalanche's
    assert run["forgetting_max"] > run["avalanche_forgetting"] + 0.1
    assert "average_forgetting" not in run
    summary = results["summary"]["naive"]
    assert summary["avalanche_forgetting"]["mean"] == run["avalanche_forgetting"]
    text = (tmp_path / "split-digits-class" / "results.md").read_text()
    assert "| Avalanche F | F (max) |" in text
    assert f"| {run['avalanche_forgetting']:.3f} | {run['forgetting_max']:.3f} |" in text


def test_avalanche_metrics_read_the_final_evaluation_and_tolerate_missing_values():
    records = {
        "experiences": [
            {"metrics": {AVALANCHE_FORGETTING_KEY: 0.0, AVALANCHE_BWT_KEY: 0.0}},
            {"metrics": {AVALANCHE_FORGETTING_KEY: 0.25, AVALANCHE_BWT_KEY: -0.25}},
        ]
    }
    assert avalanche_metrics(records) == {"avalanche_forgetting": 0.25, "bwt": -0.25}
    assert avalanche_metrics({}) == {"avalanche_forgetting": None, "bwt": None}


def test_results_written_before_the_rename_still_read(tmp_path):
    old_run = {"average_forgetting": 0.05, "bwt": -0.02, "final_average_accuracy": 0.9}
    assert forgetting_max(old_run) == 0.05
    assert forgetting_max({"forgetting_max": 0.07, "average_forgetting": 0.05}) == 0.07
    # a cached run.json from before: renamed, Avalanche's values from its metrics.json
    (tmp_path / "metrics.json").write_text(
        json.dumps({"experiences": [{"metrics": {AVALANCHE_FORGETTING_KEY: 0.02,
                                                  AVALANCHE_BWT_KEY: -0.02}}]})
    )  # fmt: skip
    new = one_run._upgrade(old_run, tmp_path)
    assert new["forgetting_max"] == 0.05 and "average_forgetting" not in new
    assert new["avalanche_forgetting"] == 0.02 and new["bwt"] == -0.02
    gone = one_run._upgrade(old_run, tmp_path / "missing")
    assert gone["avalanche_forgetting"] is None and gone["bwt"] == -0.02


@pytest.mark.parametrize(
    "name", ["stream_split-digits_task.json", "stream_split-mnist1d_class.json"]
)
def test_committed_results_still_format(name):
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / name
    if not path.exists():
        pytest.skip(f"{name} is not committed")
    results = json.loads(path.read_text())
    text = format_markdown(results)
    bio = results["summary"]["bio"]
    assert f"{forgetting_max(bio)['mean']:.3f}" in text and "F (max)" in text
