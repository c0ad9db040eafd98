"""Every option of every ``bioplastic`` subcommand has a help text that shows its default, and
no help page shows a doubled percent sign (issue 11, help texts)."""

from __future__ import annotations

import argparse

import pytest

from bioplastic.cli import build_parser
from bioplastic.cli._args import HelpFormatter


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


SUBCOMMANDS = sorted(_subparsers())


def test_every_subcommand_is_checked():
    assert {"compare", "fewshot", "report", "robustness", "stream", "train"} <= set(SUBCOMMANDS)


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_help_has_no_doubled_percent(command):
    text = _subparsers()[command].format_help()
    assert "%%" not in text
    assert "%(" not in text


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_option_has_help_that_shows_its_default(command):
    sub = _subparsers()[command]
    formatter = HelpFormatter(prog=sub.prog)
    for action in sub._actions:
        if not action.option_strings or action.help is argparse.SUPPRESS:
            continue
        assert action.help and action.help.strip(), f"{command} {action.option_strings[0]}"
        shown = formatter._expand_help(action)
        takes_value = action.nargs != 0
        if takes_value:
            assert "default" in shown, f"{command} {action.option_strings[0]}: {shown!r}"


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_option_line_in_the_rendered_help_has_text(command, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    text = capsys.readouterr().out
    options = text[text.index("options:") :].splitlines()[1:]
    for i, line in enumerate(options):
        stripped = line.strip()
        if not line.startswith("  -"):  # an option line (its help's lines are indented more)
            continue
        # "  --opt VALUE   help..." on one line, or the help on the next, indented line
        parts = stripped.split("  ")
        has_text = len([p for p in parts if p.strip()]) > 1
        next_is_help = i + 1 < len(options) and options[i + 1].startswith(" " * 8)
        assert has_text or next_is_help, f"{command}: no help for {stripped!r}"


def test_fewshot_description_says_95_percent(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["fewshot", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "95% confidence" in text


def test_defaults_are_written_as_typed():
    text = _subparsers()["fewshot"].format_help()
    assert "(default: bio,adam,eg)" in " ".join(text.split())
    assert "['bio'" not in text
