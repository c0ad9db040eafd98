"""Few-shot wrappers: BioMAML, episodes, Omniglot from a local root, prototypes, the benchmark."""

import json
import random

import pytest
import torch
from PIL import Image
from torch import nn

pytest.importorskip("learn2learn")

import learn2learn as l2l  # noqa: E402

from bioplastic import dalify, make_optimizer  # noqa: E402
from bioplastic.data.episodes import digits_fewshot_splits  # noqa: E402
from bioplastic.experiments.fewshot import (  # noqa: E402
    FewShotData,
    format_markdown,
    run_fewshot_benchmark,
)
from bioplastic.probes import dale_violations  # noqa: E402
from strategies.fewshot import (  # noqa: E402
    BioMAML,
    ProtoEvaluator,
    episode_classes,
    episodes_digest,
    finetune_readout,
    index_episodes,
    load_omniglot,
    make_taskset,
    omniglot_class_splits,
    omniglot_classes,
    open_full_omniglot,
    seeded_random,
)


# ------------------------------------------------------------------------------ BioMAML
def _tiny(dtype=torch.float64, connectivity=1.0, seed=0):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).to(dtype)
    return dalify(net, connectivity=connectivity, seed=seed)


def _task(dtype=torch.float64, seed=1):
    g = torch.Generator().manual_seed(seed)
    xs, xq = (
        torch.randn(6, 3, generator=g, dtype=dtype),
        torch.randn(6, 3, generator=g, dtype=dtype),
    )
    ys, yq = torch.randint(0, 2, (6,), generator=g), torch.randint(0, 2, (6,), generator=g)
    return xs, ys, xq, yq


def _meta_loss(meta, task, steps=2):
    xs, ys, xq, yq = task
    learner = meta.clone()
    for _ in range(steps):
        learner.adapt(nn.functional.cross_entropy(learner(xs), ys))
    return nn.functional.cross_entropy(learner(xq), yq)


def test_second_order_gradient_matches_finite_differences():
    net = _tiny()
    meta = BioMAML(net, lr=0.5, other_lr=0.3, max_step=None)  # no clip: smooth in theta
    task = _task()
    params = list(net.parameters())
    grads = torch.autograd.grad(_meta_loss(meta, task), params)
    eps = 1e-6
    for p, g in zip(params, grads, strict=True):
        assert float(g.abs().sum()) > 0
        numeric = torch.zeros_like(p)
        for i in range(p.numel()):
            values = []
            for delta in (eps, -2 * eps, eps):
                values.append(float(_meta_loss(meta, task).detach()))
                with torch.no_grad():
                    p.view(-1)[i] += delta
            numeric.view(-1)[i] = (values[1] - values[2]) / (2 * eps)
        torch.testing.assert_close(g, numeric, rtol=1e-5, atol=1e-8)
    # the second-order term is really there: first-order MAML gives another gradient
    fo = torch.autograd.grad(_meta_loss(BioMAML(net, 0.5, True, other_lr=0.3), task), params)
    assert not torch.allclose(fo[0], grads[0])


def test_signs_and_absent_synapses_survive_adaptation_and_outer_bio_step():
    net = _tiny(torch.float32, connectivity=0.6)
    weights = [p for p in net.parameters() if p.dim() >= 2]
    signs = [torch.sign(w).clone() for w in weights]
    meta = BioMAML(net, lr=20.0, max_step=1.0)  # large steps: flips would show
    xs, ys, xq, yq = _task(torch.float32)
    learner = meta.clone()
    for _ in range(5):
        learner.adapt(nn.functional.cross_entropy(learner(xs), ys))
    adapted = [p for p in learner.parameters() if p.dim() >= 2]
    for s, w in zip(signs, adapted, strict=True):
        assert torch.equal(torch.sign(w), s)
    outer = make_optimizer("bio", meta.parameters(), seed=0)
    nn.functional.cross_entropy(learner(xq), yq).backward()
    # the pitfall: second-order MAML sends meta-gradients to absent synapses ...
    assert any(float(w.grad[w == 0].abs().sum()) > 0 for w in weights)
    outer.step()
    # ... and the multiplicative outer step ignores them by construction
    for s, w in zip(signs, weights, strict=True):
        assert torch.all((torch.sign(w) == s) | (w == 0))
        assert torch.all(w[s == 0] == 0)
    assert sum(dale_violations(m) for m in net if isinstance(m, nn.Linear)) == 0


