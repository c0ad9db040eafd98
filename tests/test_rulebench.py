"""The rule benchmark and the sparse peers: models, masks, one run per kind of rule, targets."""

from dataclasses import replace

import pytest
import torch
from torch import nn

from bioplastic.baselines import SparsePeer
from bioplastic.experiments import rulebench as rb
from bioplastic.probes import synaptic_layers

TINY = replace(rb.TASKS["digits-mlp1x256"], width=(32,), epochs=2)


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 5)
    )


def _train(peer, model, steps=120):
    x, y = torch.randn(256, 20), torch.randint(0, 5, (256,))
    for i in range(steps):
        idx = slice((i * 32) % 256, (i * 32) % 256 + 32)
        peer.zero_grad()
        nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        peer.step()
    return peer.finish()


def _connectivity(model):
    weights = [m.weight for _, m in synaptic_layers(model)]
    return sum(int((w != 0).sum()) for w in weights) / sum(w.numel() for w in weights)


@pytest.mark.parametrize("name", ["deepr", "rigl"])
def test_peers_reach_the_requested_whole_model_connectivity(name):
    pytest.importorskip("deep_rewire" if name == "deepr" else "rigl_torch")
    model = _mlp()
    model = _train(SparsePeer(name, model, connectivity=0.3, total_steps=120), model)
    # rigl-torch alone keeps every Linear layer dense; the wrapper must make its masks apply
    assert _connectivity(model) == pytest.approx(0.3, abs=0.02)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_peer_arguments_are_checked_before_any_work():
    with pytest.raises(ValueError, match="unknown peer"):
        SparsePeer("rigl2", _mlp())
    with pytest.raises(ValueError, match="connectivity"):
        SparsePeer("deepr", _mlp(), connectivity=0.0)
    pytest.importorskip("rigl_torch")
    with pytest.raises(ValueError, match="first layer dense"):
        SparsePeer("rigl", _mlp(), connectivity=0.05)  # the dense first layer alone is 0.2


def test_default_init_drops_the_dale_types_and_dale_init_keeps_them():
    shape = (64,)
    dale = rb.build_model(TINY, shape, "dale", seed=0)
    plain = rb.build_model(TINY, shape, "default", seed=0)
    assert all(hasattr(m.weight, "dale_sign") for _, m in synaptic_layers(dale))
    assert not any(hasattr(m.weight, "dale_sign") for _, m in synaptic_layers(plain))
    # PyTorch's init draws both signs in every column; Dale's init never does
    w = synaptic_layers(plain)[0][1].weight
    assert ((w > 0).any(0) & (w < 0).any(0)).all()


def test_conv4_has_four_dale_conv_layers_and_an_on_off_first_layer():
    task = rb.TASKS["glyphs100-conv4"]
    model = rb.build_model(task, (1, 28, 28), "dale", seed=0)
    convs = [m for _, m in synaptic_layers(model) if isinstance(m, nn.Conv2d)]
    assert len(convs) == 4
    assert sorted(convs[0].weight.dale_sign.tolist()) == [-1.0, 1.0]
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 100)


@pytest.mark.parametrize("rule", ["bio", "adam", "adam-dale", "eg", "enforced"])
def test_one_run_reports_accuracy_connectivity_and_shape(rule):
    row = rb.run_one(TINY, rule, seed=0)
    assert row["task"] == TINY.name and row["rule"] == rule
    assert 0.1 < row["test"] <= 1.0  # learns something in two epochs
    assert 0 < row["connectivity"] <= 1
    if rule in ("bio", "eg"):
        assert row["sign_flips"] == 0 and row["dale_violations"] == 0


def test_targets_compare_bio_with_the_best_dense_baseline_and_every_peer():
    def entry(test, conn=1.0, skew=0.1, kurt=0.1):
        return {"test": test, "connectivity": conn, "worst_abs_skew": skew,
                "worst_abs_kurtosis": kurt, "sign_flips": 0, "dale_violations": 0}  # fmt: skip

    results = {"seeds": [0], "summary": {"t": {
        "bio": entry(0.80, 0.25), "adam": entry(0.805), "adam-dale": entry(0.70),
        "rigl": entry(0.79, 0.25), "deepr": entry(0.81, 0.25),
    }}}  # fmt: skip
    check = rb.check_targets(results)["t"]
    assert check["best_dense"] == "adam" and check["accuracy_ok"]
    assert check["connectivity_ok"] and check["shape_ok"] and check["dale_ok"]
    assert not check["beats_sparse_peers"]  # deepr is ahead
    results["summary"]["t"]["bio"] = entry(0.78, 0.35, kurt=1.5)
    check = rb.check_targets(results)["t"]
    assert not (check["accuracy_ok"] or check["connectivity_ok"] or check["shape_ok"])
    assert "MISS" in rb.format_markdown(results)


