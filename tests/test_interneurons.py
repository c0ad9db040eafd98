"""Feedforward inhibition (:mod:`bioplastic.inhibition`): :class:`InhibitedLinear`,
:class:`InhibitedConv2d`, their interneurons, ``BioMLP(interneurons=...)`` and ``bioplastic
train --interneurons`` (what they compute, their Dale types, their initialisation, and that the
bio rule trains them without breaking either)."""

from __future__ import annotations

import pytest
import torch
from conftest import assert_bio_rule_trains_keeping_signs
from torch import nn

import bioplastic as bp
from bioplastic.probes import dale_violations, synaptic_layers


def _layer(n_in=12, n_out=5, k=3, seed=0):
    return bp.InhibitedLinear(n_in, n_out, k, generator=torch.Generator().manual_seed(seed))


def test_inhibited_linear_subtracts_the_interneurons_drive():
    layer = _layer()
    h = torch.rand(7, 12)
    w = layer.principal.weight
    z = h @ layer.interneurons.weight.T
    expected = h @ w[:, :12].T + z @ w[:, 12:].T + layer.principal.bias
    torch.testing.assert_close(layer(h), expected)
    assert (w[:, :12] >= 0).all() and (w[:, 12:] <= 0).all()  # inputs E, interneurons I
    assert (layer.interneurons.weight >= 0).all()
    assert layer.interneurons.bias is None


def test_interneuron_weights_sum_to_one_after_dalify_reinitialises_them():
    model = nn.Sequential(_layer(), nn.ReLU(), _layer(5, 2, 1, seed=1))
    totals = [m.weight.sum(1) for m in model.modules() if isinstance(m, bp.Interneurons)]
    assert len(totals) == 2
    for t in totals:
        torch.testing.assert_close(t, torch.ones_like(t))
    bp.dalify(model, seed=3)  # re-initialises every layer, keeping the types
    for m in model.modules():
        if isinstance(m, bp.Interneurons):
            torch.testing.assert_close(m.weight.sum(1), torch.ones(m.out_features))
    assert all(dale_violations(m) == 0 for _, m in synaptic_layers(model))


def test_inhibited_conv_reads_its_inputs_and_1x1_interneurons():
    gen = torch.Generator().manual_seed(0)
    layer = bp.InhibitedConv2d(6, 4, 3, 2, generator=gen, padding=1)
    h = torch.rand(3, 6, 5, 5)
    z = nn.functional.conv2d(h, layer.interneurons.weight)  # 1x1, no bias
    w = layer.principal.weight
    expected = nn.functional.conv2d(torch.cat([h, z], 1), w, layer.principal.bias, padding=1)
    torch.testing.assert_close(layer(h), expected)
    assert layer.interneurons.kernel_size == (1, 1)
    assert (w[:, :6] >= 0).all() and (w[:, 6:] <= 0).all()
    torch.testing.assert_close(layer.interneurons.weight.sum((1, 2, 3)), torch.ones(2))
    bp.dalify(nn.Sequential(layer), seed=4)
    torch.testing.assert_close(layer.interneurons.weight.sum((1, 2, 3)), torch.ones(2))


def test_bio_rule_steps_an_inhibited_conv_keeping_its_signs():
    torch.manual_seed(0)
    model = nn.Sequential(
        bp.DaleConv2d(2, 8, 3, padding=1), nn.ReLU(),
        bp.InhibitedConv2d(8, 8, 3, 2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), bp.InhibitedLinear(8, 3, 1),
    )  # fmt: skip
    x, y = torch.rand(16, 2, 6, 6), torch.randint(0, 3, (16,))
    assert_bio_rule_trains_keeping_signs(model, x, y, steps=30, seed=0)


def test_inhibition_removes_most_of_the_common_mode_of_positive_inputs():
    """Positive (ReLU) inputs give a plain Dale layer's units a shared shift; interneurons,
    each a weighted mean of the inputs, cancel most of it."""
    gen = torch.Generator().manual_seed(0)
    h = torch.rand(2000, 256, generator=gen) * torch.rand(2000, 1, generator=gen) * 2

    def share(layer):
        with torch.no_grad():
            z = layer(h)
        return float(z.mean(1).var() / z.var(0).mean())

    plain = bp.DaleLinear(256, 128, generator=torch.Generator().manual_seed(1))
    inhibited = bp.InhibitedLinear(256, 128, 26, generator=torch.Generator().manual_seed(1))
    assert share(plain) > 0.5
    assert share(inhibited) < 0.5 * share(plain)


def test_bio_mlp_with_interneurons_has_them_after_the_first_layer_only():
    model = bp.BioMLP(10, (40, 20), 3, interneurons=0.1)
    layers = [m for m in model.net if not isinstance(m, (nn.ReLU, nn.Flatten, bp.OnOffSplit))]
    assert isinstance(layers[0], bp.DaleLinear)  # reads the ON/OFF input, typed as before
    torch.testing.assert_close(layers[0].dale_sign, bp.on_off_sign(10))
    assert [type(m) for m in layers[1:]] == [bp.InhibitedLinear, bp.InhibitedLinear]
    assert [m.interneurons.out_features for m in layers[1:]] == [4, 2]  # round(0.1 * width)
    assert (layers[1].principal.dale_sign[:40] == 1).all()  # every hidden unit excitatory


