import json

import pytest

from bioplastic.cli import main


def test_compare_runs_and_writes_results(tmp_path, capsys):
    out = tmp_path / "cmp"
    code = main(["compare", "--rules", "bio,adam", "--models", "biomlp", "--seeds", "1",
                 "--epochs", "1", "--out", str(out)])  # fmt: skip
    assert code == 0
    results = json.loads((out / "compare.json").read_text())
    assert {r["rule"] for r in results["runs"]} == {"bio", "adam"}
    assert all(0.0 <= r["test_accuracy"] <= 1.0 for r in results["runs"])
    bio = next(r for r in results["runs"] if r["rule"] == "bio")
    assert bio["sign_flips"] == 0 and bio["dale_violations"] == 0
    printed = capsys.readouterr().out
    assert "| biomlp | bio |" in printed and (out / "compare.md").exists()


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["compare", "--rules", "bio,lion"], "'lion'"),
        (["compare", "--seeds", "0"], "positive integer"),
        (["compare", "--epochs", "many"], "positive integer"),
        (["compare", "--models", ""], "empty list"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_input_gives_one_line_error_and_writes_nothing(tmp_path, capsys, argv, needle):
    code = main([*argv, "--out", str(tmp_path / "x")] if argv[0] == "compare" else argv)
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert needle in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "x").exists()
