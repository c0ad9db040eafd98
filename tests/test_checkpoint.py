"""Checkpoint and resume between experiences: same final metrics as an uninterrupted run."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from torch import nn

pytest.importorskip("avalanche")

from avalanche.core import SupervisedPlugin  # noqa: E402
from avalanche.evaluation.metrics import accuracy_metrics  # noqa: E402
from avalanche.training import Naive, Replay  # noqa: E402
from avalanche.training.plugins import EvaluationPlugin  # noqa: E402

from bioplastic.data import split_digits  # noqa: E402
from strategies.avalanche import (  # noqa: E402
    BioRulePlugin,
    avalanche_benchmark,
    load_checkpoint,
    make_evaluator,
    make_model,
    make_strategy,
    save_checkpoint,
)
from strategies.avalanche import checkpoint as checkpoint_module  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:No loggers specified")

N_EXPERIENCES = 3


@pytest.fixture(scope="module")
def stream():
    return split_digits(
        n_experiences=5, scenario="task", max_train_per_experience=40, max_test_per_experience=20
    )


@pytest.fixture(scope="module")
def bm(stream):
    return avalanche_benchmark(stream)


def _factory(name, stream, json_path):
    def build():
        torch.manual_seed(3)
        model = make_model(stream, hidden=(16,))
        evaluator = make_evaluator(json_path=json_path, figures=False, probe_size=16)
        if name == "replay+plugin":
            return Replay(
                model=model,
                optimizer=torch.optim.Adam(model.parameters()),
                criterion=nn.CrossEntropyLoss(),
                mem_size=30,
                train_mb_size=16,
                plugins=[BioRulePlugin(replace_optimizer=True)],
                evaluator=evaluator,
            )
        epochs = 3 if name == "packnet" else 1
        return make_strategy(
            name, model, train_epochs=epochs, train_mb_size=16, evaluator=evaluator, device="cpu"
        )

    return build


def _run(name, stream, bm, tmp_path, resume_at=None):
    json_path = tmp_path / f"{name}-{resume_at}.json"
    build = _factory(name, stream, json_path)
    strategy = build()
    results = None
    for k in range(N_EXPERIENCES):
        if k == resume_at:
            path = tmp_path / f"{name}.ckpt"
            save_checkpoint(strategy, path)
            del strategy  # nothing survives but the file
            strategy, start = load_checkpoint(build, path)
            assert start == k
        strategy.train(bm.train_stream[k])
        results = strategy.eval(bm.test_stream[:N_EXPERIENCES])
    return results, json.loads(json_path.read_text()), strategy


@pytest.mark.parametrize("name", ["bio", "naive", "ewc", "packnet", "replay+plugin"])
def test_resumed_run_ends_like_an_uninterrupted_one(name, stream, bm, tmp_path):
    straight, straight_json, _ = _run(name, stream, bm, tmp_path)
    resumed, resumed_json, strategy = _run(name, stream, bm, tmp_path, resume_at=2)
    scalars = {k: v for k, v in straight.items() if isinstance(v, (int, float))}
    assert any(k.startswith("Top1_Acc_Stream") for k in scalars)
    assert any(k.startswith("StreamForgetting") for k in scalars)
    assert {k: resumed[k] for k in scalars} == scalars
    # the JSON results of the resumed run cover every experience, with the same numbers
    assert resumed_json == straight_json
    if name == "packnet":  # PackNet's gradient hooks are still on the resumed model
        assert strategy.model.wrappee[1].wrappee.weight._backward_hooks


def test_pickling_drops_packnet_hooks_which_is_why_we_store_state(stream):
    from avalanche.models.packnet import PackNetModel

    model = PackNetModel(nn.Sequential(nn.Linear(4, 3)))
    assert model.wrappee[0].wrappee.weight._backward_hooks
    copy = pickle.loads(pickle.dumps(model))
    assert not copy.wrappee[0].wrappee.weight._backward_hooks


def test_bad_files_give_one_line_errors(tmp_path, stream, bm):
    build = _factory("naive", stream, tmp_path / "r.json")
    strategy = build()
    strategy.train(bm.train_stream[0])
    path = tmp_path / "good.ckpt"
    save_checkpoint(strategy, path)

    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"weights": torch.ones(2)}, foreign)
    text = tmp_path / "notes.ckpt"
    text.write_text("hello")
    for bad in (truncated, foreign, text):
        with pytest.raises(ValueError) as info:
            load_checkpoint(build, bad)
        message = str(info.value)
        assert str(bad) in message and "\n" not in message
    with pytest.raises(FileNotFoundError, match="missing.ckpt"):
        load_checkpoint(build, tmp_path / "missing.ckpt")
    with pytest.raises(RuntimeError, match="Naive.*EWC|EWC.*Naive"):
        load_checkpoint(_factory("ewc", stream, tmp_path / "e.json"), path)


def test_save_is_atomic(tmp_path, stream, bm, monkeypatch):
    strategy = _factory("bio", stream, tmp_path / "r.json")()
    strategy.train(bm.train_stream[0])
    path = tmp_path / "run.ckpt"
    save_checkpoint(strategy, path)
    before = path.read_bytes()

    class Boom(SupervisedPlugin):
        def __getstate__(self):
            raise RuntimeError("cannot serialise")

    strategy.plugins.insert(0, Boom())
    with pytest.raises(RuntimeError, match="cannot serialise"):
        save_checkpoint(strategy, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".tmp") == []

    def broken_replace(src, dst):
        raise OSError("disk full")

    strategy.plugins.pop(0)
    monkeypatch.setattr(checkpoint_module.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(strategy, path)
    assert path.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_load_into_a_built_strategy_and_type_errors(tmp_path, stream, bm):
    torch.manual_seed(0)
    model = make_model(stream, hidden=(8,))
    strategy = Naive(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        criterion=nn.CrossEntropyLoss(),
        evaluator=EvaluationPlugin(accuracy_metrics(stream=True), loggers=[]),
    )
    strategy.train(bm.train_stream[0])
    save_checkpoint(strategy, tmp_path / "n.ckpt")
    model2 = make_model(stream, hidden=(8,))
    fresh = Naive(
        model=model2,
        optimizer=torch.optim.SGD(model2.parameters(), lr=0.1),
        criterion=nn.CrossEntropyLoss(),
        evaluator=EvaluationPlugin(accuracy_metrics(stream=True), loggers=[]),
    )
    loaded, start = load_checkpoint(fresh, tmp_path / "n.ckpt")
    assert loaded is fresh and start == 1
    for a, b in zip(model.state_dict().values(), model2.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(TypeError, match="Avalanche strategy"):
        save_checkpoint(model, tmp_path / "x.ckpt")
