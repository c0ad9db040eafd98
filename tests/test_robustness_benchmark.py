import copy
import json

import pytest
import torch
from torch import nn

from bioplastic.experiments.robustness import (
    DLR_ATTACK,
    ENSEMBLE_ATTACK,
    apgd_dlr_accuracy,
    format_markdown,
    magnitude_prune_,
    rescale_layers_,
    run_robustness,
    write_results,
)

RUN_KEYS = {
    "rule", "seed", "training", "clean_accuracy", "curve", "robust_mean", "robust_ratio",
    "connectivity", "connectivity_per_layer", "dale_violations", "sign_flips", "lipschitz_bound",
    "weight_scale", "gradients", "masking", "activity", "log_magnitude", "seconds",
}  # fmt: skip


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return run_robustness(
        "digits",
        rules=("bio", "adam"),
        seeds=2,
        target_accuracy=0.8,
        epsilons=(0.0, 0.05, 0.1),
        l2_epsilons=(0.0, 0.5),
        hidden=(8,),
        max_epochs=2,
        eval_every_steps=20,
        pgd_steps=3,
        masking_eps=(0.1,),
        masking_steps=3,
        masking_restarts=1,
        finetune_epochs=1,
        n_receptive_fields=4,
        n_test=100,
    )


def test_tiny_experiment_has_the_documented_keys(tiny):
    assert {"schema", "config", "runs", "interventions", "summary", "analysis",
            "receptive_fields", "seconds"} <= set(tiny)  # fmt: skip
    assert len(tiny["runs"]) == 4
    for run in tiny["runs"]:
        assert RUN_KEYS <= set(run)
        assert set(run["curve"]["attacks"]) == {"fgsm", "pgd", "pgd_l2", DLR_ATTACK,
                                                ENSEMBLE_ATTACK}  # fmt: skip
        assert {"reached", "accuracy", "epoch", "steps"} <= set(run["training"])
        assert "masked" in run["masking"]
    assert {r["kind"] for r in tiny["interventions"]} == {
        "adam_pruned_to_bio", "adam_pruned_finetuned", "bio_rescaled_to_adam"}  # fmt: skip
    assert set(tiny["summary"]) >= {"bio", "adam", "adam_pruned_to_bio"}
    assert set(tiny["analysis"]) >= {"attack", "paired", "correlations", "interventions",
                                     "findings"}  # fmt: skip
    assert tiny["analysis"]["attack"] == ENSEMBLE_ATTACK
    assert len(tiny["receptive_fields"]["bio"]["filters"]) == 4
    assert len(tiny["receptive_fields"]["bio"]["filters"][0]) == 64  # ON/OFF folded to pixels
    json.dumps(tiny, allow_nan=False)  # strict JSON: NaN became null


def test_clean_accuracy_bounds_every_robust_accuracy(tiny):
    for run in tiny["runs"] + tiny["interventions"]:
        curve = run["curve"]
        for attack in curve["attacks"]:
            for eps, acc in zip(curve["epsilons"][attack], curve["accuracy"][attack], strict=True):
                assert acc <= run["clean_accuracy"] + 1e-12
                if eps == 0:
                    assert acc == run["clean_accuracy"]
        # the per-sample worst case is at least as strong as APGD-DLR alone
        for both, dlr in zip(curve["accuracy"][ENSEMBLE_ATTACK], curve["accuracy"][DLR_ATTACK],
                             strict=True):  # fmt: skip
            assert both <= dlr


def test_bio_keeps_dale_and_interventions_do_what_they_say(tiny):
    bio = [r for r in tiny["runs"] if r["rule"] == "bio"]
    assert all(r["dale_violations"] == 0 and r["sign_flips"] == 0 for r in bio)
    for r in tiny["interventions"]:
        source = next(b for b in bio if b["seed"] == r["seed"])
        if r["kind"] == "adam_pruned_to_bio":
            for layer, c in source["connectivity_per_layer"].items():
                assert r["connectivity_per_layer"][layer] == pytest.approx(c, abs=1e-3)
        if r["kind"] == "bio_rescaled_to_adam":
            assert r["decisions_unchanged"]
            assert r["clean_accuracy"] == source["clean_accuracy"]
            # the DLR loss ignores logit scale, so its robust accuracy barely moves
            for a, b in zip(r["curve"]["accuracy"][DLR_ATTACK],
                            source["curve"]["accuracy"][DLR_ATTACK], strict=True):  # fmt: skip
                assert a == pytest.approx(b, abs=0.01)


