"""Every bad command line is one error line, ``bioplastic <command>: error: ...``, exit 2.

No traceback, the argument named, a long argument not echoed whole, and nothing written
(no output folder, no partial run folder) before the error.
"""

from __future__ import annotations

import pytest
import torch

from bioplastic.cli import main

_LONG = "x" * 100_000

CASES = [
    (["fewshot", "--bio", '{"nosie": 0.1}'], "nosie"),
    (["fewshot", "--dataset", "omniglot", "--root", "/nonexistent"], "--root"),
    (["train", "--hidden", "1000000000000"], "--hidden"),
    (["train", "--seed", "99999999999999999999999"], "--seed"),
    (["train", "--threads", "99999999999"], "--threads"),
    (["compare", "--threads", "99999999999"], "--threads"),
    (["robustness", "--epsilons", "1e308"], "--epsilons"),
    (["train", "--rule-option", "noise=" + _LONG], "noise"),
    (["train", "--rule-option", _LONG], "--rule-option"),
    (["train", "--rule-option", "nosie=0.1"], "weight_decay"),  # the options it takes, all
    (["train", "--rule", "adam", "--rule-option", "noise=0.1"], "amsgrad"),
    (["stream", "--strategies", _LONG], "--strategies"),
    (["compare", "--rules", "adam,adam"], "listed twice"),
    (["stream", "--strategies", "bio,bio"], "listed twice"),
    (["compare", "--out", ""], "--out"),
    (["train", "--out", ""], "--out"),
    (["stream", "--logdir", ""], "--logdir"),
    (["train", "--bogus"], "--bogus"),
    (["train", "--resume", "--overwrite"], "--overwrite"),
]
if not torch.cuda.is_available():
    CASES.append((["stream", "--device", "cuda", "--strategies", "bio", "--quick"], "cuda"))


@pytest.mark.parametrize(("argv", "needle"), CASES, ids=lambda v: str(v)[:40])
def test_bad_command_line_is_one_error_line(argv, needle, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # default output folders are relative: they must not appear
    out = [] if any(a in argv for a in ("--out", "--logdir")) else _out_option(argv[0], tmp_path)
    assert main(argv + out) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"bioplastic {argv[0]}: error: "), err
    assert needle in err
    assert "Traceback" not in err and len(err) < 900
    assert list(tmp_path.iterdir()) == []  # nothing written, not even an empty folder


def _out_option(command: str, tmp_path) -> list[str]:
    option = "--logdir" if command == "stream" else "--out"
    return [option, str(tmp_path / "out")]


def test_unknown_command_is_one_error_line(capsys):
    assert main(["bogus"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("bioplastic: error: ") and len(err.splitlines()) == 1


def test_error_line_flattens_and_cuts():
    from bioplastic.cli._args import _MAX_MESSAGE, clip, error_line

    line = error_line("bioplastic train", "a\nb " + "y" * 10_000)
    assert line.startswith("bioplastic train: error: a b ") and len(line) < _MAX_MESSAGE + 100
    assert "\n" not in line
    assert len(clip("z" * 10_000)) < 120 and "10000 characters" in clip("z" * 10_000)


def test_compare_rules_refuses_a_repeated_rule():
    from bioplastic.experiments.compare import compare_rules

    with pytest.raises(ValueError, match="rules lists \\['adam'\\] more than once"):
        compare_rules(rules=["adam", "adam"])
