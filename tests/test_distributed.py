"""BioRule under PyTorch DistributedDataParallel: ranks stay bit-identical, and match one process.

What we test. ``bioplastic train`` (:mod:`bioplastic.distributed`) launched by ``torchrun``
(``python -m torch.distributed.run``) with 2 processes on the gloo backend, against the same
command as a single process with the same global batch: a Dale MLP (hidden 32) trained for 3
epochs on the bundled digits with the bio rule's defaults (synaptic noise, homeostasis,
elimination) plus random growth and consolidation after every epoch, so that every random and
structural part of the rule runs. Both ranks write their final model and optimizer state; the
test asserts that every tensor of it (weights, Dale signs, BioRule's unit signs, plasticity,
momentum, budgets, Adam moments of the biases, generator states) is bit-identical across the
ranks, that the masks (present synapses), signs and plasticity equal those of the single
process (on the CPU exactly; on CUDA at most 0.1% of synapses, which may sit at a threshold
and fall either way), and that the weights are equal to within float tolerance (the gradient of a
batch summed over two shards rounds differently). The ranks also compare a checksum of their
whole state after every epoch themselves. Set ``BIOPLASTIC_TEST_DEVICE=cuda`` to run both
runs on the GPU (2 ranks share it, gloo reduces CUDA tensors).

What Avalanche 0.6.0 does for distributed training, from reading ``avalanche/distributed/``
and its callers (not tested here): ``DistributedHelper.init_distributed`` joins the process
group when ``LOCAL_RANK`` is set and seeds every generator; its ``wrap_model`` wraps a model in
``DistributedDataParallel``, but the training templates never call it (the user must wrap the
model, and Avalanche's dynamic modules then see the wrapper); its data loaders switch to a
``DistributedSampler`` (each rank trains and evaluates on its part of every experience);
loggers and the ``EvaluationPlugin`` only write on rank 0, and metrics are not reduced across
ranks (rank 0 reports the accuracy of its own part). Plugins without
``supports_distributed=True``, which include our ``BioRulePlugin`` and probe metrics and most of
Avalanche's own (EWC, SI, LwF...), only trigger a warning. Nothing in Avalanche synchronises an
optimizer's state: ``BioRule`` stays identical across ranks because DDP gives every rank the
same gradient and every rank seeds its generator identically. We therefore do not claim that
the ``BioPlastic`` strategy runs distributed under Avalanche; the Avalanche strategies are
tested single-process, and the distributed claim is about the loop tested here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest
import torch
from torch import nn

import bioplastic as bp
from bioplastic import distributed as D

DEVICE = os.environ.get("BIOPLASTIC_TEST_DEVICE", "cpu")
ARGS = [
    "train", "--dataset", "digits", "--hidden", "32", "--epochs", "3", "--batch-size", "32",
    "--rule", "bio", "--rule-option", "grow_every=10", "--rule-option", "grow_fraction=0.02",
    "--rule-option", "grow_mode=random", "--consolidate", "0.2", "--device", DEVICE,
    "--save-rank-states",
]  # fmt: skip
TIMEOUT_S = 150


def _launch(cmd: list[str], out: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [*cmd, *ARGS, "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """The same training as one process and as two torchrun ranks (launched side by side)."""
    base = tmp_path_factory.mktemp("ddp")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc_per_node", "2", "-m", "bioplastic.cli"]  # fmt: skip
    procs = {
        "single": _launch([sys.executable, "-m", "bioplastic.cli"], base / "single"),
        "ddp": _launch(torchrun, base / "ddp"),
    }
    for name, proc in procs.items():
        try:
            output, _ = proc.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            for p in procs.values():
                p.kill()
            pytest.fail(f"{name} run took longer than {TIMEOUT_S} s")
        assert proc.returncode == 0, f"{name} run failed:\n{output[-3000:]}"
    return {name: base / name for name in procs}


def _tensors(value, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every tensor in a nested state dict, by path (generator states keyed by device type)."""
    found = {}
    if isinstance(value, torch.Tensor):
        found[prefix] = value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            key = torch.device(key).type if prefix.endswith("rng") else key
            found.update(_tensors(item, f"{prefix}/{key}"))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found.update(_tensors(item, f"{prefix}/{i}"))
    return found


def _load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def test_ranks_hold_bit_identical_weights_and_rule_state(runs):
    rank0, rank1 = _load(runs["ddp"] / "rank-0.pt"), _load(runs["ddp"] / "rank-1.pt")
    t0, t1 = _tensors(rank0), _tensors(rank1)
    assert t0.keys() == t1.keys()
    for key in t0:
        assert torch.equal(t0[key], t1[key]), f"ranks differ in {key}"
    # the parts of the rule that draw random numbers or change structure all ran
    states = rank0["optimizer"]["state"].values()
    synapses = [s for s in states if "unit_sign" in s]
    assert synapses and all("plasticity" in s for s in synapses)
    assert any((s["plasticity"] < 1).any() for s in synapses)
    assert sum(s["n_grown"] for s in synapses) > 0
    # the noise generator's state (on the training device) is compared too
    assert f"/optimizer/bio/rng/{torch.device(DEVICE).type}" in t0
    result = json.loads((runs["ddp"] / "train.json").read_text())
    assert result["world_size"] == 2 and result["backend"] in ("gloo", "nccl")
    assert result["device"].startswith(DEVICE)
    assert len(result["rank_checksums"]) == 2 and len(set(result["rank_checksums"])) == 1
    assert result["dale_violations"] == 0


