"""The mechanism-ablation sweep: variants really change the rule and model, table and CIs."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from bioplastic import BioRule
from bioplastic.dale import OnOffSplit
from bioplastic.experiments import ablation as ab
from bioplastic.experiments._common import t_critical
from bioplastic.probes import weight_report

STREAM = {"stream_rule": {"warmup": 0, "budget_rate": 0.1},
          "consolidate": {"fraction": 0.5, "factor": 0.1}}  # fmt: skip


@pytest.mark.parametrize("variant", [v for v in ab.VARIANTS if ab.VARIANTS[v].get("rule")])
def test_rule_variants_change_the_optimizer_options(variant):
    model = ab.build_model(variant, 8, 3, (6,), 0)
    opt = ab.make_rule(variant, model.parameters(), base={"warmup": 0})
    default = ab.make_rule("defaults", model.parameters())
    assert isinstance(opt, BioRule)
    changed = ab.VARIANTS[variant]["rule"]
    assert all(opt.param_groups[0][key] == value for key, value in changed.items())
    # the row really switches something
    assert any(default.param_groups[0][key] != value for key, value in changed.items())
    assert opt.param_groups[0]["warmup"] == 0  # the job's base options survive


def test_noise_row_has_noise_and_baselines_are_adam():
    model = ab.build_model("noise 0.1", 8, 3, (6,), 0)
    assert ab.make_rule("noise 0.1", model.parameters()).param_groups[0]["noise"] == 0.1
    assert ab.make_rule("defaults", model.parameters()).param_groups[0]["noise"] == 0.0
    for base in ab.BASELINES:  # on their own (plain) network
        params = ab.build_model(base, 8, 3, (6,), 0).parameters()
        assert type(ab.make_rule(base, params)) is torch.optim.Adam


def test_model_variants():
    dale = weight_report(ab.build_model("defaults", 8, 3, (16,), 0))
    assert all(r["dale_violations"] == 0 for r in dale.values())
    for config in ("Dale typing off", "adam-torch"):
        model = ab.build_model(config, 8, 3, (16,), 0)
        assert not any(hasattr(m, "dale_sign") for m in model.modules())
        assert sum(r["dale_violations"] for r in weight_report(model).values()) > 0
    assert any(isinstance(m, OnOffSplit) for m in ab.build_model("defaults", 8, 3, (6,), 0).net)
    assert not any(
        isinstance(m, OnOffSplit) for m in ab.build_model("ON/OFF input off", 8, 3, (6,), 0).net
    )

    def spread(config):
        w = ab.build_model(config, 64, 3, (256,), 0).net[2].weight.detach()
        return float(torch.log(w.abs()).std())

    assert spread("init sigma 0.25") < spread("defaults") < spread("init sigma 1.0")


def _fake_job(name):
    # every metric: adam-dale 0, adam-torch 0.5 (the better baseline where higher is better),
    # bio variants 0.20, 0.21, 0.22 in seeds 0, 1, 2
    def job(config, seed, settings):
        model = ab.build_model(config, 8, 3, (4,), seed)
        opt = ab.make_rule(config, model.parameters())
        offset = {"adam-dale": 0.0, "adam-torch": 0.5}.get(config, 0.2 + 0.01 * seed)
        return {"noise": opt.param_groups[0].get("noise"),
                **{m.key: offset for m in (*ab.METRICS, *ab.CONTEXT) if m.job == name}}  # fmt: skip

    return job


def test_table_structure_ci_and_journal(tmp_path, monkeypatch):
    for name in ab.JOBS:
        monkeypatch.setitem(ab.JOBS, name, _fake_job(name))
    # the shared working tree's core may change between the two runs below
    monkeypatch.setattr(ab, "_code_fingerprint", lambda: "fixed")
    variants = ("defaults", "noise 0.1", "consolidation off")
    journal = tmp_path / "journal.jsonl"
    results = ab.run_ablation(variants, 3, settings={**ab.QUICK, **STREAM}, journal=journal)
    rows = results["rows"]
    # consolidation only acts in the allocation jobs: it runs nothing else
    assert {r["job"] for r in rows if r["config"] == "consolidation off"} == {
        "allocation-digits", "allocation-mnist1d"}  # fmt: skip
    assert [r["noise"] for r in rows if r["config"] == "noise 0.1"] == [0.1] * 3 * len(ab.JOBS)
    table = results["table"]
    assert list(table) == list(variants)
    keys = {f"{m.job}/{m.key}" for m in (*ab.METRICS, *ab.CONTEXT)}
    assert all(set(cells) == keys for cells in table.values())
    assert table["consolidation off"]["robustness/robust"] is None
    # higher is better: adam-torch (0.5) is the baseline; diffs -0.30, -0.29, -0.28
    cell = table["defaults"]["robustness/robust"]
    half = t_critical(3) * 0.01 / math.sqrt(3)  # sample sd of the diffs is 0.01
    assert t_critical(3) == pytest.approx(4.302653, abs=1e-5)
    assert cell["baseline"] == "adam-torch" and cell["n"] == 3
    assert cell["mean_diff"] == pytest.approx(-0.29)
    assert cell["ci95_low"] == pytest.approx(-0.29 - half)
    assert cell["ci95_high"] == pytest.approx(-0.29 + half)
    assert cell["adam"]["mean"] == pytest.approx(0.5)
    # lower is better: adam-dale (0.0) is the baseline; diffs +0.20, +0.21, +0.22
    cell = table["defaults"]["allocation-digits/overlap"]
    assert cell["baseline"] == "adam-dale" and cell["mean_diff"] == pytest.approx(0.21)
    assert ab.favourable(cell, -1) is False and ab.favourable(cell, +1) is True
    # a context column is read against its job's first claim's baseline, not its own best
    assert table["defaults"]["allocation-digits/accuracy"]["baseline"] == "adam-dale"
    assert ab.favourable(cell, 0) is False  # context columns mark nothing
    assert results["candidates"] == []  # every difference is against its claim
    flipped = {"defaults": {**table["defaults"], "robustness/robust": cell}}
    found = ab.candidates(flipped)  # +0.21 on a higher-is-better claim is a candidate
    assert [(c["variant"], c["metric"]) for c in found] == [("defaults", ab.METRICS[0].label)]
    assert found[0]["clean_accuracy_diff"] == table["defaults"]["robustness/clean"]
    text = ab.format_markdown(results)
    assert "None: no variant beats adam" in text
    blocks = [b.splitlines() for b in text.split("\n\n") if b.startswith("| variant")]
    assert len(blocks) == 2
    for block in blocks:  # no label breaks a markdown table: every row has the header's cells
        assert len(block) == 2 + len(variants)
        assert {line.count("|") for line in block} == {block[0].count("|")}

    # the journal holds every job: a rerun trains nothing
    def boom(config, seed, settings):
        raise AssertionError("a journaled job ran again")

    for name in ab.JOBS:
        monkeypatch.setitem(ab.JOBS, name, boom)
    again = ab.run_ablation(variants, 3, settings={**ab.QUICK, **STREAM}, journal=journal)
    assert again["table"] == table


def test_allocation_job_consolidates_bio_only(monkeypatch):
    calls = []
    monkeypatch.setattr(BioRule, "consolidate", lambda self, **kw: calls.append(kw) or {})
    settings = {**ab.QUICK, **STREAM}
    row = ab.JOBS["allocation-digits"]("defaults", 0, settings)
    assert calls == [STREAM["consolidate"]] * 5
    assert 0 <= row["overlap"] <= 1 and 0 <= row["accuracy"] <= 1
    assert len(row["accuracy_matrix"]) == 5
    calls.clear()
    ab.JOBS["allocation-digits"]("consolidation off", 0, settings)
    ab.JOBS["allocation-digits"]("adam-dale", 0, settings)
    assert calls == []


def test_unknown_variant_is_refused():
    with pytest.raises(ValueError, match="unknown variants"):
        ab.run_ablation(("no such row",), 1, settings={**ab.QUICK, **STREAM})
    assert isinstance(ab.build_model("defaults", 4, 2, (3,), 0), nn.Module)


def test_multi_head_shares_an_inhibited_readouts_interneurons_across_heads():
    import torch

    from bioplastic.experiments.ablation import _MultiHead, build_model

    model = build_model("defaults", 6, 4, (8, 8), seed=0)
    readout = model.net[-1]
    heads = _MultiHead(model, n_tasks=2, per_task=2)
    assert any(p is readout.interneurons.weight for p in heads.parameters())
    x = torch.rand(5, 6)
    with torch.no_grad():
        full = readout(heads.trunk(x))
        for t in range(2):  # each head is its slice of the inhibited readout
            heads.task = t
            torch.testing.assert_close(heads(x), full[:, 2 * t : 2 * t + 2])
