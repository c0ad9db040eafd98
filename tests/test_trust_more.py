"""Issue 11, the rest: a frozen DDP rank is named after ``--timeout`` seconds, single-seed
tables print no "± 0.000", ``report`` finds its results outside the repository, and the
forgetting we print is named for what it is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from bioplastic.cli import build_parser, main
from bioplastic.distributed import DistInfo
from bioplastic.experiments import train as train_mod

TIMED_OUT = "[gloo] Timed out waiting 2000ms for recv operation to complete"


# ------------------------------------------------------------------------------ item 6: --timeout
def test_train_timeout_option_parses_and_defaults_to_300_s():
    parser = build_parser()
    assert parser.parse_args(["train"]).timeout == 300.0
    assert parser.parse_args(["train", "--timeout", "12.5"]).timeout == 12.5


@pytest.mark.parametrize("bad", ["0", "-3", "nan", "inf", "soon"])
def test_train_timeout_refuses_non_positive_or_non_numbers(bad, capsys):
    assert main(["train", "--timeout", bad]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("bioplastic train: error:") and "--timeout" in err
    assert "\n" not in err


def test_train_config_refuses_a_bad_timeout():
    with pytest.raises(ValueError, match="timeout"):
        train_mod.TrainConfig(timeout=0).validate()


class _Store:
    """The part of torch's key-value store the roll uses."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}

    def set(self, key: str, value: str) -> None:
        self.data[key] = value

    def check(self, keys: list[str]) -> bool:
        return all(k in self.data for k in keys)

    def get(self, key: str) -> bytes:
        return self.data[key].encode()


def _roll(rank: int, store: _Store, world_size: int = 3) -> train_mod._Roll:
    info = DistInfo(rank, world_size, rank, torch.device("cpu"), "gloo")
    return train_mod._Roll(info, 2.0, store=store)


def test_a_timed_out_collective_names_the_rank_that_did_not_answer():
    store = _Store()
    rank0, rank1, rank2 = (_roll(r, store) for r in range(3))
    for roll in (rank0, rank1, rank2):  # every rank passes the first collective
        with roll.collective("at the start"):
            pass
    with rank1.collective("in epoch 1, batch 1"):  # rank 1 passes this one too
        pass
    # rank 2 froze before it: rank 0's collective times out
    with pytest.raises(train_mod.RankTimeout) as caught:
        with rank0.collective("in epoch 1, batch 1"):
            raise dist.DistBackendError(TIMED_OUT)
    message = str(caught.value)
    assert message.startswith("rank 2 of 3 did not answer within 2 s in epoch 1, batch 1")
    assert "rank 0 waited" in message and "--timeout" in message and "\n" not in message


def test_other_errors_pass_through_the_roll_unchanged():
    roll = _roll(0, _Store())
    with pytest.raises(ValueError, match="not a timeout"):
        with roll.collective("at the start"):
            raise ValueError("not a timeout")
    with pytest.raises(RuntimeError, match="ranks diverged"):
        with roll.collective("at the start"):
            raise RuntimeError("ranks diverged")


def test_a_single_process_writes_nothing_to_a_store():
    info = DistInfo()
    roll = train_mod._Roll(info, 300.0)
    with roll.collective("at the start"):
        pass
    assert roll.store is None and roll.entered == 0


def test_train_turns_a_timeout_in_a_step_into_rank_timeout(tmp_path, monkeypatch):
    """A real (one-rank gloo) process group and store; the collective after the first step
    times out."""

    def frozen_peer(info, flag):
        raise dist.DistBackendError(TIMED_OUT)

    monkeypatch.setattr(train_mod, "agree_to_stop", frozen_peer)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        info = DistInfo(0, 1, 0, torch.device("cpu"), "gloo")
        config = train_mod.TrainConfig(
            hidden=(8,), epochs=1, batch_size=256, out=tmp_path / "out", timeout=7
        )
        with pytest.raises(train_mod.RankTimeout, match="within 7 s in epoch 1, batch 1"):
            train_mod.train(config, info)
    finally:
        dist.destroy_process_group()


