"""``bioplastic stream``: bad input, a tiny comparison, and kill-and-resume equality."""

from __future__ import annotations

import json

import pytest

from bioplastic.cli import main
from bioplastic.cli import stream as cli_stream

# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["--strategies", "bio,lion"], "'lion'"),
        (["--strategies", ""], "empty list"),
        (["--stream", "split-cifar"], "invalid choice"),
        (["--scenario", "instance"], "invalid choice"),
        (["--seeds", "0"], "positive integer"),
        (["--seeds", "-3"], "positive integer"),
        (["--epochs", "x"], "positive integer"),
        (["--threads", "1.5"], "positive integer"),
        (["--stream", "split-mnist"], "needs --root"),
        (["--root", "."], "only applies to MNIST"),
    ],
)
def test_bad_input_gives_one_line_error_and_writes_nothing(tmp_path, capsys, argv, needle):
    logdir = tmp_path / "runs"
    code = main(["stream", *argv, "--logdir", str(logdir)])
    assert code == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert needle in err
    assert len(err.splitlines()) == 1
    assert captured.out == ""
    assert not logdir.exists()


def test_values_only_the_library_can_check_also_fail_cleanly(tmp_path, capsys):
    pytest.importorskip("avalanche")
    logdir = tmp_path / "runs"
    # PackNet prunes and retrains for 2 epochs: it needs more than that per experience.
    code = main(["stream", "--strategies", "bio,packnet", "--epochs", "2", "--logdir", str(logdir)])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert "post_prune_epochs" in err and len(err.splitlines()) == 1
    assert not logdir.exists()


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        ({"stream": "split-cifar"}, "unknown stream"),
        ({"scenario": "instance"}, "scenario must be"),
        ({"strategies": ("bio", "lion")}, "'lion'"),
        ({"strategies": ()}, "at least one"),
        ({"seeds": 0}, "seeds"),
        ({"seeds": [1, 1]}, "distinct"),
        ({"epochs": 0}, "epochs"),
        ({"stream_kwargs": {"n_experiences": 3}}, "n_experiences"),
        ({"overrides": {"ewc": {}}}, "not compared: ewc"),
    ],
)
def test_library_checks_arguments_before_writing(tmp_path, kwargs, needle):
    pytest.importorskip("avalanche")
    from bioplastic.experiments.stream import run_stream_comparison

    args = {"strategies": ("bio",), "seeds": 1, "logdir": tmp_path / "runs", **kwargs}
    with pytest.raises(ValueError, match=needle):
        run_stream_comparison(**args)
    assert not (tmp_path / "runs").exists()


def test_cli_names_are_the_strategies_names():
    avalanche = pytest.importorskip("strategies.avalanche")
    assert set(cli_stream.STRATEGY_CHOICES) == set(avalanche.STRATEGY_NAMES)


# ----------------------------------------------------------------------------- metrics


def test_continual_metrics_follow_the_standard_definitions():
    pytest.importorskip("avalanche")
    from bioplastic.experiments.stream import continual_metrics

    r = [[0.9, 0.5, 0.5], [0.8, 0.95, 0.5], [0.7, 0.9, 1.0]]
    m = continual_metrics(r)
    assert m["final_average_accuracy"] == pytest.approx((0.7 + 0.9 + 1.0) / 3)
    # forgetting: max over the accuracies once trained, minus the final one
    assert m["forgetting_max"] == pytest.approx(((0.9 - 0.7) + (0.95 - 0.9)) / 2)
    assert set(m) == {"final_average_accuracy", "forgetting_max"}  # BWT: Avalanche's metric
    single = continual_metrics([[0.8]])
    assert single == {"final_average_accuracy": 0.8, "forgetting_max": None}
    with pytest.raises(ValueError, match="square"):
        continual_metrics([[0.5, 0.5]])
    with pytest.raises(ValueError, match=r"matrix\[1\]\[0\]"):
        continual_metrics([[0.5, 0.1], [1.5, 0.2]])


# ----------------------------------------------------------------------------- runs