def _disagreement(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a != b).float().mean()) if a.numel() else 0.0


# A synapse exactly at the elimination threshold or at the consolidation cut-off may fall
# either way under float rounding; on the CPU none does in this run.
MAX_DISAGREEMENT = 0.0 if DEVICE == "cpu" else 1e-3


def test_two_ranks_match_one_process_with_the_same_global_batch(runs):
    one, two = _load(runs["single"] / "rank-0.pt"), _load(runs["ddp"] / "rank-0.pt")
    for name, w1 in one["model"].items():
        w2 = two["model"][name]
        assert _disagreement(w1 != 0, w2 != 0) <= MAX_DISAGREEMENT, f"{name}: synapses differ"
        both = (w1 != 0) & (w2 != 0)
        assert torch.equal(torch.sign(w1[both]), torch.sign(w2[both])), f"{name}: signs differ"
        torch.testing.assert_close(w2[both], w1[both], rtol=1e-3, atol=1e-5, msg=name)
    s1, s2 = one["optimizer"]["state"], two["optimizer"]["state"]
    for idx, state in s1.items():
        if "unit_sign" in state:
            assert torch.equal(state["unit_sign"], s2[idx]["unit_sign"])
        if "plasticity" in state:
            assert _disagreement(state["plasticity"], s2[idx]["plasticity"]) <= MAX_DISAGREEMENT
        if "momentum_buffer" in state:
            torch.testing.assert_close(
                s2[idx]["momentum_buffer"], state["momentum_buffer"], rtol=1e-2, atol=1e-3
            )
    r1 = json.loads((runs["single"] / "train.json").read_text())
    r2 = json.loads((runs["ddp"] / "train.json").read_text())
    assert abs(r1["test_accuracy"] - r2["test_accuracy"]) <= 0.01
    for a, b in zip(r1["history"], r2["history"], strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)
    assert abs(r1["connectivity"] - r2["connectivity"]) <= MAX_DISAGREEMENT


# ------------------------------------------------------------------------ in-process pieces
@pytest.mark.parametrize("n,world", [(32, 2), (9, 2), (5, 3), (2, 4), (0, 2)])
def test_shards_partition_the_global_batch(n, world):
    batch = torch.arange(n)
    parts = [D.shard(batch, r, world) for r in range(world)]
    assert torch.equal(torch.cat(parts), batch)
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1


def test_weighted_shard_losses_average_to_the_global_gradient():
    """DDP averages the ranks' gradients: with the loss weighting of ``train`` that average is
    the gradient of the mean loss over the whole (unevenly split) batch."""
    torch.manual_seed(0)
    model = bp.BioMLP(8, (6,), 3, seed=0)
    x, y = torch.randn(9, 8), torch.randint(0, 3, (9,))
    ce = nn.functional.cross_entropy
    full = torch.autograd.grad(ce(model(x), y), list(model.parameters()))
    world = 2
    averaged = [torch.zeros_like(g) for g in full]
    for rank in range(world):
        idx = D.shard(torch.arange(9), rank, world)
        loss = ce(model(x[idx]), y[idx], reduction="sum") * (world / 9)
        for acc, g in zip(
            averaged, torch.autograd.grad(loss, list(model.parameters())), strict=True
        ):
            acc.add_(g / world)
    for a, b in zip(averaged, full, strict=True):
        torch.testing.assert_close(a, b)


def test_checksum_sees_every_bit_of_weights_and_rule_state():
    def build():
        torch.manual_seed(1)  # BioRule(seed=None) draws its seed from here: we seed
        model = bp.BioMLP(8, (6,), 3, seed=0)
        return model, bp.BioRule(model.parameters())

    (m1, o1), (m2, o2) = build(), build()
    assert D.state_checksum(m1, o1) == D.state_checksum(m2, o2)
    for m, o in ((m1, o1), (m2, o2)):
        nn.functional.cross_entropy(
            m(torch.ones(4, 8)), torch.zeros(4, dtype=torch.long)
        ).backward()
        o.step()
    assert D.state_checksum(m1, o1) == D.state_checksum(m2, o2)
    o2.state[next(iter(o2.state))]["momentum_buffer"].view(-1)[0] += 1e-7
    assert D.state_checksum(m1, o1) != D.state_checksum(m2, o2)
    torch.manual_seed(2)
    assert D.state_checksum(m1, bp.BioRule(m1.parameters())) != D.state_checksum(m1, o1)


def test_diverged_ranks_stop_with_an_error(monkeypatch):
    monkeypatch.setattr(D, "gather", lambda info, value: [value, "f" * 64])
    with pytest.raises(RuntimeError, match="ranks diverged after epoch 1"):
        D.check_ranks_agree(D.DistInfo(), "0" * 64, "after epoch 1")


@pytest.mark.parametrize(
    "device,env,match",
    [
        ("tpu", {}, "device must be one of"),
        ("auto", {"WORLD_SIZE": "2", "RANK": "5"}, "RANK=5"),
        ("auto", {"WORLD_SIZE": "two"}, "WORLD_SIZE"),
    ],
)
def test_init_distributed_validates_its_input(monkeypatch, device, env, match):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValueError, match=match):
        D.init_distributed(device)


def test_single_process_needs_no_process_group(monkeypatch):
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    info = D.init_distributed("cpu")
    assert (info.rank, info.world_size, info.backend, info.is_main) == (0, 1, None, True)
    with pytest.raises(ValueError, match="backend must be one of"):
        D.init_distributed("cpu", backend="mpi")
