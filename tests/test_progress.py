"""Issue 11: progress bars (tqdm) on a terminal only, ``--no-progress`` / ``BIOPLASTIC_PROGRESS=0``
to turn them off, and wall time per stage in the summary lines."""

from __future__ import annotations

import io

import pytest

from bioplastic import _progress
from bioplastic._progress import Stages, bar, format_stages, progress_enabled, set_progress
from bioplastic.cli import build_parser, main


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _automatic():
    set_progress(None)
    yield
    set_progress(None)


def test_bars_only_on_a_terminal(monkeypatch):
    monkeypatch.delenv(_progress.ENV, raising=False)
    assert not progress_enabled(io.StringIO())  # a pipe or a file: no bars
    assert progress_enabled(_Terminal())
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert bar(range(3)).disable  # pytest's stderr is no terminal
    monkeypatch.setattr("sys.stderr", _Terminal())
    drawn = bar(range(3), desc="epochs")
    assert not drawn.disable
    assert list(drawn) == [0, 1, 2]
    assert "epochs" in _progress.sys.stderr.getvalue()
    assert bar(range(3), active=False).disable  # e.g. ranks other than 0


@pytest.mark.parametrize("value", ["0", "false", "off", "No"])
def test_the_environment_turns_bars_off(monkeypatch, value):
    monkeypatch.setenv(_progress.ENV, value)
    assert not progress_enabled(_Terminal())


def test_set_progress_overrides_and_checks_its_argument():
    set_progress(False)
    assert not progress_enabled(_Terminal())
    set_progress(True)
    assert progress_enabled(io.StringIO())
    with pytest.raises(ValueError, match="enabled"):
        set_progress("yes")


@pytest.mark.parametrize("command", ["compare", "stream", "train", "fewshot", "report"])
def test_every_long_command_has_no_progress(command):
    args = build_parser().parse_args([command, "--no-progress"])
    assert args.no_progress is True
    assert build_parser().parse_args([command]).no_progress is False


def test_no_progress_reaches_the_bars(monkeypatch):
    seen = []
    parser = build_parser()
    monkeypatch.setattr("bioplastic.cli.build_parser", lambda: parser)
    parser._subparsers._group_actions[0].choices["compare"].set_defaults(
        run=lambda args: seen.append(progress_enabled(_Terminal())) or 0
    )
    assert main(["compare", "--no-progress"]) == 0
    assert main(["compare"]) == 0
    assert seen == [False, True]


def test_stages_add_up_in_first_run_order():
    stages = Stages()
    with stages("train"):
        pass
    stages.add("eval", 1.25)
    stages.add("train", 2.0)
    assert list(stages.seconds) == ["train", "eval"]
    assert stages.seconds["train"] >= 2.0 and stages.seconds["eval"] == 1.25
    with pytest.raises(RuntimeError), stages("eval"):
        raise RuntimeError("timed even when it fails")
    assert stages.seconds["eval"] > 1.25
    assert format_stages({"train": 12.34, "eval": 1.06}) == "train 12.3 s, eval 1.1 s"
    assert str(stages).startswith("train 2.0 s, eval 1.")


def test_stream_epoch_bar_counts_epochs_and_leaves_no_plugin(monkeypatch):
    pytest.importorskip("avalanche")
    from bioplastic.experiments.stream import one_run

    class Strategy:
        train_epochs = 3

        def __init__(self, fail=False):
            self.plugins, self.fail = [], fail

        def train(self, experience):
            for _ in range(self.train_epochs):
                for plugin in self.plugins:
                    plugin.after_training_epoch(self)
            if self.fail:
                raise KeyboardInterrupt

    counted = []
    real_bar = one_run.bar

    def counting_bar(*args, **kwargs):
        b = real_bar(*args, **kwargs)
        counted.append(b)
        return b

    monkeypatch.setattr(one_run, "bar", counting_bar)
    monkeypatch.setattr("sys.stderr", io.StringIO())
    set_progress(True)  # drawn (to a string), so that the bar counts
    strategy = Strategy()
    one_run._train(strategy, None, "experience 1/1")
    assert counted[-1].n == 3 and counted[-1].total == 3
    assert strategy.plugins == []  # checkpoints never hold the bar
    failing = Strategy(fail=True)
    with pytest.raises(KeyboardInterrupt):
        one_run._train(failing, None, "experience 1/1")
    assert failing.plugins == []
