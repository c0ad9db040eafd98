"""Trust in ``bioplastic stream`` and Avalanche checkpoints (issue 11, security and data):
planted pickles never run, flipped bytes are refused, a second writer is refused, a previous
comparison is never deleted without ``--overwrite``."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("avalanche")

from bioplastic.cli import main  # noqa: E402
from strategies.avalanche import checkpoint as C  # noqa: E402
from strategies.avalanche import load_checkpoint  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

TINY = ["stream", "--strategies", "bio", "--seeds", "1", "--epochs", "1", "--quick",
        "--device", "cpu"]  # fmt: skip
KWARGS = dict(
    stream="split-digits", scenario="task", strategies=("bio",), seeds=1, epochs=1,
    stream_kwargs={"n_experiences": 2, "max_train_per_experience": 32,
                   "max_test_per_experience": 16},
    device="cpu",
)  # fmt: skip


class _CreatesFile:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


class Killed(Exception):
    pass


def _kill_after_first(name, seed, experience):
    raise Killed


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory) -> Path:
    """A comparison killed after its first experience: its checkpoint.pt is real."""
    from bioplastic.experiments.stream import run_stream_comparison

    logdir = tmp_path_factory.mktemp("interrupted")
    with pytest.raises(Killed):
        run_stream_comparison(logdir=logdir, after_experience=_kill_after_first, **KWARGS)
    return logdir


def _copy(src: Path, dst: Path) -> Path:
    subprocess.run(["cp", "-r", str(src), str(dst)], check=True)
    return dst


def _build():
    from bioplastic.data import split_digits
    from strategies.avalanche import make_evaluator, make_model, make_strategy

    stream = split_digits(n_experiences=2, scenario="task", max_train_per_experience=32,
                          max_test_per_experience=16, seed=0)  # fmt: skip
    torch.manual_seed(0)
    return make_strategy("bio", make_model(stream), evaluator=make_evaluator(), device="cpu")


def _checkpoint(logdir: Path) -> Path:
    return logdir / "split-digits-task" / "bio" / "seed0" / "checkpoint.pt"


def _resume(logdir: Path) -> dict:
    from bioplastic.experiments.stream import run_stream_comparison

    return run_stream_comparison(logdir=logdir, resume=True, **KWARGS)


# ------------------------------------------------------------------------------ item 1
def _planted(tmp_path: Path) -> dict[str, bytes]:
    marker = tmp_path / "pwned"
    files = {}
    for name, payload in {
        "plain pickle": {"format": C._FORMAT, "version": 2, "x": _CreatesFile(marker)},
        "inside our format": {C.TAG: "dict", "items": [["x", _CreatesFile(marker)]]},
    }.items():
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        files[name] = buffer.getvalue()
    # a well-formed safe file naming a class outside the allow-list
    buffer = io.BytesIO()
    obj = {C.TAG: "obj", "id": 0, "cls": "subprocess:Popen", "setstate": False,
           "state": {C.TAG: "dict", "items": []}}  # fmt: skip
    torch.save({C.TAG: "dict", "items": [["format", C._FORMAT], ["x", obj]]}, buffer)
    files["disallowed class"] = buffer.getvalue()
    return files


def test_planted_files_never_run_through_load_checkpoint(tmp_path):
    for name, data in _planted(tmp_path).items():
        path = tmp_path / f"{name.replace(' ', '-')}.ckpt"
        path.write_bytes(data)
        with pytest.raises(ValueError, match="refused") as info:
            load_checkpoint(_build, path)
        assert "\n" not in str(info.value) and str(path) in str(info.value), name
        assert not (tmp_path / "pwned").exists(), name


def test_planted_checkpoint_never_runs_through_stream_resume(tmp_path, interrupted, capsys):
    logdir = _copy(interrupted, tmp_path / "runs")
    marker = tmp_path / "pwned"
    torch.save({"format": C._FORMAT, "x": _CreatesFile(marker)}, _checkpoint(logdir))
    with pytest.raises(ValueError, match="refused.*--trust-checkpoint"):
        _resume(logdir)
    assert not marker.exists()


def test_stream_resume_is_exact_through_the_safe_format(tmp_path, interrupted):
    from bioplastic.experiments.stream import run_stream_comparison

    logdir = _copy(interrupted, tmp_path / "runs")
    resumed = _resume(logdir)
    straight = run_stream_comparison(logdir=tmp_path / "straight", **KWARGS)
    a, b = resumed["runs"][0], straight["runs"][0]
    assert a["accuracy_matrix"] == b["accuracy_matrix"]


# ------------------------------------------------------------------------------ item 2
def test_flipped_bytes_are_refused_by_every_loader(tmp_path, interrupted):
    logdir = _copy(interrupted, tmp_path / "runs")
    ckpt = _checkpoint(logdir)
    data = bytearray(ckpt.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(b ^ 0xFF for b in data[middle : middle + 64])
    ckpt.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupted") as info:
        load_checkpoint(_build, ckpt)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="corrupted"):
        _resume(logdir)
    assert ckpt.read_bytes() == bytes(data)  # not overwritten


# ------------------------------------------------------------------------------ item 3
def test_a_second_stream_writer_is_refused(tmp_path, capsys):
    code = (
        "import sys, time; from bioplastic._io import lock_folder\n"
        "with lock_folder(sys.argv[1]):\n    print('locked', flush=True); time.sleep(60)\n"
    )
    folder = tmp_path / "runs" / "split-digits-task"
    holder = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == b"locked"
        assert main([*TINY, "--logdir", str(tmp_path / "runs")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and str(folder) in err and f"pid {holder.pid}" in err
    finally:
        holder.kill()
        holder.wait()
    assert not (folder / "manifest.json").exists()


def test_a_rerun_needs_resume_or_overwrite_and_deletes_nothing(tmp_path, interrupted, capsys):
    logdir = _copy(interrupted, tmp_path / "runs")
    before = sorted(p.relative_to(logdir) for p in logdir.rglob("*"))
    assert main([*TINY, "--logdir", str(logdir)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--resume" in err and "--overwrite" in err
    assert sorted(p.relative_to(logdir) for p in logdir.rglob("*")) == before
    assert main([*TINY, "--logdir", str(logdir), "--overwrite"]) == 0
    results = json.loads((logdir / "split-digits-task" / "results.json").read_text())
    assert [r["config"]["strategy"] for r in results["runs"]] == ["bio"]


def test_resume_removes_stale_temporaries(tmp_path, interrupted):
    logdir = _copy(interrupted, tmp_path / "runs")
    stale = _checkpoint(logdir).parent / ".checkpoint.pt.x1y2.tmp"
    stale.write_bytes(b"half")
    _resume(logdir)
    assert not stale.exists()


def test_bad_logdir_is_refused_before_any_compute(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    for logdir, needle in [(tmp_path / "file", "not a folder"),
                           (tmp_path / "file" / "below", "not writable")]:  # fmt: skip
        assert main([*TINY, "--logdir", str(logdir)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and needle in err, err