def test_adam_as_outer_optimizer_breaks_dale():
    """Why the docs say to use BioRule outside: an additive step revives and flips synapses."""
    net = _tiny(torch.float32, connectivity=0.6)
    w = net[0].weight
    absent = w == 0
    meta = BioMAML(net, lr=1.0)
    outer = torch.optim.Adam(meta.parameters(), lr=0.5)
    xs, ys, xq, yq = _task(torch.float32)
    learner = meta.clone()
    learner.adapt(nn.functional.cross_entropy(learner(xs), ys))
    nn.functional.cross_entropy(learner(xq), yq).backward()
    outer.step()
    assert bool((w[absent] != 0).any())


def test_biomaml_validates_and_reports_unused_parameters():
    with pytest.raises(ValueError, match="lr"):
        BioMAML(_tiny(), lr=0.0)
    with pytest.raises(ValueError, match="max_step"):
        BioMAML(_tiny(), lr=1.0, max_step=-1.0)
    net = nn.ModuleDict({"used": _tiny(torch.float32), "unused": nn.Linear(2, 2)})
    net.forward = lambda x: net["used"](x)
    learner = BioMAML(net, lr=1.0).clone()
    xs, ys, _, _ = _task(torch.float32)
    with pytest.raises(ValueError, match="allow_unused"):
        learner.adapt(nn.functional.cross_entropy(learner(xs), ys))
    learner = BioMAML(net, lr=1.0, allow_unused=True).clone()
    learner.adapt(nn.functional.cross_entropy(learner(xs), ys))


# ------------------------------------------------------------------------------ episodes
@pytest.fixture(scope="module")
def digits():
    return digits_fewshot_splits()


def test_taskset_episodes_never_mix_meta_train_and_meta_test(digits):
    train, test = digits
    x = torch.cat([train.x, test.x])
    y = torch.cat([train.y, test.y])
    taskset = make_taskset(x, y, ways=5, shots=1, queries=3, classes=test.classes)
    positions = make_taskset(torch.arange(len(y)), y, ways=3, shots=2, queries=2,
                             classes=train.classes)  # fmt: skip
    with seeded_random(0):
        for _ in range(30):
            data, labels = taskset.sample()
            assert data.shape == (20, 64) and sorted(set(labels.tolist())) == [0, 1, 2, 3, 4]
            idx, _ = positions.sample()
            assert set(y[idx].tolist()) <= set(train.classes)
    for episode in index_episodes(test.y, 5, 1, 5, 30, seed=0):
        assert episode_classes(episode, test.y) <= set(test.classes)
    with pytest.raises(ValueError, match="share classes"):
        FewShotData("x", train.x, train.y, test.x, test.y, ["0", "1"], ["1", "2"])


@pytest.mark.parametrize("sampler", ["bioplastic", "learn2learn"])
def test_episode_sampling_is_deterministic_and_leaves_global_random_alone(digits, sampler):
    _, test = digits
    random.seed(123)
    expected_next = random.random()
    random.seed(123)
    a = index_episodes(test.y, 5, 1, 5, 20, seed=7, sampler=sampler)
    assert random.random() == expected_next  # the global stream was restored
    b = index_episodes(test.y, 5, 1, 5, 20, seed=7, sampler=sampler)
    c = index_episodes(test.y, 5, 1, 5, 20, seed=8, sampler=sampler)
    assert episodes_digest(a) == episodes_digest(b) != episodes_digest(c)
    for s, sy, q, qy in a:
        assert set(s.tolist()).isdisjoint(q.tolist())  # support and query never share an example
        assert len(s) == 5 and len(q) == 25 and sy.tolist() == [0, 1, 2, 3, 4]
        assert qy.tolist() == sorted(list(range(5)) * 5)


