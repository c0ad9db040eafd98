"""Faults: killed runs resume exactly, checkpoints are atomic and safe to load, bad input is
reported in one line.

* SIGKILL after the first checkpoint, then ``--resume``: the same final weights, optimizer
  state and metrics as an uninterrupted run (at most the epoch in progress is redone).
* SIGTERM: the step in progress finishes, a checkpoint is written at that position, the
  command exits with 143 and one line; ``--resume`` again ends bit-identical.
* A crash while writing a checkpoint (``torch.save`` failing half-way) leaves the previous
  checkpoint intact, no temporary file behind, and the run resumable.
* Truncated, empty, text, pickle, code-running and foreign checkpoint files give a one-line
  error naming the file (exit status 2); so does a checkpoint of another configuration.
* ``BioRule`` state and ``bioplastic train`` checkpoints load with
  ``torch.load(weights_only=True)``, and a rule restored that way continues bit-for-bit.
* Every ``bioplastic train`` flag is validated with a message naming it.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

import bioplastic as bp
from bioplastic import distributed as D
from bioplastic.cli import main

EPOCHS = 12
ARGS = ["train", "--hidden", "64", "--epochs", str(EPOCHS), "--batch-size", "32",
        "--rule", "bio", "--rule-option", "grow_every=20", "--rule-option", "grow_fraction=0.01",
        "--consolidate", "0.1", "--device", "cpu"]  # fmt: skip


def _result(out: Path) -> dict:
    return json.loads((out / "train.json").read_text())


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """An uninterrupted run (in this process: the same code and thread count)."""
    out = tmp_path_factory.mktemp("reference")
    assert main([*ARGS, "--out", str(out)]) == 0
    result = _result(out)
    result["out"] = out
    return result


def _start(out: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "bioplastic.cli", *ARGS, "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _wait_for(path: Path, proc: subprocess.Popen, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if proc.poll() is not None:
            pytest.fail(f"the run ended before {path} existed:\n{proc.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no {path} after {timeout_s} s")
        time.sleep(0.005)


def _same_run(resumed: dict, reference: dict, exact_loss: bool = True) -> None:
    assert resumed["checksum"] == reference["checksum"]  # weights + optimizer state, bit for bit
    assert resumed["test_accuracy"] == reference["test_accuracy"]
    assert resumed["connectivity"] == reference["connectivity"]
    assert len(resumed["history"]) == len(reference["history"]) == EPOCHS
    for a, b in zip(resumed["history"], reference["history"], strict=True):
        assert a["checksum"] == b["checksum"] and a["test_accuracy"] == b["test_accuracy"]
        if exact_loss:
            assert a["train_loss"] == b["train_loss"]
        else:  # the interrupted epoch's loss is summed in another order
            assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-9)


def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path, reference):
    out = tmp_path / "killed"
    proc = _start(out)
    _wait_for(out / D.CHECKPOINT_NAME, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "train.json").exists()
    saved = D.load_checkpoint(out / D.CHECKPOINT_NAME)
    done = saved["epoch"]
    assert 1 <= done < EPOCHS and saved["batch"] == 0  # killed mid-run, after whole epochs
    assert main([*ARGS, "--out", str(out), "--resume"]) == 0
    resumed = _result(out)
    assert resumed["resumed_from"] == {"epoch": done, "batch": 0}
    _same_run(resumed, reference)


def test_sigterm_checkpoints_the_step_in_progress_and_exits_143(tmp_path, reference):
    out = tmp_path / "terminated"
    proc = _start(out)
    _wait_for(out / D.CHECKPOINT_NAME, proc)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr[-2000:]
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "SIGTERM" in lines[0] and str(out / D.CHECKPOINT_NAME) in lines[0]
    saved = D.load_checkpoint(out / D.CHECKPOINT_NAME)
    assert saved["batch"] >= 1 and saved["epoch"] < EPOCHS  # stopped inside an epoch
    assert main([*ARGS, "--out", str(out), "--resume"]) == 0
    resumed = _result(out)
    assert resumed["resumed_from"] == {"epoch": saved["epoch"], "batch": saved["batch"]}
    _same_run(resumed, reference, exact_loss=False)


def test_crash_while_writing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    D.save_checkpoint(path, {"value": torch.arange(10)})
    before = path.read_bytes()
    real_save = torch.save

    def crash_half_way(obj, f, *args, **kwargs):
        buffer = io.BytesIO()
        real_save(obj, buffer, *args, **kwargs)
        f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        f.flush()
        raise OSError("No space left on device (simulated)")

    monkeypatch.setattr(torch, "save", crash_half_way)
    with pytest.raises(OSError, match="simulated"):
        D.save_checkpoint(path, {"value": torch.arange(1000)})
    assert path.read_bytes() == before
    assert torch.equal(torch.load(path, weights_only=True)["value"], torch.arange(10))
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left


def test_training_that_crashes_while_checkpointing_resumes_exactly(tmp_path, monkeypatch):
    args = [*ARGS[:4], "3", *ARGS[5:]]  # 3 epochs
    assert args[3] == "--epochs"
    ref = tmp_path / "ref"
    assert main([*args, "--out", str(ref)]) == 0
    out = tmp_path / "crash"
    real_save, calls = torch.save, [0]

    def crash_on_second(obj, f, *a, **k):
        calls[0] += 1
        if calls[0] == 2:  # the checkpoint after epoch 2: write half, then die
            buffer = io.BytesIO()
            real_save(obj, buffer, *a, **k)
            f.write(buffer.getvalue()[:1000])
            raise OSError("simulated crash")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", crash_on_second)
    with pytest.raises(OSError, match="simulated crash"):
        main([*args, "--out", str(out)])
    monkeypatch.setattr(torch, "save", real_save)
    assert D.load_checkpoint(out / D.CHECKPOINT_NAME)["epoch"] == 1  # the latest stayed intact
    assert main([*args, "--out", str(out), "--resume"]) == 0
    assert _result(out)["checksum"] == _result(ref)["checksum"]


class _RunsCode:
    def __reduce__(self):
        return (os.getcwd, ())


def _foreign_files(tmp_path: Path, reference: dict) -> dict[str, Path]:
    good = (reference["out"] / D.CHECKPOINT_NAME).read_bytes()
    files = {
        "truncated": good[: len(good) // 2],
        "empty": b"",
        "text": b"epoch=3\nweights=...\n",
        "pickle": pickle.dumps({"epoch": 3, "model": [1.0, 2.0]}),
    }
    buffer = io.BytesIO()
    torch.save({"format": "something-else", "model": {}}, buffer)
    files["foreign torch file"] = buffer.getvalue()
    buffer = io.BytesIO()
    torch.save({"payload": _RunsCode()}, buffer)
    files["code-running pickle"] = buffer.getvalue()
    paths = {}
    for name, data in files.items():
        folder = tmp_path / name.replace(" ", "-")
        folder.mkdir()
        (folder / D.CHECKPOINT_NAME).write_bytes(data)
        paths[name] = folder
    return paths


def test_bad_checkpoints_give_a_one_line_error_naming_the_file(tmp_path, capsys, reference):
    for name, folder in _foreign_files(tmp_path, reference).items():
        assert main([*ARGS, "--out", str(folder), "--resume"]) == 2, name
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, f"{name}: {err}"
        assert str(folder / D.CHECKPOINT_NAME) in err, f"{name}: {err}"
        assert not (folder / "train.json").exists()


def test_checkpoint_of_another_configuration_is_refused(tmp_path, capsys, reference):
    out = tmp_path / "other"
    out.mkdir()
    (out / D.CHECKPOINT_NAME).write_bytes((reference["out"] / D.CHECKPOINT_NAME).read_bytes())
    args = [*ARGS[:2], "32", *ARGS[3:]]  # --hidden 32
    assert main([*args, "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "hidden" in err and str(out) in err


def test_checkpoint_loads_with_weights_only(reference):
    data = torch.load(reference["out"] / D.CHECKPOINT_NAME, weights_only=True)
    assert data["epoch"] == EPOCHS and "bio" in data["optimizer"]


def test_bio_rule_state_loads_with_weights_only_and_continues_bit_for_bit():
    torch.manual_seed(0)
    model = bp.BioMLP(8, (16,), 3, seed=0)
    opt = bp.BioRule(model.parameters(), grow_every=2, grow_fraction=0.1, track_importance=True)
    x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))

    def steps(m, o, n):
        for i in range(n):
            o.zero_grad()
            nn.functional.cross_entropy(m(x[i::4]), y[i::4]).backward()
            o.step()

    steps(model, opt, 4)
    opt.consolidate(0.3, 0.5, by="importance")
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    clone = bp.BioMLP(8, (16,), 3, seed=1)
    clone.load_state_dict(saved["model"])
    torch.manual_seed(123)  # the restored generator, not torch's, drives noise and growth
    restored = bp.BioRule(clone.parameters(), grow_every=2, grow_fraction=0.1,
                          track_importance=True)  # fmt: skip
    restored.load_state_dict(saved["optimizer"])
    steps(model, opt, 4)
    steps(clone, restored, 4)
    assert D.state_checksum(model, opt) == D.state_checksum(clone, restored)


# ------------------------------------------------------------------------------ bad flags
@pytest.mark.parametrize(
    "extra,needle",
    [
        (["--epochs", "0"], "--epochs: expected a positive integer"),
        (["--batch-size", "-3"], "--batch-size: expected a positive integer"),
        (["--seed", "-1"], "--seed: expected an integer >= 0"),
        (["--rule", "lion"], "--rule: invalid choice: 'lion'"),
        (["--dataset", "cifar"], "--dataset: invalid choice"),
        (["--device", "tpu"], "--device: invalid choice"),
        (["--backend", "mpi"], "--backend: invalid choice"),
        (["--hidden", "0"], "--hidden: expected comma-separated positive integers"),
        (["--hidden", "64,x"], "--hidden: expected comma-separated positive integers"),
        (["--consolidate", "1.5"], "--consolidate: expected a number in [0, 1]"),
        (["--consolidate-factor", "0"], "--consolidate-factor: expected a number in (0, 1]"),
        (["--rule-option", "noise"], "--rule-option: expected KEY=VALUE"),
        (["--rule-option", "frobnicate=1"], "bio takes no option frobnicate; its options: "),
        (["--rule-option", "lr=-1"], "lr must be a finite number in (0.0, inf)"),
        (["--rule-option", "grow_mode=sideways"], "grow_mode must be one of"),
        (["--rule", "adam", "--consolidate", "0.5"], "consolidate applies to the rules bio"),
        (["--backend", "nccl"], "backend nccl needs CUDA"),
    ],
)
def test_bad_flags_give_one_line_errors(tmp_path, capsys, extra, needle):
    out = tmp_path / "out"
    assert main([*ARGS, "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1, err
    assert not out.exists()


def test_out_must_be_a_folder(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert main([*ARGS, "--out", str(tmp_path / "file")]) == 2
    assert "is not a folder" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_is_a_one_line_error(tmp_path, capsys):
    assert main([*ARGS, "--out", str(tmp_path / "o"), "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert "CUDA is not available" in err and len(err.splitlines()) == 1