def test_cli_passes_timeout_and_prints_one_line(tmp_path, monkeypatch, capsys):
    import bioplastic.distributed as D

    seen = {}

    def fake_init(device, backend, timeout_s):
        seen["timeout_s"] = timeout_s
        return DistInfo()

    def fake_train(config, info, progress=None):
        raise train_mod.RankTimeout("rank 1 of 2 did not answer within 9 s at the start")

    monkeypatch.setattr(D, "init_distributed", fake_init)
    monkeypatch.setattr(train_mod, "train", fake_train)
    out = tmp_path / "out"
    assert main(["train", "--device", "cpu", "--timeout", "9", "--out", str(out)]) == 1
    assert seen["timeout_s"] == 9.0
    err = capsys.readouterr().err
    assert err == ("bioplastic train: error: rank 1 of 2 did not answer within 9 s at the start\n")


# ------------------------------------------------------------------------------ single-seed tables
RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def _formatters():
    from bioplastic.experiments.compare import format_markdown as compare_md
    from bioplastic.experiments.robustness.markdown import format_markdown as robustness_md
    from bioplastic.experiments.stream.markdown import format_markdown as stream_md

    return [
        ("digits_rules.json", compare_md),
        ("robustness_digits.json", robustness_md),
        ("stream_split-digits_task.json", stream_md),
    ]


@pytest.mark.parametrize("name, fmt", _formatters(), ids=lambda v: getattr(v, "__module__", v))
def test_single_seed_tables_print_the_value_alone(name, fmt):
    results = json.loads((RESULTS / name).read_text())
    several = fmt(results)
    assert " ± " in several  # several seeds: mean ± std
    results["config"]["seeds"] = [0]
    one = fmt(results)
    assert "± 0.000" not in one and " ± " not in one.replace("mean ± std", "")
    assert "one seed" in one.lower()
    # the same numbers, without their spread
    cells = (c for line in several.splitlines() if line.startswith("|") for c in line.split("|"))
    cell = next(c for c in cells if " ± " in c)
    assert cell.split(" ± ")[0].strip() in one


# ------------------------------------------------------------------------ report paths, --quick
def test_report_default_results_is_the_checkout_s_from_any_directory(tmp_path, monkeypatch):
    from bioplastic.experiments import report

    monkeypatch.chdir(tmp_path)
    assert report.default_results_dir() == RESULTS
    seen = {}

    def fake_build(results, out, quick, progress):
        seen["results"], seen["out"] = results, out
        return out

    monkeypatch.setattr(report, "build_report", fake_build)
    assert main(["report"]) == 0
    assert seen["results"] == RESULTS and seen["out"] == RESULTS / "REPORT.md"


def test_report_without_results_says_which_folder_to_pass(tmp_path, capsys):
    assert main(["report", "--results", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "pass --results" in err and "benchmarks/results" in err


def test_report_quick_says_exactly_what_it_reruns(tmp_path, monkeypatch, capsys):
    from bioplastic.experiments import report

    reran = []
    monkeypatch.setattr(report, "_quick_compare", lambda ctx: reran.append("compare"))
    monkeypatch.setattr(report, "_quick_robustness", lambda ctx: reran.append("robustness"))
    page = report.build_report(RESULTS, tmp_path / "REPORT.md", quick=True, sections=())
    text = " ".join(page.read_text().split())
    assert reran == ["compare", "robustness"]
    assert f"reruns only {report.QUICK_RERUNS}" in text
    assert "every other section reads the committed results" in text
    with pytest.raises(SystemExit):
        main(["report", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "only the digits rule comparison (biomlp, 2 seeds, 10 epochs)" in help_text
    assert "the digits robustness experiment (2 seeds, reduced epsilon grid)" in help_text
    assert "digits rule comparison (biomlp, 2 seeds, 10 epochs)" in report.QUICK_RERUNS