def test_tiny_cli_run_writes_results_and_tensorboard(tmp_path, capsys):
    pytest.importorskip("avalanche")
    logdir = tmp_path / "runs"
    code = main(["stream", "--quick", "--strategies", "bio,naive", "--epochs", "1",
                 "--logdir", str(logdir)])  # fmt: skip
    assert code == 0
    folder = logdir / "split-digits-task"
    results = json.loads((folder / "results.json").read_text())
    assert results["config"]["strategies"] == ["bio", "naive"]
    assert results["config"]["seeds"] == [0]
    assert len(results["runs"]) == 2
    for run in results["runs"]:
        matrix = run["accuracy_matrix"]
        assert len(matrix) == 5 and all(len(row) == 5 for row in matrix)
        assert all(0.0 <= v <= 1.0 for row in matrix for v in row)
        assert 0.0 <= run["final_average_accuracy"] <= 1.0
        assert -1.0 <= run["forgetting_max"] <= 1.0 and -1.0 <= run["bwt"] <= 1.0
        assert run["avalanche_forgetting"] == pytest.approx(-run["bwt"])
        assert 0.0 < run["connectivity"] <= 1.0
        assert len(run["task_encoding"]) == 5
        run_dir = folder / run["config"]["strategy"] / "seed0"
        assert list(run_dir.glob("events.out.tfevents.*"))
        assert (run_dir / "metrics.json").exists() and (run_dir / "run.json").exists()
        assert not (run_dir / "checkpoint.pt").exists()  # only unfinished runs keep one
    bio = results["summary"]["bio"]
    assert bio["dale_typed"] and bio["dale_violations"]["max"] == 0
    assert not results["summary"]["naive"]["dale_typed"]
    assert (folder / "results.md").read_text().startswith("## split-digits, task-incremental")
    out = capsys.readouterr().out
    assert "experience 5/5" in out and "| bio |" in out and "| naive |" in out
    assert f"tensorboard --logdir {logdir}" in out


class Killed(Exception):
    pass


def _without_times(results):
    runs = [{k: v for k, v in r.items() if k != "wall_seconds"} for r in results["runs"]]
    summary = {
        name: {k: v for k, v in s.items() if k != "wall_seconds"}
        for name, s in results["summary"].items()
    }
    return runs, summary


def test_killed_comparison_resumes_to_the_same_metrics(tmp_path):
    pytest.importorskip("avalanche")
    from bioplastic.experiments.stream import run_stream_comparison

    args = dict(
        stream="split-digits", scenario="task", strategies=("bio", "naive"), seeds=1, epochs=1,
        stream_kwargs={"n_experiences": 2, "max_train_per_experience": 64,
                       "max_test_per_experience": 32},
        device="cpu",
    )  # fmt: skip
    straight = run_stream_comparison(logdir=tmp_path / "straight", **args)

    def kill_after_first(name, seed, experience):
        if name == "bio" and experience == 0:
            raise Killed

    logdir = tmp_path / "killed"
    with pytest.raises(Killed):
        run_stream_comparison(logdir=logdir, after_experience=kill_after_first, **args)
    folder = logdir / "split-digits-task"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["runs"]["bio/seed0"]["status"] == "running"
    assert manifest["runs"]["bio/seed0"]["next_experience"] == 1
    assert (folder / "bio" / "seed0" / "checkpoint.pt").exists()
    assert not (folder / "results.json").exists()

    lines = []
    resumed = run_stream_comparison(logdir=logdir, resume=True, progress=lines.append, **args)
    assert any("resuming after experience 1/2" in line for line in lines)
    assert _without_times(resumed) == _without_times(straight)
    # the runs learned something (5-way chance: 0.2); bio's rate is still warming up after the
    # four steps of this tiny stream, so only the backprop run is expected to beat chance
    accuracy = {r["config"]["strategy"]: r["final_average_accuracy"] for r in resumed["runs"]}
    assert accuracy["naive"] > 0.2 and accuracy["bio"] > 0.0

    # Finished runs are read back, not trained again.
    def never(*_):
        raise AssertionError("a finished run was trained again")

    again = run_stream_comparison(logdir=logdir, resume=True, after_experience=never, **args)
    assert _without_times(again) == _without_times(straight)

    # Resuming with other settings is refused before anything is written.
    before = (folder / "manifest.json").read_text()
    with pytest.raises(ValueError, match="other settings.*epochs"):
        run_stream_comparison(logdir=logdir, resume=True, **{**args, "epochs": 2})
    assert (folder / "manifest.json").read_text() == before
