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
