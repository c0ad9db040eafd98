"""benchmarks/fewshot_collapse.py: the last-layer activity it reports and its outputs."""

import json
import types

import pytest
import torch
from conftest import load_benchmark
from torch import nn


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("fewshot_collapse")


def test_activity_is_the_positive_fraction_of_the_last_relu_layer(bench):
    net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 2))
    with torch.no_grad():
        net[2].weight.zero_()
        net[2].bias.copy_(torch.tensor([1.0, -1.0, 1.0]))  # two of three units on, any input
        net[0].bias.fill_(-100.0)  # the first ReLU layer silent: it must not be the one read
    meta = types.SimpleNamespace(module=net)
    assert bench.last_layer_activity(meta, torch.randn(7, 2)) == pytest.approx(2 / 3)


def test_a_run_writes_one_row_per_setting_with_its_seeds(bench, tmp_path):
    out = tmp_path / "collapse"
    bench.main(["--seeds", "0,1", "--iterations", "1", "--meta-batch", "1", "--classes", "10",
                "--out", str(out)])  # fmt: skip
    result = json.loads(out.with_suffix(".json").read_text())
    assert sorted((r["setting"], r["seed"]) for r in result["runs"]) == sorted(
        (name, seed) for name in bench.SETTINGS for seed in (0, 1)
    )
    assert all(0.0 <= r["activity"] <= 1.0 for r in result["runs"])
    table = out.with_suffix(".md").read_text()
    for name in bench.SETTINGS:
        row = next(line for line in table.splitlines() if line.startswith(f"| {name} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert len(cells) == 5  # name, two seeds, silent seeds, median
        assert cells[3] in ("0/2", "1/2", "2/2")
    assert "--classes 10" in result["config"]["command"]


def test_bad_seeds_are_refused_before_any_work(bench, tmp_path):
    with pytest.raises(SystemExit):
        bench.main(["--seeds", "0,x", "--out", str(tmp_path / "c")])
    assert not list(tmp_path.iterdir())