def test_markdown_and_result_files(tiny, tmp_path):
    text = format_markdown(tiny)
    assert "## Training to the target" in text and "| bio |" in text
    assert "## Findings" in text
    paths = write_results(tiny, tmp_path)
    assert json.loads(paths["json"].read_text())["config"]["dataset"] == "digits"
    for key in ("curves", "analysis", "receptive_fields"):
        assert paths[key].read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"dataset": "cifar"}, "dataset"),
        ({"rules": ("bio", "lion")}, "rules"),
        ({"seeds": 0}, "seeds"),
        ({"target_accuracy": 1.5}, "target_accuracy"),
        ({"epsilons": (0.0,)}, "budget > 0"),
        ({"pgd_steps": 0}, "pgd_steps"),
        ({"attacks": ("fgsm", "cw")}, "attacks"),
    ],
)
def test_bad_arguments_raise_value_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        run_robustness(**kwargs)


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))


def test_magnitude_prune_keeps_the_largest_weights():
    model = _mlp()
    before = model[0].weight.detach().abs().clone()
    masks = magnitude_prune_(model, {"0": 0.25})
    kept = model[0].weight != 0
    assert int(kept.sum()) == 6 and torch.equal(kept, masks["0"])
    assert before[kept].min() >= before[~kept].max()
    with pytest.raises(ValueError, match="unknown layers"):
        magnitude_prune_(model, {"9": 0.5})


def test_rescale_layers_multiplies_logits_and_keeps_decisions():
    model = _mlp()
    with torch.no_grad():
        model[0].bias.uniform_(-1, 1)
        model[2].bias.uniform_(-1, 1)
    scaled = copy.deepcopy(model)
    total = rescale_layers_(scaled, {"0": 3.0, "2": 0.5})
    x = torch.randn(20, 4)
    with torch.no_grad():
        assert torch.allclose(scaled(x), total * model(x), atol=1e-5)
    assert total == pytest.approx(1.5)
    with pytest.raises(ValueError, match="> 0"):
        rescale_layers_(scaled, {"0": -1.0})


def test_rescaling_an_inhibited_mlp_keeps_its_decisions_and_leaves_the_interneurons_alone():
    import bioplastic as bp

    model = bp.BioMLP(4, (16, 16), 3, seed=0)
    names = [n for n, _ in bp.synaptic_layers(model)]
    assert "net.4.interneurons" in names
    principal = [n for n in names if "interneurons" not in n]
    scaled = copy.deepcopy(model)
    total = rescale_layers_(scaled, dict(zip(principal, (2.0, 0.5, 3.0), strict=True)))
    x = torch.rand(20, 4)
    with torch.no_grad():
        assert torch.allclose(scaled(x), total * model(x), atol=1e-5)
    with pytest.raises(ValueError, match="interneuron"):
        rescale_layers_(scaled, {"net.4.interneurons": 2.0})


def test_apgd_dlr_accuracy_is_invariant_to_logit_scale():
    model = _mlp()
    x, y = torch.rand(40, 4), torch.randint(0, 3, (40,))
    loud = copy.deepcopy(model)
    rescale_layers_(loud, {"2": 50.0})
    clean = apgd_dlr_accuracy(model, (x, y), 0.0)
    quiet_acc = apgd_dlr_accuracy(model, (x, y), 0.2, steps=5)
    assert quiet_acc <= clean
    assert apgd_dlr_accuracy(loud, (x, y), 0.2, steps=5) == pytest.approx(quiet_acc, abs=0.03)


def test_bio_options_reach_bio_only_and_bad_ones_are_refused_before_any_work(monkeypatch):
    import bioplastic.experiments.robustness.run as run

    def no_data(*args, **kwargs):
        raise AssertionError("loaded data before checking bio_options")

    monkeypatch.setattr(run, "_seed_data", no_data)
    with pytest.raises(ValueError, match="budget_rate"):
        run_robustness("digits", rules=("bio", "adam"), seeds=1, bio_options={"budget_rate": 2.0})
    monkeypatch.undo()
    result = run_robustness(
        "digits", rules=("bio", "eg"), seeds=1, target_accuracy=0.5, hidden=(8,), max_epochs=1,
        epsilons=(0.0, 0.1), l2_epsilons=(0.0, 0.5), pgd_steps=2, masking_eps=(0.1,),
        masking_steps=2, masking_restarts=1, n_receptive_fields=2, n_test=60,
        bio_options={"budget_rate": 0.1},
    )  # fmt: skip
    settings = result["config"]["rule_settings"]
    assert settings["bio"]["budget_rate"] == 0.1
    assert settings["eg"]["budget_rate"] != 0.1  # eg keeps its own settings


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--datasets", "digits,nope"], "unknown dataset or rule ['nope']"),
        (["--rules", "bio,nope"], "unknown dataset or rule ['nope']"),
        (["--bio-option", "foo=1"], "--bio-option: unknown BioRule options ['foo']"),
        (["--bio-option", "lr=abc"], "--bio-option: lr must be"),
    ],
)
def test_the_benchmark_script_refuses_bad_arguments_before_any_work(args, says, capsys, tmp_path):
    from conftest import load_benchmark

    with pytest.raises(SystemExit):
        load_benchmark("robustness").main([*args, "--out", str(tmp_path / "out")])
    assert says in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