def test_the_journal_keeps_finished_runs_and_a_rerun_reads_them_back(tmp_path, monkeypatch):
    journal = tmp_path / "runs" / "journal.jsonl"
    jobs = [(TINY, "adam", 0, None, None)]
    first = rb.run_jobs(jobs, journal=journal)
    assert len(journal.read_text().splitlines()) == 1

    def never(job):
        raise AssertionError("a run found in the journal was run again")

    monkeypatch.setattr(rb, "_job", never)
    assert rb.run_jobs(jobs, journal=journal) == first


def test_a_peer_that_cannot_reach_the_connectivity_is_reported_not_run():
    pytest.importorskip("rigl_torch")
    row = rb.run_one(TINY, "rigl", seed=0, connectivity=0.01)
    assert "first layer dense" in row["not_run"] and row["test"] is None
    summary = rb.summarise([row])
    assert "first layer dense" in summary[TINY.name]["rigl"]["not_run"]


def test_bio_trains_the_inhibited_mlp_and_the_other_rules_the_plain_one(monkeypatch):
    from bioplastic.dale import INTERNEURONS

    mlp, conv = rb.TASKS["mnist1d-mlp2x256"], rb.TASKS["glyphs100-conv2"]
    assert mlp.interneurons_for("bio") == INTERNEURONS
    assert not any(mlp.interneurons_for(r) for r in rb.RULES if r != "bio")
    assert not any(conv.interneurons_for(r) for r in rb.RULES)
    assert not replace(mlp, interneurons=0.0).interneurons_for("bio")  # an explicit value wins
    assert replace(mlp, interneurons=0.2).interneurons_for("adam") == 0.2
    built = []
    original = rb.build_model
    monkeypatch.setattr(rb, "build_model", lambda *a: built.append(a[-1]) or original(*a))
    for rule in ("bio", "adam", "eg"):
        rb.run_one(replace(TINY, epochs=1), rule, seed=0)
    assert built == [INTERNEURONS, 0.0, 0.0]


def test_readout_options_apply_to_the_last_synaptic_layer_alone(monkeypatch):
    model = rb.build_model(TINY, (64,), "dale", seed=0)
    readout = synaptic_layers(model)[-1][1].weight
    params, rest = rb.readout_groups(model, {"lr": 0.1, "readout": {"weight_dependence": 0.5}})
    assert rest == {"lr": 0.1}
    assert params[1]["params"] == [readout] and params[1]["weight_dependence"] == 0.5
    assert all(p is not readout for p in params[0]["params"])
    assert len(params[0]["params"]) + 1 == len(list(model.parameters()))
    plain, _ = rb.readout_groups(model, {"lr": 0.1})
    assert plain == list(model.parameters())
    built = []  # run_one hands the groups to the optimizer and records the options
    original = rb.make_optimizer
    monkeypatch.setattr(rb, "make_optimizer", lambda *a, **k: built.append(original(*a, **k))
                        or built[-1])  # fmt: skip
    row = rb.run_one(replace(TINY, epochs=1), "bio", seed=0,
                     options={"readout": {"weight_dependence": 0.5}})  # fmt: skip
    groups = built[0].param_groups
    assert [g["weight_dependence"] for g in groups] == [1.0, 0.5]
    assert row["options"] == {"readout": {"weight_dependence": 0.5}}


def test_rule_names_give_optimizer_init_and_schedule():
    assert rb.rule_parts("bio") == ("bio", "dale", False)
    assert rb.rule_parts("adam") == ("adam", "default", False)
    assert rb.rule_parts("adam-dale-cos") == ("adam", "dale", True)
    assert rb.rule_parts("sgd-cos") == ("sgd", "default", True)
    assert rb.rule_parts("deepr") == ("deepr", "default", False)
    assert {rb.rule_parts(r)[2] for r in rb.DENSE_RULES} == {False, True}


def test_bio_anneals_over_the_run_and_cos_rules_take_a_cosine_schedule(monkeypatch):
    built = []
    original = rb.make_optimizer
    monkeypatch.setattr(rb, "make_optimizer", lambda *a, **k: built.append(original(*a, **k))
                        or built[-1])  # fmt: skip
    task = replace(TINY, epochs=1)
    steps = -(-len(rb.load_task(task)[0]) // task.batch_size)
    rb.run_one(task, "bio", seed=0)
    assert built[-1].param_groups[0]["total_steps"] == steps
    assert built[-1]._group_steps == [steps]  # the whole schedule, no step past its end
    rb.run_one(task, "bio", seed=0, options={"total_steps": None})  # a sweep's constant rate
    assert built[-1].param_groups[0]["total_steps"] is None
    rb.run_one(task, "adam-cos", seed=0)
    assert built[-1].param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)  # annealed to 0
    rb.run_one(task, "adam", seed=0)
    assert built[-1].param_groups[0]["lr"] == 1e-3