def test_seeded_taskset_sampling_repeats(digits):
    _, test = digits
    taskset = make_taskset(test.x, test.y, ways=3, shots=1, queries=2)
    draws = []
    for _ in range(2):
        with seeded_random(5):
            draws.append([taskset.sample()[0] for _ in range(5)])
    assert all(torch.equal(a, b) for a, b in zip(*draws, strict=True))


# ------------------------------------------------------------------------------ Omniglot
def _fake_omniglot(root, sets=None):
    sets = sets or {
        "images_background": {"Alpha": 3, "Beta": 3},
        "images_evaluation": {"Gamma": 3, "Delta": 2},
    }
    for folder, alphabets in sets.items():
        for alphabet, n_chars in alphabets.items():
            for c in range(n_chars):
                char_dir = root / "omniglot-py" / folder / alphabet / f"character{c + 1:02d}"
                char_dir.mkdir(parents=True)
                for i in range(4):
                    pixels = torch.full((12, 12), 255, dtype=torch.uint8)
                    pixels[2 : 4 + c, 3 + i] = 0  # a dark stroke on white, as in Omniglot
                    Image.fromarray(pixels.numpy(), mode="L").save(char_dir / f"{c}_{i:02d}.png")
    return root


def test_fake_omniglot_root_loads_through_learn2learn_with_our_split(tmp_path):
    root = _fake_omniglot(tmp_path)
    full = open_full_omniglot(root)
    assert isinstance(full, l2l.vision.datasets.FullOmniglot)
    assert len(full) == 11 * 4
    classes = omniglot_classes(full)
    assert len(classes) == 11 and sum(c.background for c in classes) == 6
    splits = omniglot_class_splits(classes)
    assert [len(splits[s]) for s in ("train", "val", "test")] == [7, 1, 3]  # 1100/100/423 of 11
    assert set().union(*map(set, splits.values())) == set(range(11))
    assert sum(len(s) for s in splits.values()) == 11  # disjoint
    by_alphabet = omniglot_class_splits(classes, split_by="alphabet")
    assert {classes[i].alphabet for i in by_alphabet["train"]} == {"Alpha", "Beta"}
    assert {classes[i].alphabet for i in by_alphabet["test"]} == {"Gamma", "Delta"}

    train = load_omniglot(root, "train")
    test = load_omniglot(root, "test", image_size=20)
    x, y = train.tensors()
    assert x.shape == (7 * 4, 1, 28, 28) and y.tolist() == sorted(y.tolist())
    assert set(y.tolist()) == set(range(7))
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert float(x[:, :, 0, 0].max()) < 0.1  # white paper becomes 0, strokes bright
    assert test[0][0].shape == (1, 20, 20)
    names = {c.name for c in train.classes}
    assert names.isdisjoint(c.name for c in test.classes)
    # learn2learn interoperation: a TaskDataset over a split, labels without loading images
    taskset = make_taskset(train, ways=3, shots=1, queries=1)
    with seeded_random(0):
        data, labels = taskset.sample()
    assert data.shape == (6, 1, 28, 28) and sorted(set(labels.tolist())) == [0, 1, 2]


def test_omniglot_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="omniglot-py"):
        open_full_omniglot(tmp_path)
    root = _fake_omniglot(tmp_path)
    with pytest.raises(ValueError, match="no 'val'"):
        load_omniglot(root, "val", split_by="alphabet")
    with pytest.raises(ValueError, match="split"):
        load_omniglot(root, "meta-train")