def test_bio_mlp_has_interneurons_by_default_and_without_them_keeps_its_layout():
    inhibited = bp.BioMLP(10, (8, 8), 3)
    assert [type(m).__name__ for m in inhibited.net[2::2]] == [
        "DaleLinear",
        *["InhibitedLinear"] * 2,
    ]
    assert inhibited.net[4].interneurons.out_features == 1  # round(0.1 * 8)
    keys = list(bp.BioMLP(10, (8,), 3, interneurons=0).state_dict())
    assert keys == ["net.2.weight", "net.2.bias", "net.2.dale_sign", "net.4.weight",
                    "net.4.bias", "net.4.dale_sign"]  # fmt: skip


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "0.1"])
def test_bad_interneuron_fraction_is_refused(bad):
    with pytest.raises(ValueError, match="interneurons"):
        bp.BioMLP(10, (8,), 3, interneurons=bad)


def test_bio_rule_trains_it_keeping_signs_and_interneuron_totals():
    from sklearn.datasets import load_digits

    torch.manual_seed(0)
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32)
    y = torch.tensor(y)
    model = bp.BioMLP(64, (64, 64), 10, interneurons=0.1)
    signs = {n: p.detach().sign().clone() for n, p in model.named_parameters() if p.dim() > 1}
    opt = bp.BioRule(model.parameters(), seed=0)
    for _ in range(8):
        for i in range(0, 1500, 64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[i : i + 64]), y[i : i + 64]).backward()
            opt.step()
    with torch.no_grad():
        accuracy = (model(x[1500:]).argmax(1) == y[1500:]).float().mean()
    assert accuracy > 0.85
    for n, p in model.named_parameters():
        if p.dim() > 1:
            present = p != 0
            assert torch.equal(p.sign()[present], signs[n][present]), n
    assert all(dale_violations(m) == 0 for _, m in synaptic_layers(model))
    for m in model.modules():
        if isinstance(m, bp.Interneurons):  # homeostasis keeps each interneuron's total
            torch.testing.assert_close(m.weight.sum(1), torch.ones(m.out_features), rtol=0.05,
                                       atol=0)  # fmt: skip


# ------------------------------------------------------------------ bioplastic train --interneurons
TRAIN = ["train", "--hidden", "32,16", "--epochs", "2", "--device", "cpu"]


