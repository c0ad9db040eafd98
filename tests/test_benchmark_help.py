"""Every benchmark script answers ``--help`` with its usage and does no work."""

import sys
from pathlib import Path

import pytest
from conftest import load_benchmark

BENCHMARKS = sorted(
    p.stem for p in (Path(__file__).resolve().parent.parent / "benchmarks").glob("*.py")
)


@pytest.mark.parametrize("name", BENCHMARKS)
def test_help_prints_usage_without_running(name, monkeypatch, capsys):
    results = Path(__file__).resolve().parent.parent / "benchmarks" / "results"
    before = {p: p.stat().st_mtime_ns for p in results.rglob("*") if p.is_file()}
    bench = load_benchmark(name)
    monkeypatch.setattr(sys, "argv", [f"{name}.py", "--help"])
    with pytest.raises(SystemExit) as exit_:
        bench.main()
    assert exit_.value.code == 0
    assert "usage:" in capsys.readouterr().out
    after = {p: p.stat().st_mtime_ns for p in results.rglob("*") if p.is_file()}
    assert after == before  # nothing written (stream_warmup.py once ran in full on --help)