# ------------------------------------------------------------------------------ evaluation
def test_proto_evaluator_is_perfect_on_separable_toy():
    centres = torch.eye(5) * 10
    g = torch.Generator().manual_seed(0)

    def episode(shots):
        sy = torch.arange(5).repeat_interleave(shots)
        qy = torch.arange(5).repeat_interleave(4)
        return (centres[sy] + 0.1 * torch.randn(len(sy), 5, generator=g), sy,
                centres[qy] + 0.1 * torch.randn(len(qy), 5, generator=g), qy)  # fmt: skip

    evaluator = ProtoEvaluator(nn.Identity())
    result = evaluator.evaluate([episode(1) for _ in range(10)])
    assert result["mean"] == 1.0 and result["ci95"] == 0.0 and result["n"] == 10
    s, sy, q, qy = episode(2)
    task = (torch.cat([s, q]), torch.cat([sy, qy]))
    assert evaluator.evaluate([task], shots=2)["mean"] == 1.0
    # a backbone that throws the information away is at chance or below
    blind = ProtoEvaluator(nn.Linear(5, 1, bias=False).requires_grad_(False))
    nn.init.zeros_(blind.backbone.weight)
    assert blind.evaluate([episode(1) for _ in range(10)])["mean"] <= 0.3


@pytest.mark.parametrize("rule", ["bio", "eg", "sgd", "adam"])
def test_finetune_readout_learns_a_separable_toy(rule):
    centres = torch.eye(3, 8) * 3 + 0.5  # each class drives its own feature
    sy, qy = torch.arange(3).repeat_interleave(3), torch.arange(3).repeat_interleave(5)
    support = (centres[sy] + 0.1 * torch.randn(9, 8), sy)
    query = (centres[qy] + 0.1 * torch.randn(15, 8), qy)
    acc = finetune_readout(nn.ReLU(), support, query, rule=rule, steps=50)
    assert acc == 1.0
    assert finetune_readout(nn.ReLU(), support, query, rule=rule, steps=0) < 1.0


def test_benchmark_on_digits_tiny(digits):
    calls = []
    results = run_fewshot_benchmark(
        "digits", ways=5, shots=(1, 2), episodes=6, rules=("bio", "adam", "eg"),
        methods=("proto", "finetune", "maml"), seeds=1, pretrain_epochs=1,
        maml_iterations=2, maml_inner_steps=1, finetune_steps=3,
        progress=lambda done, total, msg: calls.append((done, total)),
    )  # fmt: skip
    json.dumps(results, allow_nan=False)
    assert set(results) >= {"config", "data", "episodes", "backbones", "maml", "accuracy",
                            "paired", "timing"}  # fmt: skip
    assert calls[-1][0] == calls[-1][1] == len(calls)
    rows = results["accuracy"]
    assert len(rows) == 3 * 2 * 3
    assert {r["method"] for r in rows} == {"proto", "finetune", "maml"}
    for k in (1, 2):
        digests = {r["episode_digests"][0] for r in rows if r["shots"] == k}
        assert digests == {results["episodes"]["0"][str(k)]}  # same episodes for every rule
    assert results["episodes"]["0"]["1"] != results["episodes"]["0"]["2"]
    for r in rows:
        assert 0.0 <= r["mean"] <= 1.0 and r["n"] == 6
    assert {(r["method"], r["shots"], r["baseline"]) for r in results["paired"]} == {
        (m, k, b) for m in ("proto", "finetune", "maml") for k in (1, 2) for b in ("adam", "eg")
    }
    bio = results["backbones"]["bio"]["runs"][0]
    assert bio["dale_violations"] == 0 and bio["sign_flips"] == 0
    assert 0.0 <= bio["clean_accuracy"] <= 1.0
    assert results["maml"]["bio"]["runs"][0]["dale_violations"] == 0
    text = format_markdown(results)
    assert "| proto | 1 | bio |" in text and "bio minus baseline" in text
    again = run_fewshot_benchmark("digits", shots=(1,), episodes=6, rules=("eg",),
                                  methods=("proto",), seeds=1, pretrain_epochs=1)  # fmt: skip
    assert again["episodes"]["0"]["1"] == results["episodes"]["0"]["1"]


def test_benchmark_validates_arguments():
    with pytest.raises(ValueError, match="dataset"):
        run_fewshot_benchmark("cifar")
    with pytest.raises(ValueError, match="rules"):
        run_fewshot_benchmark(rules=("rmsprop",))
    with pytest.raises(ValueError, match="methods"):
        run_fewshot_benchmark(methods=())
    with pytest.raises(ValueError, match="root"):
        run_fewshot_benchmark("omniglot", root=None)


