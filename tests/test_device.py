"""``--device`` of compare, fewshot and robustness, and ``device=`` of the library calls."""

import json

import pytest
import torch

from bioplastic.cli import main
from bioplastic.cli._args import resolve_cli_device
from bioplastic.experiments import robustness as robustness_benchmark

pytest.importorskip("learn2learn")  # strategies.fewshot needs it


def _no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_resolve_cli_device(monkeypatch):
    _no_cuda(monkeypatch)
    assert resolve_cli_device("auto") == "cpu"
    assert resolve_cli_device("cpu") == "cpu"
    with pytest.raises(ValueError, match="no CUDA device is available"):
        resolve_cli_device("cuda")
    with pytest.raises(ValueError, match="--device"):
        resolve_cli_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_cli_device("auto") == "cuda"
    assert resolve_cli_device("cuda") == "cuda"
    assert resolve_cli_device("cpu") == "cpu"


@pytest.mark.parametrize("command", ["compare", "fewshot", "robustness"])
def test_device_cuda_without_cuda_is_a_one_line_error(tmp_path, capsys, monkeypatch, command):
    _no_cuda(monkeypatch)
    out = tmp_path / "o"
    assert main([command, "--device", "cuda", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "CUDA" in err and "no CUDA device is available" in err
    assert not out.exists()


@pytest.mark.parametrize("command", ["compare", "fewshot", "robustness"])
def test_device_choices_are_checked(tmp_path, capsys, command):
    assert main([command, "--device", "tpu", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "invalid choice" in err and len(err.splitlines()) == 1


def test_fewshot_cli_device_cpu(tmp_path):
    out = tmp_path / "o"
    argv = ["fewshot", "--dataset", "digits", "--shots", "1", "--episodes", "5", "--rules"]
    argv += ["bio,adam", "--methods", "proto", "--seeds", "1", "--epochs", "1"]
    assert main([*argv, "--device", "cpu", "--out", str(out)]) == 0
    results = json.loads((out / "fewshot_digits.json").read_text())
    assert {row["rule"] for row in results["accuracy"]} == {"bio", "adam"}


def _tiny_robustness(**kwargs):
    return _real_run_robustness(
        "digits",
        rules=("bio", "adam"),
        seeds=1,
        target_accuracy=0.5,
        epsilons=(0.0, 0.1),
        l2_epsilons=(0.0, 0.5),
        hidden=(8,),
        max_epochs=1,
        eval_every_steps=20,
        pgd_steps=2,
        masking_eps=(0.1,),
        masking_steps=2,
        masking_restarts=1,
        finetune_epochs=1,
        n_receptive_fields=2,
        n_test=40,
        dlr=False,
        **kwargs,
    )


_real_run_robustness = robustness_benchmark.run_robustness


def test_robustness_cli_device_cpu(tmp_path, monkeypatch):
    seen = []

    def fake(dataset, **kwargs):  # the CLI's call, shrunk to a tiny run
        seen.append(kwargs["device"])
        return _tiny_robustness(progress=kwargs["progress"], device=kwargs["device"])

    monkeypatch.setattr(robustness_benchmark, "run_robustness", fake)
    out = tmp_path / "o"
    argv = ["robustness", "--datasets", "digits", "--rules", "bio,adam", "--seeds", "1"]
    assert main([*argv, "--device", "cpu", "--out", str(out)]) == 0
    assert seen == ["cpu"]
    assert any(p.suffix == ".json" for p in out.iterdir())


def _strip_timing(value):
    """``value`` without wall-clock fields (they differ between any two runs)."""
    if isinstance(value, dict):
        return {
            k: _strip_timing(v)
            for k, v in value.items()
            if k not in ("seconds", "timing") and not k.endswith("_s")
        }
    if isinstance(value, list):
        return [_strip_timing(v) for v in value]
    return value


def test_fewshot_library_device_cpu_equals_default():
    from bioplastic.experiments.fewshot import run_fewshot_benchmark

    def run(**kwargs):
        torch.manual_seed(0)
        return run_fewshot_benchmark(
            "digits", ways=5, shots=(1,), episodes=4, rules=("bio", "adam"),
            methods=("proto", "finetune", "maml"), seeds=1, pretrain_epochs=1,
            maml_iterations=2, maml_inner_steps=1, finetune_steps=2, **kwargs,
        )  # fmt: skip

    default = run()
    explicit = run(device="cpu")
    assert _strip_timing(explicit) == _strip_timing(default)
    assert _strip_timing(run(device=torch.device("cpu"))) == _strip_timing(default)


def test_robustness_library_device_cpu_equals_default():
    torch.manual_seed(0)
    default = _tiny_robustness()
    torch.manual_seed(0)
    explicit = _tiny_robustness(device="cpu")
    assert _strip_timing(explicit) == _strip_timing(default)
