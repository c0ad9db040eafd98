"""Trust in ``bioplastic train`` (issue 11, security and data): planted and corrupted
checkpoints are refused, results are never lost or mixed, output folders are checked before
any compute, every named rule resumes bit-identically, result files are strict JSON written
with the umask's permissions."""

from __future__ import annotations

import io
import json
import math
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from bioplastic import _io
from bioplastic import distributed as D
from bioplastic.baselines import OPTIMIZER_NAMES
from bioplastic.cli import main

ARGS = ["train", "--hidden", "16", "--batch-size", "64", "--device", "cpu"]


class _CreatesFile:
    """A pickle payload: loading it creates ``marker`` (what a planted file would do)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _run(out: Path, *extra: str, epochs: int = 1) -> int:
    return main([*ARGS, "--epochs", str(epochs), "--out", str(out), *extra])


def _steps_per_epoch() -> int:
    from bioplastic.data.sources import load_digits_arrays

    batch_size = int(ARGS[ARGS.index("--batch-size") + 1]) if "--batch-size" in ARGS else 32
    return -(-len(load_digits_arrays(seed=0)[0]) // batch_size)


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("finished")
    assert _run(out) == 0
    return out


# ------------------------------------------------------------------------------ item 1
def test_a_planted_pickle_never_runs_through_train_or_distributed_loaders(tmp_path, capsys):
    marker = tmp_path / "pwned"
    out = tmp_path / "run"
    out.mkdir()
    ckpt = out / D.CHECKPOINT_NAME
    torch.save({"format": D.CHECKPOINT_FORMAT, "payload": _CreatesFile(marker)}, ckpt)
    with pytest.raises(ValueError, match="refused") as info:
        D.load_checkpoint(ckpt)
    assert "\n" not in str(info.value)
    assert _run(out, "--resume") == 2
    assert str(ckpt) in _one_line_error(capsys)
    assert not marker.exists()


# ------------------------------------------------------------------------------ item 2
def _flip_middle(path: Path, n: int = 64) -> bytes:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + n] = bytes(b ^ 0xFF for b in data[middle : middle + n])
    path.write_bytes(bytes(data))
    return bytes(data)


def test_flipped_bytes_are_refused_and_the_checkpoint_is_kept(tmp_path, finished, capsys):
    out = tmp_path / "run"
    out.mkdir()
    ckpt = out / D.CHECKPOINT_NAME
    ckpt.write_bytes((finished / D.CHECKPOINT_NAME).read_bytes())
    corrupted = _flip_middle(ckpt)
    with pytest.raises(ValueError, match="corrupted") as info:
        D.load_checkpoint(ckpt)
    assert "\n" not in str(info.value) and str(ckpt) in str(info.value)
    assert _run(out, "--resume", epochs=2) == 2
    assert "corrupted" in _one_line_error(capsys)
    assert ckpt.read_bytes() == corrupted and not (out / "train.json").exists()


def test_weights_whose_signs_disagree_with_their_types_are_refused(tmp_path, finished, capsys):
    out = tmp_path / "run"
    out.mkdir()
    data = D.load_checkpoint(finished / D.CHECKPOINT_NAME)
    name = next(k for k, v in data["model"].items() if k.endswith("weight") and v.dim() == 2)
    weight = data["model"][name]
    index = int(torch.nonzero(weight.reshape(-1))[0])
    weight.view(-1)[index] *= -1  # a valid archive, an impossible state
    D.save_checkpoint(out / D.CHECKPOINT_NAME, data)
    assert _run(out, "--resume", epochs=2) == 2
    err = _one_line_error(capsys)
    assert "opposite to their presynaptic type" in err and name in err


# ------------------------------------------------------------------------------ item 3
def _hold_lock(folder: Path) -> subprocess.Popen:
    code = (
        "import sys, time; from bioplastic._io import lock_folder\n"
        "with lock_folder(sys.argv[1]):\n    print('locked', flush=True); time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"locked"
    return proc


def test_a_second_writer_is_refused_naming_the_folder_and_holder(tmp_path, capsys):
    out = tmp_path / "run"
    holder = _hold_lock(out)
    try:
        assert _run(out) == 2
        err = _one_line_error(capsys)
        assert str(out) in err and f"pid {holder.pid}" in err
        assert not (out / "train.json").exists()
    finally:
        holder.kill()
        holder.wait()
    assert _run(out) == 0  # the lock died with its holder


def test_a_rerun_needs_resume_or_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    assert _run(out) == 0
    before = (out / "train.json").read_bytes()
    assert _run(out, "--seed", "1") == 2
    err = _one_line_error(capsys)
    assert "--resume" in err and "--overwrite" in err
    assert (out / "train.json").read_bytes() == before
    assert _run(out, "--seed", "1", "--overwrite") == 0
    assert json.loads((out / "train.json").read_text())["config"]["seed"] == 1


def test_resume_removes_stale_temporary_files(tmp_path):
    out = tmp_path / "run"
    assert _run(out) == 0
    stale = out / f".{D.CHECKPOINT_NAME}.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    assert _run(out, "--resume", epochs=2) == 0
    assert not stale.exists()


# ------------------------------------------------------------------------------ item 4
@pytest.mark.parametrize("rule", OPTIMIZER_NAMES)
def test_every_named_rule_resumes_bit_identically(tmp_path, rule):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    args = ["--rule", rule]
    if rule == "bio":  # the 1-epoch run stands for a 2-epoch run killed after its first epoch
        args += ["--rule-option", f"total_steps={2 * _steps_per_epoch()}"]
    assert _run(straight, *args, epochs=2) == 0
    assert _run(resumed, *args, epochs=1) == 0
    assert _run(resumed, *args, "--resume", epochs=2) == 0
    a = json.loads((straight / "train.json").read_text())
    b = json.loads((resumed / "train.json").read_text())
    assert b["resumed_from"] == {"epoch": 1, "batch": 0}
    assert a["checksum"] == b["checksum"]
    assert a["history"] == b["history"]


# ------------------------------------------------------------------------------ item 5
@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_out_is_refused_before_training(tmp_path, capsys):
    tmp_path.chmod(0o500)
    try:
        assert _run(tmp_path / "out") == 2
    finally:
        tmp_path.chmod(0o700)
    assert "not writable" in _one_line_error(capsys)


def test_bad_out_paths_are_refused_before_training(tmp_path, capsys, monkeypatch):
    trained = []
    import bioplastic.experiments.train as T

    monkeypatch.setattr(T, "_train", lambda *a: trained.append(a))
    (tmp_path / "file").write_text("x")
    for out, needle in [
        (tmp_path / "file", "not a folder"),
        (tmp_path / "file" / "below", "not writable"),
        (Path("/proc/no/such"), "not writable"),
    ]:
        assert _run(out) == 2
        err = _one_line_error(capsys)
        assert needle in err and str(out) in err
    assert trained == []


def test_unwritable_out_detected_by_the_probe_file(tmp_path, capsys, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(_io.tempfile, "mkstemp", refuse)
    assert _run(tmp_path / "out") == 2
    assert "not writable (Permission denied)" in _one_line_error(capsys)


def test_a_full_disk_gives_a_clear_message(tmp_path, capsys, monkeypatch):
    def full(handle):
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="no space left on the device to write .*previous file"):
        _io.write_atomic_with(tmp_path / "x.json", full)
    assert list(tmp_path.iterdir()) == []
    real = _io.write_atomic

    def write_full(path, text):
        if Path(path).name == "train.json":
            return _io.write_atomic_with(path, full)
        return real(path, text)

    import bioplastic.cli.train as cli_train

    monkeypatch.setattr(cli_train, "write_atomic", write_full)
    assert _run(tmp_path / "out") == 2
    assert "no space left" in _one_line_error(capsys)


# ------------------------------------------------------------------------------ item 7
def test_files_get_the_umask_permissions(tmp_path):
    old = os.umask(0o027)
    try:
        _io.write_atomic(tmp_path / "a.txt", "x")
        assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o640
        os.umask(0o002)
        _io.write_atomic(tmp_path / "b.txt", "x")
        assert stat.S_IMODE((tmp_path / "b.txt").stat().st_mode) == 0o664
    finally:
        os.umask(old)


def test_train_json_and_checkpoint_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        assert _run(tmp_path / "out") == 0
    finally:
        os.umask(old)
    for name in ("train.json", D.CHECKPOINT_NAME):
        assert stat.S_IMODE((tmp_path / "out" / name).stat().st_mode) == 0o644


def test_json_text_writes_null_for_non_finite_numbers():
    text = _io.json_text({"loss": math.nan, "x": [math.inf, -math.inf, 1.5], "n": 3})
    assert json.loads(text) == {"loss": None, "x": [None, None, 1.5], "n": 3}
    assert "NaN" not in text and "Infinity" not in text


def test_lock_is_reentrant_in_one_process_and_released_after(tmp_path):
    with _io.lock_folder(tmp_path), _io.lock_folder(tmp_path):
        pass
    with _io.lock_folder(tmp_path):
        assert (tmp_path / _io.LOCK_NAME).read_text().strip() == str(os.getpid())
    time.sleep(0)


def test_weights_only_round_trip_of_a_train_checkpoint(finished):
    data = torch.load(io.BytesIO((finished / D.CHECKPOINT_NAME).read_bytes()), weights_only=True)
    assert data["format"] == D.CHECKPOINT_FORMAT