def test_fewshot_cli_choices_match_the_library():
    from bioplastic.cli import fewshot as cli_fewshot
    from bioplastic.experiments import fewshot as benchmark

    assert cli_fewshot.DATASETS == benchmark.DATASETS
    assert cli_fewshot.RULES == benchmark.RULES
    assert cli_fewshot.METHODS == benchmark.METHODS


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["--rules", "bio,lion"], "'lion'"),
        (["--shots", "1,x"], "integers"),
        (["--episodes", "0"], "positive integer"),
        (["--dataset", "cifar"], "invalid choice"),
        (["--bio", "[1]"], "JSON object"),
        (["--dataset", "omniglot"], "--root"),
    ],
)
def test_fewshot_cli_bad_input(tmp_path, capsys, argv, needle):
    from bioplastic.cli import main

    assert main(["fewshot", *argv, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_fewshot_cli_tiny_run(tmp_path):
    from bioplastic.cli import main

    out = tmp_path / "o"
    argv = ["fewshot", "--dataset", "digits", "--shots", "1", "--episodes", "20", "--rules"]
    argv += ["bio,adam", "--methods", "proto", "--seeds", "1", "--epochs", "1", "--out", str(out)]
    assert main(argv) == 0
    results = json.loads((out / "fewshot_digits.json").read_text())
    assert {row["rule"] for row in results["accuracy"]} == {"bio", "adam"}
    assert (out / "fewshot_digits.md").exists()


def test_an_inhibited_readout_is_fine_tuned_on_the_features_and_its_interneurons():
    import bioplastic as bp
    from bioplastic.experiments.fewshot.evaluate import readout_inputs

    readout = bp.InhibitedLinear(8, 5, interneurons=2)
    feats = torch.rand(4, 8)
    inputs, sign = readout_inputs(readout, feats)
    assert inputs.shape == (4, 10) and sign.tolist() == [1.0] * 8 + [-1.0] * 2
    with torch.no_grad():  # the principal on these inputs is the readout itself
        torch.testing.assert_close(readout.principal(inputs), readout(feats))
    plain = bp.DaleLinear(8, 5)
    assert readout_inputs(plain, feats)[0] is feats
    assert torch.equal(readout_inputs(plain, feats)[1], plain.dale_sign)


def test_maml_inner_settings_reach_the_bio_and_eg_learners_only(monkeypatch):
    import bioplastic.experiments.fewshot.pretrain as pretrain

    seen = []
    real = pretrain.make_maml

    def spy(model, rule, *args, **kwargs):
        learner, outer = real(model, rule, *args, **kwargs)
        seen.append((rule, getattr(learner, "lr", None), getattr(learner, "normalize", None)))
        return learner, outer

    monkeypatch.setattr(pretrain, "make_maml", spy)
    results = run_fewshot_benchmark(
        "digits", ways=5, shots=(1,), episodes=4, rules=("bio", "adam", "eg"), methods=("maml",),
        seeds=1, maml_iterations=1, maml_inner={"inner_lr": 0.7, "normalize": True},
    )  # fmt: skip
    assert results["config"]["maml_inner"] == {"inner_lr": 0.7, "normalize": True}
    assert ("bio", 0.7, True) in seen and ("eg", 0.7, True) in seen
    assert ("adam", 0.4, None) in seen  # l2l's MAML keeps its own rate


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["--bio-inner", "normalize=true"], "normalize must be True, False or 'model'"),
        (["--bio-inner", "inner_lr=0"], "inner_lr must be"),
        (["--bio-inner", "nosie=1"], "unknown inner options ['nosie']"),
        (["--tune", "--bio-inner", "inner_lr=1"], "--tune pre-trains backbones only"),
    ],
)
def test_the_benchmarks_bio_inner_settings_are_checked_before_any_work(argv, needle, capsys):
    from conftest import load_benchmark

    with pytest.raises(SystemExit) as info:
        load_benchmark("fewshot").main(["--dataset", "digits", *argv])
    assert info.value.code == 2
    assert needle in capsys.readouterr().err