def test_train_cli_builds_the_inhibited_mlp_and_refuses_to_resume_it_as_another(tmp_path, capsys):
    import json

    from bioplastic import distributed as D
    from bioplastic.cli import main

    out = tmp_path / "inh"
    assert main([*TRAIN, "--out", str(out)]) == 0  # bio's default: 0.1
    result = json.loads((out / "train.json").read_text())
    assert result["dale_violations"] == 0 and result["config"]["interneurons"] == 0.1
    state = D.load_checkpoint(out / D.CHECKPOINT_NAME)
    assert state["config"]["interneurons"] == 0.1
    assert any(".interneurons.weight" in k for k in state["model"])
    capsys.readouterr()
    assert main([*TRAIN, "--interneurons", "0", "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "interneurons 0.1 (now 0.0)" in err
    plain = tmp_path / "adam"  # the rules without homeostasis train the plain network
    assert main([*TRAIN, "--rule", "adam", "--epochs", "1", "--out", str(plain)]) == 0
    assert json.loads((plain / "train.json").read_text())["config"]["interneurons"] == 0.0


def test_checkpoints_from_before_interneurons_still_resume(tmp_path, capsys):
    from bioplastic import distributed as D
    from bioplastic.cli import main

    plain = [*TRAIN, "--interneurons", "0"]  # the architecture of earlier versions
    out = tmp_path / "old"
    assert main([*plain, "--epochs", "1", "--out", str(out)]) == 0
    path = out / D.CHECKPOINT_NAME
    state = D.load_checkpoint(path)
    del state["config"]["interneurons"]  # as written by earlier versions
    D.save_checkpoint(path, state)
    capsys.readouterr()
    assert main([*TRAIN, "--out", str(out), "--resume"]) == 2  # today's default is another net
    assert "interneurons 0.0 (now 0.1); pass --interneurons 0\n" in capsys.readouterr().err
    assert main([*plain, "--out", str(out), "--resume"]) == 0


def test_train_cli_refuses_a_bad_interneuron_fraction(tmp_path, capsys):
    from bioplastic.cli import main

    assert main([*TRAIN, "--interneurons", "1.5", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--interneurons: expected a number in [0, 1]" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("make", [bp.Interneurons, bp.ConvInterneurons])
@pytest.mark.parametrize("n", [0, -1, 1.5])
def test_a_bad_interneuron_count_is_refused_naming_it(make, n):
    with pytest.raises(ValueError, match="interneurons"):
        make(4, n)


def _benchmark_script():
    from conftest import load_benchmark

    return load_benchmark("interneurons")


def test_the_benchmark_writes_tables_and_a_figure_and_replots_them_alike(tmp_path, capsys):
    bench = _benchmark_script()
    args = ["--seeds", "1", "--tasks", "digits-mlp1x256", "--out", str(tmp_path / "inh"),
            "--journal", str(tmp_path / "runs.jsonl"), "--figures", str(tmp_path)]  # fmt: skip
    result = bench.main(args)
    entry = result["summary"]["digits-mlp1x256"]
    assert entry["inhibited/bio"]["dale_violations"] == 0
    assert entry["best_dense"]["name"] in ("plain/adam", "plain/sgd", "inhibited/adam",
                                           "inhibited/sgd", "inhibited/adam-dale",
                                           "inhibited/sgd-dale")  # fmt: skip
    text = (tmp_path / "inh.md").read_text()
    header, rule, row = text.splitlines()[4:7]
    assert header.count("|") == rule.count("|") == row.count("|") == 10
    assert (tmp_path / "inh.png").stat().st_size > 0
    (tmp_path / "inh.md").unlink()
    bench.main([*args, "--replot"])
    assert (tmp_path / "inh.md").read_text() == text
    for bad in (["--seeds", "0"], ["--tasks", ","], ["--depth-sweep", "--tasks", "glyphs500-mlp"]):
        with pytest.raises(SystemExit):
            bench.main(bad)
    assert "error" in capsys.readouterr().err


def test_only_bio_gets_interneurons_in_the_few_shot_backbones():
    from bioplastic.baselines import interneurons_for
    from bioplastic.experiments.fewshot.pretrain import _make_model

    assert [interneurons_for(r) for r in ("bio", "eg", "enforced", "adam", "sgd")] == [
        bp.dale.INTERNEURONS, 0.0, 0.0, 0.0, 0.0
    ]  # fmt: skip
    with pytest.raises(ValueError, match="unknown optimizer"):
        interneurons_for("adamw")
    for rule, inhibited in (("bio", True), ("adam", False)):
        model, features, readout = _make_model("mlp", (1, 8, 8), (16, 16), 5, seed=0, rule=rule)
        assert isinstance(readout, bp.InhibitedLinear) is inhibited
        assert features(torch.rand(3, 1, 8, 8)).shape == (3, 16)


def test_inh_fraction_still_types_the_plain_mlp_and_the_first_layer_without_on_off():
    plain = bp.BioMLP(10, (20,), 3, inh_fraction=0.3, interneurons=0)
    assert (plain.net[4].dale_sign < 0).sum() == 6  # 30% of the 20 hidden units
    first = bp.BioMLP(10, (20, 20), 3, inh_fraction=0.3, on_off=False).net[1]
    assert (first.dale_sign < 0).sum() == 3 and isinstance(first, bp.DaleLinear)


def test_a_state_dict_of_the_other_layout_is_refused_naming_the_argument_to_build():
    plain = bp.BioMLP(8, (16, 16), 3, interneurons=0).state_dict()  # the layout before 0.1
    with pytest.raises(RuntimeError, match="without interneurons.*build it with interneurons=0"):
        bp.BioMLP(8, (16, 16), 3).load_state_dict(plain)
    inhibited = bp.BioMLP(8, (16, 16), 3)
    with pytest.raises(RuntimeError, match=r"with interneurons.*interneurons=0\.1"):
        bp.BioMLP(8, (16, 16), 3, interneurons=0).load_state_dict(inhibited.state_dict())
    other = bp.BioMLP(8, (16, 16), 3, seed=5)
    other.load_state_dict(inhibited.state_dict())
    x = torch.rand(4, 8)
    torch.testing.assert_close(other(x), inhibited(x))
    assert "16 inputs + 2 interneurons" in repr(inhibited.net[4])


def test_make_optimizer_warns_when_a_rule_without_homeostasis_gets_interneurons():
    import copy
    import warnings

    inhibited = bp.BioMLP(8, (16, 16), 3)
    for rule in ("adam", "sgd", "eg", "enforced"):
        with pytest.warns(UserWarning, match=f"interneurons_for\\('{rule}'\\)"):
            bp.make_optimizer(rule, inhibited.parameters())
    with pytest.warns(UserWarning, match="interneurons"):  # a deep copy keeps the mark
        bp.make_optimizer("adam", [{"params": list(copy.deepcopy(inhibited).parameters())}])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bp.make_optimizer("bio", inhibited.parameters())
        bp.make_optimizer("adam", bp.BioMLP(8, (16, 16), 3, interneurons=0).parameters())
        with bp.baselines.interneurons_on_purpose():  # code that means it
            bp.make_optimizer("adam", inhibited.parameters())
